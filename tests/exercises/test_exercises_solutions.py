"""Every solution is what the model returns when the call is run again by hand, and a few
explicit-input problems give the answers FreeBSD 14's rules give."""

from __future__ import annotations

import pytest

from vmlab.core import (
    KERN,
    VM_PROT,
    VMFS,
    VMFS_ALIGNED_SPACE,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_find,
    vm_map_findspace,
    vm_map_insert,
    vm_map_lock,
    vm_map_lookup_entry,
    vm_map_protect,
    vm_map_unlock,
)
from vmlab.exercises import build, generate
from vmlab.exercises.scene import EntrySpec, build_map

SEEDS = range(0, 15)


def _map(p):  # noqa: ANN001, ANN202
    specs = [EntrySpec(**e) for e in p.params["entries"]]
    return build_map(specs, p.params["lo"], p.params["hi"], p.params.get("wxorx", False))


@pytest.mark.parametrize("seed", SEEDS)
def test_findspace_matches_model(seed: int) -> None:
    p = generate("findspace", seed)
    m = _map(p)
    vm_map_lock(m)
    try:
        want = vm_map_findspace(m, p.params["start"], p.params["length"])
    finally:
        vm_map_unlock(m)
    assert p.solve()["address"] == want


@pytest.mark.parametrize("seed", SEEDS)
def test_insert_matches_model(seed: int) -> None:
    p = generate("insert", seed)
    q = p.params
    m = _map(p)
    vm_map_lock(m)
    try:
        rv = vm_map_insert(m, None, 0, q["start"], q["end"], q["prot"], q["max"], q["cow"])
    finally:
        vm_map_unlock(m)
    assert p.solve()["return value"] == rv
    assert p.solve()["entries after"] == [(e.start, e.end) for e in m.entries()]


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_matches_model(seed: int) -> None:
    p = generate("clip", seed)
    m = _map(p)
    vm_map_lock(m)
    try:
        _, e = vm_map_lookup_entry(m, p.params["entry_addr"])
        for side, a in p.params["clips"]:
            (vm_map_clip_start if side == "start" else vm_map_clip_end)(m, e, a)
    finally:
        vm_map_unlock(m)
    ans = p.solve()
    assert ans["entries after"] == [(x.start, x.end) for x in m.entries()]
    assert ans["entry's range"] == (e.start, e.end)
    assert ans["entry's offset"] == e.offset


@pytest.mark.parametrize("seed", SEEDS)
def test_protect_matches_model(seed: int) -> None:
    p = generate("protect", seed)
    q = p.params
    m = _map(p)
    rv = vm_map_protect(m, q["start"], q["end"], q["new_prot"], q["new_maxprot"], q["flags"])
    vm_map_lock(m)
    try:
        _, e = vm_map_lookup_entry(m, q["query"])
    finally:
        vm_map_unlock(m)
    ans = p.solve()
    assert ans.parts[0].value == rv
    assert ans.parts[1].value == (e.protection, e.max_protection)


@pytest.mark.parametrize("seed", SEEDS)
def test_find_matches_model(seed: int) -> None:
    p = generate("find", seed)
    q = p.params
    m = _map(p)
    if q["earlier"]:
        vm_map_find(m, None, 0, 0, q["earlier"], 0, VMFS.ANY_SPACE, VM_PROT.RW, VM_PROT.ALL, 0)
    rv, addr = vm_map_find(m, None, 0, q["addr"], q["length"], q["max_addr"], q["find_space"],
                           VM_PROT.RW, VM_PROT.ALL, 0)
    ans = p.solve()
    assert ans["return value"] == rv
    if rv == KERN.SUCCESS:
        assert ans["address"] == addr
        if q["find_space"] >> 8:
            assert addr % (1 << (q["find_space"] >> 8)) == 0
    else:
        assert len(ans.parts) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_walk_matches_model(seed: int) -> None:
    from vmlab.exercises.topics.walk import _build

    p = generate("walk", seed)
    scene = _build(p.params["pages"])
    w = scene.pmap.mmu.translate(p.params["va"], p.params["access"], 3)
    ans = p.solve()
    assert ans["indices"] == [s.index for s in w.steps]
    assert ans["outcome"] == (("pa", w.pa) if w.ok else ("pf", w.error_code))


# ---- explicit input (OSTEP's -A): FreeBSD 14's rules, worked by hand -------------------

ENTRIES = [{"start": 0x2000, "end": 0x5000, "prot": 3, "max": 7},
           {"start": 0x8000, "end": 0x9000, "prot": 1, "max": 5}]


def test_explicit_findspace_failure_value() -> None:
    p = build("findspace", entries=ENTRIES, start=0x1000, length=0x3F000)
    # nothing of 0x3f000 bytes fits in [0x1000, 0x40000): max - length + 1
    assert p.solve()["address"] == 0x40000 - 0x3F000 + 1
    assert p.seed is None and "explicit input" in p.text()
    assert p.check("0x1001")[0] and p.check("4097")[0]


def test_explicit_findspace_first_fit_skips_small_gap() -> None:
    p = build("findspace", entries=ENTRIES, start=0x3000, length=0x4000)
    assert p.solve()["address"] == 0x9000  # [0x5000,0x8000) is too small


def test_explicit_insert_extends_previous_entry() -> None:
    p = build("insert", entries=ENTRIES, start=0x5000, end=0x6000, prot=3, max=7)
    assert p.solve()["return value"] == KERN.SUCCESS
    assert p.solve()["entries after"] == [(0x2000, 0x6000), (0x8000, 0x9000)]


def test_explicit_insert_overlap_is_no_space() -> None:
    p = build("insert", entries=ENTRIES, start=0x6000, end=0x9000, prot=3, max=7)
    assert p.solve()["return value"] == KERN.NO_SPACE


def test_explicit_clip_start_keeps_back_part() -> None:
    p = build("clip", entries=ENTRIES, entry_addr=0x2000, clips=[("start", 0x3000)])
    ans = p.solve()
    assert ans["entry's range"] == (0x3000, 0x5000)
    assert ans["entry's offset"] == 0x1000
    assert ans["entries after"] == [(0x2000, 0x3000), (0x3000, 0x5000), (0x8000, 0x9000)]


def test_explicit_protect_beyond_max_fails_and_changes_nothing() -> None:
    p = build("protect", entries=ENTRIES, start=0x2000, end=0x9000, new_prot=7, new_maxprot=7,
              flags=1, query=0x2000)
    ans = p.solve()
    assert ans["return value"] == KERN.PROTECTION_FAILURE  # [0x8000,0x9000) max is r-x
    assert ans.parts[1].value == (VM_PROT.RW, VM_PROT.ALL)


def test_explicit_protect_out_of_bounds() -> None:
    p = build("protect", entries=ENTRIES, start=0x2000, end=0x3000, new_prot=3, new_maxprot=1,
              flags=3, query=0x2000)
    assert p.solve()["return value"] == KERN.OUT_OF_BOUNDS


def test_explicit_find_aligned() -> None:
    p = build("find", entries=ENTRIES, addr=0x2000, length=0x1000,
              find_space=VMFS_ALIGNED_SPACE(14))
    assert p.solve()["return value"] == KERN.SUCCESS
    # first fit 0x5000 rounds up to 0x8000 (mapped); findspace from there gives 0x9000, which
    # rounds up to 0xc000, free: alignspace stops there.
    assert p.solve()["address"] == 0xC000


def test_explicit_walk_write_to_read_only_page() -> None:
    va = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12)
    p = build("walk", pages=[(va, 1)], va=va + 0x10, access="w")
    ans = p.solve()
    assert ans["indices"] == [1, 2, 3, 4]
    assert ans["outcome"] == ("pf", 0x7)  # P | W | U


def test_bad_explicit_parameters_are_clear_errors() -> None:
    with pytest.raises(ValueError):
        build("clip", entries=ENTRIES, entry_addr=0x6000, clips=[("start", 0x3000)])
    with pytest.raises(ValueError):
        build("walk", pages=[], va=0, access="r")
    with pytest.raises(ValueError):
        build("protect", entries=ENTRIES, start=0x2000, end=0x3000, new_prot=1,
              new_maxprot=1, flags=4, query=0x2000)
    with pytest.raises(TypeError):
        build("findspace", entries=ENTRIES, start=0x1000)


def test_explicit_fork_follows_inheritance() -> None:
    ents = [{"start": 0x2000 + i * 0x2000, "end": 0x3000 + i * 0x2000, "prot": 3, "max": 7}
            for i in range(6)]
    p = build("fork", entries=ents, inherit=["copy", "copy", "none", "share", "zero", "share"],
              touched=[False, True, True, True, False, False])
    assert p.solve()["child entries"] == ["private", "cow", "absent", "shared", "zero",
                                          "shared"]


@pytest.mark.parametrize("seed", SEEDS)
def test_fork_matches_model(seed: int) -> None:
    from vmlab.core import MAP_ENTRY, vmspace_fork
    from vmlab.exercises.topics.fork import _parent

    p = generate("fork", seed)
    q = p.params
    vm = _parent([EntrySpec(**e) for e in q["entries"]], q["inherit"], q["touched"], q["lo"],
                 q["hi"])
    child = vmspace_fork(vm)
    kids = {e.start: e for e in child.vm_map.entries()}
    labels = p.solve()["child entries"]
    assert len(labels) == len(vm.vm_map.entries())
    for e, label in zip(vm.vm_map.entries(), labels, strict=True):
        c = kids.get(e.start)
        assert (c is None) == (label == "absent")
        if label == "cow":
            assert c.eflags & MAP_ENTRY.COW and c.eflags & MAP_ENTRY.NEEDS_COPY
        if label == "shared":
            assert c.object is e.object and not c.eflags & MAP_ENTRY.NEEDS_COPY
        if label in ("private", "zero"):
            assert c.object is None


# what each fork_entry step of the explanation says, as the answer's label
_FORK_SAYS = (("has inheritance NONE", "absent"), ("has inheritance ZERO", "zero"),
              ("is SHARED", "shared"), ("both entries become COW|NEEDS_COPY", "cow"),
              ("it has no object yet", "private"))


def test_fork_answer_is_what_the_explanation_says() -> None:
    """The answer key and the step-by-step account come from one run of vmspace_fork; they must
    agree entry by entry (a ZERO child entry made from a COW file mapping keeps COW|NEEDS_COPY,
    and once made the key say "cow" while the account said "fresh zero-filled memory")."""
    zero_seen = 0
    for seed in range(300):
        p = generate("fork", seed)
        ans, steps = p._run()
        said = []
        for s in steps[:-1]:  # the last step is the child's map
            if not s.startswith("["):  # a pmap step, not one entry's fork_entry
                continue
            hits = [label for key, label in _FORK_SAYS if key in s]
            assert len(hits) == 1, (seed, s)
            said.append(hits[0])
        assert ans["child entries"] == said, seed
        assert p.check(" ".join(said))[0], seed
        zero_seen += said.count("zero")
    assert zero_seen > 50  # the seeds really exercise ZERO


def test_fork_zero_from_cow_file_mapping() -> None:
    """Seed 11: two ZERO entries whose parents are COW (file) mappings; the child's entries keep
    COW|NEEDS_COPY on no object (as FreeBSD 14's vmspace_fork does) and are still "zero"."""
    from vmlab.core import MAP_ENTRY, vmspace_fork
    from vmlab.exercises.topics.fork import _parent

    p = generate("fork", 11)
    assert p.solve()["child entries"] == ["private", "zero", "zero", "absent", "private"]
    q = p.params
    vm = _parent([EntrySpec(**e) for e in q["entries"]], q["inherit"], q["touched"], q["lo"],
                 q["hi"])
    kids = sorted(vmspace_fork(vm).vm_map.entries(), key=lambda e: e.start)
    assert [(e.start, e.object, bool(e.eflags & MAP_ENTRY.NEEDS_COPY)) for e in kids[1:3]] == [
        (0x8000, None, True), (0xB000, None, True)]
    assert not p.check("private cow cow absent private")[0]

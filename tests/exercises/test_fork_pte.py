"""The fork_pte exercise: stable per seed, answers equal to a separate run of the model read
straight from the amd64 page tables, FreeBSD's fork PTE rules (vm_map_copy_entry's
pmap_protect, pmap_copy, the COW fault's pmap_enter) pinned on explicit scenes, and a checker
that reads many notations and names the wrong flag."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmlab.core import (
    INHERIT_COPY,
    INHERIT_NONE,
    INHERIT_SHARE,
    INHERIT_ZERO,
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    Machine,
    fork,
    minherit,
    mmap,
    open_file,
    vm_read,
    vm_write,
    vmspace_alloc,
)
from vmlab.exercises import TOPICS, build, generate
from vmlab.exercises.parse import AnswerError, parse_pte_flags

P = PAGE_SIZE
SEEDS = range(200)
_BITS = (("P", 0x1), ("RW", 0x2), ("A", 0x20), ("D", 0x40))  # Intel SDM table 4-20


def _flags(raw: int) -> tuple[str, ...]:
    return tuple(n for n, b in _BITS if raw & 1 and raw & b)


def _recompute(params: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The scenario run again with plain vmlab.core calls (not the topic's code), then the
    raw PTEs of the asked page masked with the SDM's bit positions."""
    vm = vmspace_alloc(params["lo"], params["hi"], Machine(1 << 22, "amd64"))
    inh = {"copy": INHERIT_COPY, "share": INHERIT_SHARE, "none": INHERIT_NONE,
           "zero": INHERIT_ZERO}
    files = {"file-shared": "/data/log.db", "file-private": "/data/config.db"}
    for r in params["regions"]:
        size = r["npages"] * P
        shared = r["kind"] in ("anon-shared", "file-shared")
        flags = MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE)
        fd = -1
        if r["kind"].startswith("anon"):
            flags |= MAP_ANON
        else:
            fd = open_file(vm, files[r["kind"]], size)
        assert mmap(vm, r["start"], size, PROT_READ | PROT_WRITE, flags, fd, 0)[0] == 0
        if r["inherit"] != "default":
            assert minherit(vm, r["start"], size, inh[r["inherit"]]) == 0
    for va, acc in params["touched"]:
        if acc == "w":
            vm_write(vm, va, "x")
        else:
            vm_read(vm, va)
    err, child = fork(vm)
    assert err == 0
    for who, va in params["writes"]:
        vm_write(child if who == "child" else vm, va, "y")
    page = params["page"]
    return _flags(vm.vm_pmap.pte(page)), _flags(child.vm_pmap.pte(page))


def test_registered() -> None:
    assert "fork_pte" in TOPICS


@pytest.mark.parametrize("seed", SEEDS)
def test_answer_is_a_fresh_model_run(seed: int) -> None:
    p = generate("fork_pte", seed)
    ans = p.solve()
    assert (ans["parent"], ans["child"]) == _recompute(p.params)
    assert p.explain().startswith(f"Answer: {ans.text()}")


def test_same_seed_same_text_and_in_another_process() -> None:
    here = "".join(generate("fork_pte", s).text(solution=True) for s in range(0, 12))
    assert here == "".join(generate("fork_pte", s).text(solution=True) for s in range(0, 12))
    code = ("import sys; from vmlab.exercises import generate; sys.stdout.write(''.join("
            "generate('fork_pte', s).text(solution=True) for s in range(0, 12)))")
    env = dict(os.environ, PYTHONHASHSEED="977")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, encoding="utf-8", check=True, timeout=120).stdout
    assert out == here
    assert len({generate("fork_pte", s).text() for s in range(12)}) >= 11


def test_generated_answers_vary() -> None:
    answers = {generate("fork_pte", s).solve().text() for s in range(60)}
    # COW-protected, shared-RW, COW-copied, pmap_copy'd, absent...: not one constant
    assert {"P A; P", "P RW A D; P"} <= answers
    assert any(a.startswith("no PTE") for a in answers)
    assert any(a.endswith("no PTE") for a in answers)


def _flip(flags: tuple[str, ...], f: str) -> tuple[str, ...]:
    if f == "P":
        return () if flags else ("P",)
    s = set(flags) ^ {f}
    if s and "P" not in s:
        s.add("P")
    return tuple(n for n, _ in _BITS if n in s)


@pytest.mark.parametrize("seed", SEEDS)
def test_checker_accepts_the_key_and_names_a_flipped_flag(seed: int) -> None:
    p = generate("fork_pte", seed)
    ans = p.solve()
    par, ch = ans["parent"], ans["child"]
    assert p.check(ans.text())[0]

    def txt(v: tuple[str, ...]) -> str:
        return ", ".join(x.lower() for x in reversed(v)) if v else "none"

    assert p.check(f"child: {txt(ch)}  parent: {txt(par)}")[0]
    for who in ("parent", "child"):
        for f, _ in _BITS:
            wrong = {"parent": par, "child": ch}
            wrong[who] = _flip(wrong[who], f)
            ok, fb = p.check(f"parent: {' '.join(wrong['parent']) or 'no PTE'}; "
                             f"child: {' '.join(wrong['child']) or 'no PTE'}")
            assert not ok
            assert f"✗ {who}:" in fb
            want = {"parent": par, "child": ch}[who]
            if not want:
                assert f"Hint: {who}: the model has no PTE" in fb
            elif not wrong[who]:
                assert f"Hint: {who}: the model has a PTE for {p.params['page']:#x}" in fb
            else:
                state = "set" if f in want else "clear"
                assert f"Hint: {who}: {f} is wrong; the model's PTE has {f} {state}" in fb


def test_no_exception_for_junk_answers() -> None:
    p = generate("fork_pte", 5)
    for junk in ("", None, 17, "parent:", "P Q", "P RW RO; P", "0x", "parent: child:", "🙂",
                 "P RW; P; P RW A D D"):
        ok, fb = p.check(junk)
        assert isinstance(ok, bool) and fb


# ----------------------------------------------------------------------------------------
# FreeBSD's rules, on explicit scenes

def _one(kind: str, touched: list, writes: list, page: int, inherit: str = "default",
         npages: int = 3) -> tuple[tuple[str, ...], tuple[str, ...]]:
    p = build("fork_pte", regions=[{"kind": kind, "start": 0x10000, "npages": npages,
                                    "inherit": inherit}],
              touched=touched, writes=writes, page=page)
    a = p.solve()
    assert (a["parent"], a["child"]) == _recompute(p.params)
    return a["parent"], a["child"]


def test_fork_write_protects_a_copied_entry_clearing_rw_and_d() -> None:
    # written before fork: P RW A D; pmap_protect clears RW and M, keeps A; pmap_copy gives
    # the child the read-only PTE without A (and without M, W)
    assert _one("anon-private", [(0x10000, "w")], [("child", 0x11000)], 0x10000) == \
        (("P", "A"), ("P",))


def test_the_first_write_after_fork_maps_a_private_copy_rw_a_d() -> None:
    assert _one("anon-private", [(0x10000, "w")], [("parent", 0x10000)], 0x10000) == \
        (("P", "RW", "A", "D"), ("P",))
    assert _one("anon-private", [(0x10000, "r")], [("child", 0x10000)], 0x10000) == \
        (("P", "A"), ("P", "RW", "A", "D"))
    p = build("fork_pte", regions=[{"kind": "anon-private", "start": 0x10000, "npages": 2}],
              touched=[(0x10000, "w")], writes=[("child", 0x10000)], page=0x10000)
    text = p.explain()
    assert "Write fault on a NEEDS_COPY entry" in text and "Copy-on-write" in text
    assert "pmap_protect [0x10000, 0x12000) to r--" in text


def test_shared_entries_keep_rw_and_the_child_writes_without_a_fault() -> None:
    assert _one("anon-shared", [(0x10000, "w")], [("child", 0x11000)], 0x10000) == \
        (("P", "RW", "A", "D"), ("P", "RW"))
    assert _one("anon-shared", [(0x10000, "r")], [("child", 0x10000)], 0x10000) == \
        (("P", "RW", "A"), ("P", "RW", "A", "D"))
    p = build("fork_pte", regions=[{"kind": "anon-shared", "start": 0x10000, "npages": 2}],
              touched=[(0x10000, "r")], writes=[("child", 0x10000)], page=0x10000)
    assert "no fault, the CPU sets A and D" in p.explain()
    assert "Page fault" not in p.explain()
    assert _one("file-shared", [(0x10000, "w")], [("child", 0x12000)], 0x10000)[0] == \
        ("P", "RW", "A", "D")


def test_none_and_zero_give_the_child_no_pte() -> None:
    assert _one("anon-private", [(0x10000, "w")], [("parent", 0x11000)], 0x10000,
                inherit="none") == (("P", "RW", "A", "D"), ())
    assert _one("anon-private", [(0x10000, "w")], [("parent", 0x11000)], 0x10000,
                inherit="zero") == (("P", "RW", "A", "D"), ())
    assert _one("anon-private", [], [("parent", 0x11000)], 0x10000) == ((), ())


def test_build_rejects_bad_input() -> None:
    reg = [{"kind": "anon-private", "start": 0x10000, "npages": 2}]
    bad = [
        dict(regions=[{"kind": "heap", "start": 0x10000, "npages": 2}], touched=[],
             writes=[("parent", 0x10000)], page=0x10000),
        dict(regions=[{"kind": "anon-private", "start": 0x10800, "npages": 2}], touched=[],
             writes=[("parent", 0x10800)], page=0x10800),
        dict(regions=reg, touched=[(0x30000, "r")], writes=[("parent", 0x10000)],
             page=0x10000),
        dict(regions=reg, touched=[], writes=[], page=0x10000),
        dict(regions=reg, touched=[], writes=[("sibling", 0x10000)], page=0x10000),
        dict(regions=reg, touched=[], writes=[("parent", 0x10000)], page=0x20000),
        dict(regions=[{**reg[0], "inherit": "none"}], touched=[],
             writes=[("child", 0x10000)], page=0x10000),
        dict(regions=reg + [{"kind": "anon-shared", "start": 0x11000, "npages": 1}],
             touched=[], writes=[("parent", 0x10000)], page=0x10000),
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            build("fork_pte", **kw)


def test_params_rebuild_the_same_problem() -> None:
    p = generate("fork_pte", 9)
    q = build("fork_pte", **p.params)
    assert q.setup == p.setup and q.question == p.question
    assert q.solve().text() == p.solve().text()


# ----------------------------------------------------------------------------------------
# reading flags

@pytest.mark.parametrize("text,want", [
    ("P RW A D", ("P", "RW", "A", "D")),
    ("d, a, rw, p", ("P", "RW", "A", "D")),
    ("present | dirty", ("P", "D")),
    ("R/W accessed", ("P", "RW", "A")),
    ("rw a", ("P", "RW", "A")),          # RW/A/D only exist in a present PTE
    ("read-only, A", ("P", "A")),
    ("P US XD MANAGED", ("P",)),
    ("M", ("P", "D")),
    ("PG_V|PG_RW|PG_M", ("P", "RW", "D")),
    ("0x8000000000018467", ("P", "RW", "A", "D")),
    ("0x8000000000018405", ("P",)),
    ("no PTE", ()), ("none", ()), ("-", ()), ("not present", ()), ("Unmapped.", ()),
])
def test_parse_pte_flags(text: str, want: tuple[str, ...]) -> None:
    assert parse_pte_flags(text) == want


@pytest.mark.parametrize("text", ["", "P Q", "RO RW", "writeable-ish", "0x"])
def test_parse_pte_flags_refuses(text: str) -> None:
    with pytest.raises(AnswerError):
        parse_pte_flags(text)


def test_animation_is_a_forkview_with_the_same_outcome() -> None:
    pytest.importorskip("ipywidgets")
    from vmlab.widgets import ForkView

    p = generate("fork_pte", 0)
    a = p.animation()
    assert isinstance(a, ForkView)
    page = p.params["page"]
    assert (_flags(a.target.vm_pmap.pte(page)), _flags(a.child.vm_pmap.pte(page))) == \
        (p.solve()["parent"], p.solve()["child"])

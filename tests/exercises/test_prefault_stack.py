"""The prefault and stack exercise topics: stable text, answers that are the model's, and a
lenient but exact check()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.core import (
    KERN,
    PAGE_SIZE,
    RLIMIT_STACK,
    SGROWSIZ,
    USRSTACK,
    VM_PROT,
    Machine,
    exec_image,
    setrlimit,
    sysctl,
    vm_map_growstack,
    vm_write,
)
from vmlab.exercises import TOPICS, build, generate
from vmlab.exercises.topics.prefault import parse_pages
from vmlab.exercises.topics.stack import parse_size

P = PAGE_SIZE
SEEDS = range(1, 13)


def test_registered() -> None:
    assert "prefault" in TOPICS and "stack" in TOPICS


# ---------------------------------------------------------------------------------------
# determinism


def test_same_text_in_a_subprocess_with_another_hash_seed() -> None:
    here = "".join(generate(t, s).text(solution=True) for t in ("prefault", "stack")
                   for s in SEEDS)
    code = ("import sys; from vmlab.exercises import generate; sys.stdout.write(''.join("
            "generate(t, s).text(solution=True) for t in ('prefault', 'stack') "
            f"for s in range({SEEDS.start}, {SEEDS.stop})))")
    env = dict(os.environ, PYTHONHASHSEED="987")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, encoding="utf-8", check=True, timeout=120).stdout
    assert out == here


def test_params_rebuild_the_same_problem() -> None:
    for topic in ("prefault", "stack"):
        for s in SEEDS:
            p = generate(topic, s)
            q = build(topic, **p.params)
            assert q.setup == p.setup and q.question == p.question
            assert q.solve().text() == p.solve().text()


def test_generated_answers_vary() -> None:
    pre = {generate("prefault", s).solve().text() for s in range(1, 40)}
    assert "none" in pre and len(pre) >= 8
    stk = {generate("stack", s).solve()["return value"] for s in range(1, 40)}
    assert stk == {KERN.SUCCESS, KERN.NO_SPACE}


# ---------------------------------------------------------------------------------------
# prefault: the answers are the model's


def _fresh_run(p: object) -> list[int]:
    """Re-run the scene and the access with the model, independently of the Problem."""
    from vmlab.exercises.topics import prefault as topic

    params = p.params  # type: ignore[attr-defined]
    vm = topic._scene(params)
    va = params["base"] + params["fault"] * P
    before = {a for a, *_ in vm.vm_pmap.mappings()}
    if params["access"] == "w":
        vm_write(vm, va, 1)
    else:
        from vmlab.core import vm_read

        vm_read(vm, va)
    return sorted({a for a, *_ in vm.vm_pmap.mappings()} - before - {va})


@pytest.mark.parametrize("seed", list(SEEDS))
def test_prefault_solution_equals_a_fresh_model_run(seed: int) -> None:
    p = generate("prefault", seed)
    pages = p.solve()["pages mapped by prefault"]
    assert pages == _fresh_run(p)
    va = p.params["base"] + p.params["fault"] * P
    for a in pages:  # FreeBSD's window: 4 back, 4 forward, inside the entry
        assert 1 <= abs(a - va) // P <= 4
        assert p.params["base"] <= a < p.params["base"] + p.params["npages"] * P


def _pre(**kw: object) -> list[int]:
    p = build("prefault", **kw)
    va = kw.get("base", 0x10000) + int(kw["fault"]) * P  # type: ignore[operator]
    return [(a - va) // P for a in p.solve()["pages mapped by prefault"]]


def test_prefault_spiral_stops_at_the_first_page_resident_nowhere() -> None:
    # -1 (4) +1 (6) -2 (3) mapped; +2 (7) resident nowhere: the loop ends, -3 and +3 too
    assert _pre(kind="file", npages=10, fault=5, resident=[1, 2, 3, 4, 5, 6, 8, 9]) == \
        [-2, -1, 1]
    # -1 resident nowhere: nothing at all, however many pages are resident after it
    assert _pre(kind="file", npages=10, fault=5, resident=[1, 2, 3, 5, 6, 7, 8, 9]) == []


def test_prefault_window_is_clipped_to_the_entry_and_skips_mapped_pages() -> None:
    allp = list(range(10))
    assert _pre(kind="file", npages=10, fault=1, resident=allp) == [-1, 1, 2, 3, 4]
    assert _pre(kind="file", npages=10, fault=9, resident=allp) == [-4, -3, -2, -1]
    # page 4 was written (a private copy, mapped rw-): skipped, the loop goes on; the other
    # pages are found through the shadow chain (anonymous shadow -> file)
    got = _pre(kind="file", npages=10, fault=5, resident=allp, written=[4], prot="rw")
    assert got == [-4, -3, -2, 1, 2, 3, 4]


def test_prefault_maps_read_only() -> None:
    from vmlab.exercises.topics import prefault as topic

    p = build("prefault", kind="file", npages=8, fault=3, resident=list(range(8)), prot="rw")
    vm = topic._scene(p.params)
    from vmlab.core import vm_read

    vm_read(vm, 0x10000 + 3 * P)
    for a in p.solve()["pages mapped by prefault"]:
        assert vm.vm_pmap.prot(a) == VM_PROT.READ


def test_no_prefault_after_zero_fill_or_cow() -> None:
    assert _pre(kind="anon", npages=8, fault=3, access="w", written=[2, 4]) == []
    assert _pre(kind="anon", npages=8, fault=3, access="r") == []
    assert _pre(kind="file", npages=8, fault=3, access="w", resident=list(range(8)),
                prot="rw") == []


def test_prefault_build_rejects_bad_input() -> None:
    for kw in ({"kind": "swap", "npages": 4, "fault": 0},
               {"kind": "file", "npages": 4, "fault": 4},
               {"kind": "file", "npages": 4, "fault": 0, "access": "w"},
               {"kind": "file", "npages": 4, "fault": 0, "written": [1]},
               {"kind": "file", "npages": 4, "fault": 0, "base": 0x10800},
               {"kind": "anon", "npages": 4, "fault": 1, "written": [1], "access": "w"}):
        with pytest.raises(ValueError):
            build("prefault", **kw)


# ---------------------------------------------------------------------------------------
# prefault: check()


def test_prefault_check_notations() -> None:
    p = build("prefault", kind="file", npages=10, fault=5, resident=[1, 2, 3, 4, 5, 6, 8, 9])
    assert p.solve().text() == "-2 -1 +1"
    for ok in ("-2 -1 +1", "+1, -1, -2", "\u22121 \u22122 +1", "-1 -2 1", "0x13000 0x14000 "
               "0x16000", "0x14abc, 0x13000, +1", "-0x2000 -0x1000 +0x1000", "pages -2 -1 +1",
               "-2 -1 +1 +1"):
        assert p.check(ok)[0], ok
    for bad in ("-1 +1", "-2 -1 +1 +2", "-2 -1 0 +1", "none", "0x13000 0x14000", "-3 -2 -1 +1",
                "", "minus one", "-0x1800"):
        assert not p.check(bad)[0], bad
    fb = p.check("-2 -1 0 +1")[1]
    assert "faulting page itself" in fb
    empty = build("prefault", kind="anon", npages=6, fault=2)
    for ok in ("none", "nothing", "", "-", "[]"):
        if ok:
            assert empty.check(ok)[0], ok
    assert not empty.check("-1")[0]
    assert "faultcount = 1" in empty.check("-1 +1")[1]


def test_parse_pages_directly() -> None:
    o = 0x20000
    assert parse_pages("-1 +1", o) == [o - P, o + P]
    assert parse_pages("2", o) == [o + 2 * P]
    assert parse_pages("0x21fff", o) == [0x21000]
    assert parse_pages("none", o) == []
    with pytest.raises(ValueError):
        parse_pages("abc", o)


@settings(max_examples=120, deadline=None)
@given(st.one_of(st.text(max_size=40), st.none(), st.integers(), st.binary(max_size=20)))
def test_check_never_raises(junk: object) -> None:
    for p in _PROBS:
        ok, fb = p.check(junk)
        assert isinstance(ok, bool) and isinstance(fb, str) and fb


_PROBS = [generate("prefault", 2), generate("stack", 2)]


# ---------------------------------------------------------------------------------------
# stack: the answers are the model's


def _stack(addr_below: int, rlimit: int | None = None, **kw: object) -> object:
    """A stack problem for a store addr_below bytes under a freshly exec'ed stack."""
    vm = exec_image(Machine(1 << 22))
    bottom = vm.vm_stacktop - vm.vm_ssize * P
    if rlimit is not None:
        kw["rlimit_stack"] = rlimit
    return build("stack", addr=bottom - addr_below, **kw)


def _model_growstack(p: object) -> tuple[KERN, int]:
    """The same call on a fresh exec'ed process, written out with vmlab.core directly."""
    params = p.params  # type: ignore[attr-defined]
    old = sysctl("kern.sgrowsiz", params["sgrowsiz"])
    try:
        vm = exec_image(Machine(1 << 22), name="/bin/deep")
        assert setrlimit(vm, RLIMIT_STACK, params["rlimit_stack"]) == 0
        for a in params["grown"]:
            vm_write(vm, a, 1)
        rv = vm_map_growstack(vm.vm_map, params["addr"])
        return KERN(rv), vm.vm_ssize * P
    finally:
        sysctl("kern.sgrowsiz", old)


@pytest.mark.parametrize("seed", list(SEEDS))
def test_stack_solution_equals_a_fresh_model_run(seed: int) -> None:
    p = generate("stack", seed)
    a = p.solve()
    assert (a["return value"], a["stack size"]) == _model_growstack(p)


def test_stack_rules() -> None:
    sg = SGROWSIZ
    # one page below: grows by sgrowsiz
    p = _stack(addr_below=P)
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.SUCCESS, 2 * sg)
    # 132 KiB below: round_page, then up to a multiple of sgrowsiz (256 KiB more)
    p = _stack(addr_below=sg + P)
    assert p.solve()["stack size"] == 3 * sg
    # RLIMIT_STACK 256 KiB: 128 KiB + 132 KiB > limit -> refused, nothing changes
    p = _stack(addr_below=sg + P, rlimit=2 * sg)
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.NO_SPACE, sg)
    # RLIMIT_STACK 192 KiB: 32 KiB fits, the sgrowsiz rounding is capped at the limit
    p = _stack(addr_below=0x8000, rlimit=0x30000)
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.SUCCESS, 0x30000)


def test_stack_guard_page_and_the_gap_cap() -> None:
    from vmlab.core import MAXSSIZ

    vm = exec_image(Machine(1 << 22))
    guard = vm.vm_maxsaddr
    p = build("stack", addr=guard + 0x10, rlimit_stack=MAXSSIZ)
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.NO_SPACE, SGROWSIZ)
    assert "PROTECTION_FAILURE" in p.explain() and "SIGSEGV" in p.explain()
    p = build("stack", addr=guard + P, rlimit_stack=MAXSSIZ)
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.SUCCESS, MAXSSIZ - P)


def test_stack_sgrowsiz_is_restored_and_no_animation_for_it() -> None:
    before = sysctl("kern.sgrowsiz")
    # exec maps a stack of sgrowsiz (32 KiB here); one page below it grows by another 32 KiB
    p = build("stack", addr=USRSTACK - 0x8000 - P, sgrowsiz=0x8000)
    assert "vm_ssize = 8 pages" in p.setup
    assert (p.solve()["return value"], p.solve()["stack size"]) == (KERN.SUCCESS, 0x10000)
    assert sysctl("kern.sgrowsiz") == before
    assert p.animation() is None
    with pytest.raises(ValueError):
        build("stack", addr=0x7fff0000, sgrowsiz=0x1800)
    with pytest.raises(ValueError):
        build("stack", addr=0x7fff0000, rlimit_stack=1 << 40)  # above the hard limit
    assert sysctl("kern.sgrowsiz") == before


# ---------------------------------------------------------------------------------------
# stack: check()


def test_stack_check_notations() -> None:
    p = _stack(addr_below=P)
    assert p.solve().text() == "KERN_SUCCESS (0); 0x40000 (256 KiB)"
    for ok in ("KERN_SUCCESS; 256 KiB", "success 0x40000", "0; 262144", "success; 256K",
               "KERN_SUCCESS, 256 kb", "success; 64 pages", "success; 0.25 MiB",
               "success; 0x40000 (256 KiB)", p.solve().text()):
        assert p.check(ok)[0], ok
    for bad in ("KERN_SUCCESS; 128 KiB", "no space; 256 KiB", "success; 0x40000 (128 KiB)",
                "success", "256 KiB", "success; 0.1 KiB", "KERN_SUCCESS; 40000"):
        assert not p.check(bad)[0], bad
    assert "0x40000" in p.check("KERN_SUCCESS; 40000")[1]  # the decimal-meant-hex hint
    q = _stack(addr_below=SGROWSIZ + P, rlimit=2 * SGROWSIZ)
    assert q.check("KERN_NO_SPACE; 128 KiB")[0]
    assert q.check("no space 0x20000")[0]
    assert "RLIMIT_STACK" in q.check("success; 384 KiB")[1]


def test_parse_size_directly() -> None:
    assert parse_size("1 MiB") == 1 << 20
    assert parse_size("0x1000") == parse_size("4096") == parse_size("1 page") == 4096
    assert parse_size("4k") == 4096
    for bad in ("", "big", "1 KiB 2 KiB", "0.5 B"):
        with pytest.raises(ValueError):
            parse_size(bad)


# ---------------------------------------------------------------------------------------
# the command and the animations


def test_cli_prefault_solve() -> None:
    out = subprocess.run([sys.executable, "-m", "vmlab.cli", "exercise", "--topic", "prefault",
                          "--seed", "1", "--solve"], capture_output=True, text=True,
                         encoding="utf-8", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[prefault, seed 1]" in out.stdout and "Answer: " in out.stdout
    assert generate("prefault", 1).solve().text() in out.stdout


def test_animations_are_the_widgets_b_views() -> None:
    pytest.importorskip("ipywidgets")
    import vmlab.widgets as w

    p = generate("prefault", 1)
    a = p.animation()
    assert isinstance(a, w.PrefaultStrip)
    # the widget performs the same access on its own fresh scene: same pages mapped
    mapped = sorted(d["va"] for _k, d in a.view.cands if d["verdict"] == "mapped")
    assert mapped == p.solve()["pages mapped by prefault"] and mapped
    s = generate("stack", 3)
    b = s.animation()
    assert isinstance(b, w.StackGrowth)
    assert b.view.grow["rv"] == s.solve()["return value"]


@pytest.mark.parametrize("seed", [1, 2, 3, 7])
def test_walk_animation_walks_the_problems_tables(seed: int) -> None:
    """The walk topic's animation is a PageWalk over the problem's own tables (built afresh):
    its walk gives the indices and outcome the answer key gives."""
    pytest.importorskip("ipywidgets")
    import vmlab.widgets as w

    p = generate("walk", seed)
    a = p.animation()
    assert isinstance(a, w.PageWalk)
    ans = p.solve()
    assert [s.index for s in a.value.steps] == ans["indices"]
    got = ("pa", a.value.pa) if a.value.ok else ("pf", a.value.error_code)
    assert got == ans["outcome"]

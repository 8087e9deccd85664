"""PageWalk: what the walk diagram shows equals what the MMU read and wrote."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wb_helpers import PAGE, anon_process, boxes, texts

from vmlab.core import vm_read
from vmlab.core.x86 import Amd64Pmap, PhysicalMemory, format_error_code
from vmlab.widgets import PageWalk, theme

LEVELS = ("PML4E", "PDPTE", "PDE", "PTE")


def _highlighted_rows(w):
    return [b["tag"] for b in w.view.canvas.shown("boxes")
            if b["tag"].startswith("row:") and b["line"] == theme.HIGHLIGHT]


def test_write_walk_shows_each_level_then_sets_d():
    vm, a = anon_process()
    vm_read(vm, a)  # mapped rw-, A set, D clear
    before = vm.vm_pmap.pte(a)
    w = PageWalk(vm, a + 0xABC, "w", 3)
    assert w.form.error.value == ""
    assert [s.kind for s in w.trace.steps] == ["walk_level"] * 4 + ["walk_done"]
    for k, level in enumerate(LEVELS):
        w.player.step = k
        assert _highlighted_rows(w) == [f"row:{level}"]
        # the VA index field of that level is highlighted too
        va_hl = [b["tag"] for b in boxes(w.view, "va:*") if b["line"] == theme.HIGHLIGHT]
        assert va_hl == [f"va:{level}"]
        assert texts(w.view, f"raw:{level}") == [f"{w.value.steps[k].raw:#018x}"]
        assert "the result appears when the walk ends" in texts(w.view, "result")
    w.player.step = 4
    after = vm.vm_pmap.pte(a)
    assert after == before | 0x40  # the CPU set D in the leaf
    assert texts(w.view, "raw:PTE") == [f"{before:#018x}"]
    assert texts(w.view, "after:PTE") == [f"→ {after:#018x}"]
    assert texts(w.view, "flag:PTE:D") == ["D→1"]
    assert [b["line"] for b in boxes(w.view, "flag:PTE:D")] == [theme.HIGHLIGHT]
    pa = w.value.pa
    assert texts(w.view, "result:pa") == [
        f"PA = frame {pa & ~0xFFF:#x} + offset {0xABC:#x} = {pa:#x}"]
    assert texts(w.view, "result:ad") == ["the CPU set A/D in: PTE"]
    # flags shown on = bits set in the entry, for every flag of every level
    for s in w.value.steps:
        for b in boxes(w.view, f"flag:{s.level}:*"):
            name = b["tag"].split(":")[2]
            on = s.flags.get(name) or ((s.written or s.raw) >> {"D": 6, "A": 5}.get(name, 99)
                                       & 1 if name in ("A", "D") else 0)
            assert (b["fill"] != "white") == bool(on), (s.level, name)


def test_not_present_fault_spells_out_error_code():
    vm, a = anon_process()
    vm_read(vm, a)
    w = PageWalk(vm, a + 5 * PAGE, "w", 3)
    walk = w.value
    assert not walk.ok and walk.vector == 14
    w.player.step = len(w.trace) - 1
    assert texts(w.view, "result:pf") == [
        f"#PF, vector 14 · error code {walk.error_code:#x} · CR2 = {a + 5 * PAGE:#x}"]
    ec = walk.error_code
    shown = {t.split("=")[0]: int(t.split("=")[1]) for t in texts(w.view, "ec:")
             if "=" in t}
    assert shown == {"P": ec & 1, "W/R": ec >> 1 & 1, "U/S": ec >> 2 & 1,
                     "RSVD": ec >> 3 & 1, "I/D": ec >> 4 & 1}
    assert shown["W/R"] == 1 and shown["U/S"] == 1 and shown["P"] == 0
    assert "write" in texts(w.view, "ec:W/R") and "not present" in texts(w.view, "ec:P")
    assert format_error_code(ec) in w.result.value


def test_user_write_to_readonly_page_is_a_protection_fault():
    vm, a = anon_process()
    vm_read(vm, a)
    vm.vm_pmap.protect(a, a + PAGE, 1)  # read-only PTE
    w = PageWalk(vm, a, "w")
    w.player.step = len(w.trace) - 1
    assert w.value.error_code == 0x7
    assert "P=1" in texts(w.view, "ec:P") and "rights violation" in texts(w.view, "ec:P")


def test_noncanonical_is_gp_without_walk():
    vm, _a = anon_process()
    w = PageWalk(vm, 0x0000_8000_0000_0000, "r")
    assert [s.kind for s in w.trace.steps] == ["walk_fault"]
    assert texts(w.view, "result:gp")[0].startswith("#GP(0), vector 13")
    assert texts(w.view, "va:sign")[-1] == "NOT canonical"


def test_five_level_paging_shows_pml5():
    pm = PhysicalMemory(4 << 20)
    pmap = Amd64Pmap(pm, la57=True)
    w = PageWalk(pmap, 0x1000, "r", 3)
    assert w.value.steps[0].level == "PML5E"
    w.player.step = len(w.trace) - 1
    assert texts(w.view, "va:PML5E")[0] == "PML5 56:48"
    assert texts(w.view, "row:PML4E") == ["PML4E", "not read: the walk stopped above"]


def test_stepping_back_is_exact():
    vm, a = anon_process()
    vm_read(vm, a)
    w = PageWalk(vm, a, "w")
    seen = []
    for i in range(len(w.trace)):
        w.player.step = i
        seen.append((w.view.canvas.shown("texts"), w.player.explain.value))
    for i in reversed(range(len(w.trace))):
        w.player.step = i
        assert (w.view.canvas.shown("texts"), w.player.explain.value) == seen[i]


def test_bad_inputs_show_inline_and_run_nothing():
    vm, a = anon_process()
    vm_read(vm, a)
    w = PageWalk(vm, "0xzz", "q", 9)
    assert w.trace is None
    err = w.form.error.value
    assert "is not a number" in err and "is not an access" in err and "above 0x3" in err
    w2 = PageWalk("not a machine")
    assert "PageWalk needs an Mmu" in w2.form.error.value and w2.trace is None
    # fixing the boxes and pressing Walk runs it
    w.form.boxes["va"].value = hex(a)
    w.form.boxes["access"].value = "r"
    w.form.boxes["cpl"].value = "3"
    w.form.run_button.click()
    assert w.form.error.value == "" and len(w.trace) == 5


@settings(max_examples=12, deadline=None)
@given(page=st.integers(0, 20), off=st.integers(0, PAGE - 1), acc=st.sampled_from("rwx"),
       cpl=st.sampled_from([0, 3]))
def test_shown_values_equal_the_walk(page, off, acc, cpl):
    vm, a = _shared
    w = PageWalk(vm, a + page * PAGE + off, acc, cpl)
    walk = w.value
    w.player.step = len(w.trace) - 1
    for s in walk.steps:
        assert texts(w.view, f"raw:{s.level}") == [f"{s.raw:#018x}"]
        if s.written is not None:
            assert texts(w.view, f"after:{s.level}") == [f"→ {s.written:#018x}"]
        else:
            assert texts(w.view, f"after:{s.level}") == []
    if walk.ok:
        assert texts(w.view, "result:pa")[0].endswith(f"= {walk.pa:#x}")
    else:
        assert texts(w.view, "result:pf")[0].startswith(
            f"#PF, vector 14 · error code {walk.error_code:#x}")


@pytest.fixture(autouse=True, scope="module")
def _shared_process():
    global _shared
    vm, a = anon_process()
    for k in range(0, 16, 3):
        vm_read(vm, a + k * PAGE)
    _shared = (vm, a)
    yield


_shared = None

"""StackGrowth: growth, guard and RLIMIT_STACK as vm_map_growstack decides them."""

from __future__ import annotations

from wb_helpers import PAGE, anon_process, boxes, exec_process, texts

from vmlab.core import MAP_ENTRY, RLIMIT_STACK, getrlimit, sysctl
from vmlab.widgets import StackGrowth, theme


def _grow(w):
    return [dict(s.data) for s in w.trace.steps if s.kind == "grow"]


def test_fault_below_stack_grows_by_sgrowsiz():
    vm = exec_process()
    sgrowsiz = sysctl("kern.sgrowsiz")
    w = StackGrowth(vm)
    addr = w.form.values()["addr"]
    (g,) = _grow(w)
    assert g["rv"] == 0 and g["asked"] == 3 * PAGE and g["grow"] == sgrowsiz
    (e,) = [e for e in vm.vm_map.entries() if e.start <= addr < e.end]
    assert e.eflags & MAP_ENTRY.GROWS_DOWN
    assert (e.start, e.end) == (g["start"], g["end"])
    i_grow = next(i for i, s in enumerate(w.trace.steps) if s.kind == "grow")
    w.player.step = i_grow - 1
    assert boxes(w.view, "new") == []
    assert texts(w.view, "bracket")[0].startswith("growth = round_page")
    w.player.step = i_grow
    new = boxes(w.view, "new")
    assert len(new) == 1 and new[0]["fill"] == theme.NEW_ENTRY
    assert new[0]["line"] == theme.HIGHLIGHT
    assert texts(w.view, "bracket") == [
        f"needed round_page(stack.start − addr) = {3 * PAGE:#x}, rounded up to sgrowsiz → "
        f"grows by {sgrowsiz:#x} ({sgrowsiz >> 10}K)"]
    w.player.step = len(w.trace) - 1
    assert texts(w.view, "note")[0] == "vm_fault → KERN_SUCCESS (0)"
    assert texts(w.view, "ssize")[0].startswith(f"vm_ssize = {vm.vm_ssize} pages")


def test_fault_in_guard_fails_no_space_then_sigsegv():
    vm = exec_process()
    w = StackGrowth(vm, vm.vm_maxsaddr + 0x10)
    (g,) = _grow(w)
    assert g["rv"] == 3  # KERN_NO_SPACE
    assert w.value == 2  # vm_fault: KERN_PROTECTION_FAILURE (the gap's prot is NONE)
    i_grow = next(i for i, s in enumerate(w.trace.steps) if s.kind == "grow")
    w.player.step = i_grow
    assert texts(w.view, "note")[0] == "vm_map_growstack → KERN_NO_SPACE (3)"
    assert [b["line"] for b in boxes(w.view, "guard")] == [theme.ERROR]
    w.player.step = len(w.trace) - 1
    assert texts(w.view, "note")[0] == "vm_fault → KERN_PROTECTION_FAILURE (2): SIGSEGV"
    assert "KERN_NO_SPACE" in w.result.value and "SIGSEGV" in w.result.value


def test_rlimit_stack_refuses_then_raising_it_allows():
    vm = exec_process()
    addr = vm.vm_stacktop - (9 << 20)
    w = StackGrowth(vm, addr)
    (g,) = _grow(w)
    assert g["rv"] == 3 and "RLIMIT_STACK" in g["reason"]
    w.player.step = len(w.trace) - 1
    assert [ln["lw"] for ln in w.view.canvas.tagged("rlimit", "lines")] == [3]
    n_before = vm.vm_map.nentries
    w2 = StackGrowth(vm, addr, rlimit_stack="16M")
    assert getrlimit(vm, RLIMIT_STACK) == 16 << 20
    (g2,) = _grow(w2)
    assert g2["rv"] == 0 and vm.vm_map.nentries == n_before + 1


def test_stepping_back_is_exact():
    vm = exec_process()
    w = StackGrowth(vm)
    seen = []
    for i in range(len(w.trace)):
        w.player.step = i
        seen.append(w.view.canvas.shown("texts"))
    for i in reversed(range(len(w.trace))):
        w.player.step = i
        assert w.view.canvas.shown("texts") == seen[i]


def test_inline_errors():
    vm, _a = anon_process()
    w = StackGrowth(vm)
    assert w.trace is None and "no main stack" in w.form.error.value
    vm2 = exec_process()
    w2 = StackGrowth(vm2, "0x12g", "rw", "-1")
    err = w2.form.error.value
    assert "is not a number" in err and "is not an access" in err and "negative" in err
    w3 = StackGrowth(vm2, None, "w", 1 << 62)  # above the hard limit: setrlimit fails
    assert "setrlimit" in w3.form.error.value
    assert getrlimit(vm2, RLIMIT_STACK) != 1 << 62

"""ForkView: the diagram shows the parent's and child's maps and objects as the model has them."""

from __future__ import annotations

from wb_helpers import PAGE, anon_process, boxes, exec_process, texts

from vmlab.core import MAP_ENTRY, VM_INHERIT, minherit, vm_write
from vmlab.widgets import ForkView, theme
from vmlab.widgets.forkview import parse_writes


def _entry(vm, va):
    (e,) = [e for e in vm.vm_map.entries() if e.start <= va < e.end]
    return e


def _badges(w, side, start):
    tag = f"row:{side}:{start:#x}:"
    return {t["tag"][len(tag):] for t in w.view.canvas.shown("texts") if t["tag"].startswith(tag)
            and t["tag"][len(tag):] in ("COW", "NC", "guard")}


def test_fork_then_writes_break_cow():
    vm, a = anon_process(4)
    vm_write(vm, a, "hello")
    w = ForkView(vm, f"child:{a:#x}, parent:{a:#x}")
    err, child, done = w.value
    assert err == 0 and [d[2] for d in done] == [None, None]
    kinds = [s.kind for s in w.trace.steps]
    assert kinds.count("fork_entry") == vm.vm_map.nentries
    assert kinds.count("shadow") == 2 and kinds.count("cow_copy") == 2
    w.player.step = len(w.trace) - 1
    # the rows' badges are the live entries' eflags
    for proc, side in ((vm, "p"), (child, "c")):
        e = _entry(proc, a)
        want = {n for n, bit in (("COW", MAP_ENTRY.COW), ("NC", MAP_ENTRY.NEEDS_COPY))
                if e.eflags & bit}
        assert _badges(w, side, a) == want
    # every object box shows the live counters
    for proc in (vm, child):
        o = _entry(proc, a).object
        while o is not None:
            assert texts(w.view, f"obj:{o.id}:counts") == [
                f"ref {o.ref_count} · shadows {o.shadow_count}"]
            o = o.backing_object
    # the two shadows point at the old object
    old = _entry(vm, a).object.backing_object
    assert _entry(child, a).object.backing_object is old
    shadows = {ln["tag"] for ln in w.view.canvas.shown("arrows")}
    assert {f"shadow:{_entry(vm, a).object.id}", f"shadow:{_entry(child, a).object.id}"} \
        <= shadows


def test_fork_steps_highlight_rows_and_cow_marks():
    vm, a = anon_process(4)
    vm_write(vm, a, 1)
    w = ForkView(vm, "")
    fe = [i for i, s in enumerate(w.trace.steps) if s.kind == "fork_entry"]
    assert fe
    w.player.step = fe[0]
    st = w.trace.steps[fe[0]]
    hl = {b["tag"] for b in w.view.canvas.shown("boxes") if b["line"] == theme.HIGHLIGHT
          and b["tag"].startswith("row:")}
    assert hl == {f"row:p:{st.data['start']:#x}", f"row:c:{st.data['start']:#x}"}
    w.player.step = len(w.trace) - 1
    # after the fork both entries are COW + NEEDS_COPY on the same object, links dashed
    assert _badges(w, "p", a) == _badges(w, "c", a) == {"COW", "NC"}
    links = {ln["tag"]: ln for ln in w.view.canvas.shown("lines") if ln["tag"].startswith("link")}
    assert links[f"link:p:{a:#x}"]["dash"] == "dashed" == links[f"link:c:{a:#x}"]["dash"]
    # the parent's PTE was write-protected at fork
    assert texts(w.view, f"row:p:{a:#x}:pte") == ["copy · 1 PTE r-"]


def test_inherit_none_leaves_a_hole_and_share_shares():
    vm, a = anon_process(4)
    vm_write(vm, a, 1)
    vm_write(vm, a + 2 * PAGE, 2)
    assert minherit(vm, a, PAGE, VM_INHERIT.NONE) == 0
    assert minherit(vm, a + 2 * PAGE, PAGE, VM_INHERIT.SHARE) == 0
    w = ForkView(vm, "")
    w.player.step = len(w.trace) - 1
    assert texts(w.view, f"row:c:{a:#x}") == ["hole (inheritance none)"]
    share = [ln for ln in w.view.canvas.shown("lines") if ln["tag"].endswith(f"{a + 2 * PAGE:#x}")]
    assert {ln["color"] for ln in share} == {"#7c3aed"} and len(share) == 2


def test_exec_image_fork_stepping_back_is_exact():
    vm = exec_process()
    w = ForkView(vm)
    assert w.form.error.value == ""
    seen = {}
    for i in range(len(w.trace)):
        w.player.step = i
        seen[i] = (w.view.canvas.shown("texts"), w.view.canvas.shown("boxes"))
    for i in (len(w.trace) - 1, len(w.trace) // 2, 0):
        w.player.step = i
        assert (w.view.canvas.shown("texts"), w.view.canvas.shown("boxes")) == seen[i]
    w.player.step = len(w.trace) - 1
    assert boxes(w.view, "row:p:0x200000") and boxes(w.view, "row:c:0x200000")


def test_writes_parse_and_inline_errors():
    assert parse_writes("child:0x1000, p:4096") == [("child", 0x1000), ("parent", 0x1000)]
    vm, a = anon_process(4)
    w = ForkView(vm, "kid:0x1000")
    assert w.trace is None and "should be child:ADDRESS" in w.form.error.value
    assert vm.vm_map.nentries == 1  # nothing ran
    w2 = ForkView(42)
    assert "needs a process" in w2.form.error.value


def test_write_to_unmapped_address_stops_with_sigsegv_in_result():
    vm, a = anon_process(4)
    w = ForkView(vm, f"child:{a + 0x100000:#x}, parent:{a:#x}")
    err, child, done = w.value
    assert len(done) == 1 and done[0][2] is not None
    assert "SIGSEGV" in w.result.value

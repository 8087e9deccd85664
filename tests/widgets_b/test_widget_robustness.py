"""Bad constructor arguments end as inline errors (never a raise, never a half-drawn view);
Overview of a process; ForkView's inheritance field (minherit before the fork); the fork view's
linked hover (rows of one range <-> the objects they map), run through node when available."""

from __future__ import annotations

import html
import json
import shutil
import subprocess

import numpy as np
import pytest
from wb_helpers import PAGE, anon_process, exec_process

from vmlab.core import MAP_ENTRY, VM_INHERIT, process_snapshot, vm_write
from vmlab.widgets import ForkView, InputError, Overview
from vmlab.widgets.canvas import Canvas
from vmlab.widgets.forkview import parse_inherit
from vmlab.widgets.linking import _TAG_JS
from vmlab.widgets.overview import AddressSpaceOverview


def _entry(vm, va):
    (e,) = [e for e in vm.vm_map.entries() if e.start <= va < e.end]
    return e


# -- Overview ---------------------------------------------------------------------------------

def test_overview_of_a_process_and_of_its_snapshot():
    vm = exec_process()
    want = [(e.start, e.end) for e in vm.vm_map.entries()]
    for obj in (vm, process_snapshot(vm), vm.vm_map):
        ov = Overview(obj)
        assert ov.error.value == ""
        got = list(zip(ov.source.data["start"].astype(np.int64).tolist(),
                       ov.source.data["end"].astype(np.int64).tolist(), strict=True))
        assert got == want
        assert ov.snapshot.min == vm.vm_map.min_offset


def test_overview_bad_arguments_are_inline_and_draw_nothing():
    vm = exec_process()
    bad = Overview(vm, mode="bogus")
    assert "'bogus' is not an axis mode" in html.unescape(bad.error.value)
    assert bad.children == (bad.error,) and bad.snapshot is None
    assert "cannot draw int" in Overview(42).error.value

    class Broken:  # an imported map whose rows() fails halfway: a sentence, no traceback
        def to_snapshot(self):
            return process_snapshot(vm).map

        def rows(self):
            raise RuntimeError("row 3 has no type")

    b = AddressSpaceOverview(Broken())
    assert "row 3 has no type" in b.error.value and b.children == (b.error,)
    # a good mode still works after the check
    assert Overview(vm, mode="gaps").scale.mode == "gaps"


# -- ForkView arguments -------------------------------------------------------------------------

def test_forkview_list_of_strings_and_pairs():
    vm, a = anon_process(4)
    vm_write(vm, a, 1)
    w = ForkView(vm, [f"child:{a:#x}"])
    assert w.form.error.value == ""
    assert w.form.boxes["writes"].value == f"child:{a:#x}"
    assert [(who, va) for who, va, _e in w.value[2]] == [("child", a)]
    w2 = ForkView(vm, [("parent", a)])
    assert [(who, va) for who, va, _e in w2.value[2]] == [("parent", a)]


@pytest.mark.parametrize("writes, msg", [
    (5, "'5' should be child:ADDRESS"),
    (["child"], "'child' should be child:ADDRESS"),
    ([("child", "nope")], "'nope' is not a number"),
])
def test_forkview_bad_writes_are_inline(writes, msg):
    vm, a = anon_process(4)
    n = vm.vm_map.nentries
    w = ForkView(vm, writes)
    assert msg in html.unescape(w.form.error.value)
    assert w.trace is None and w.body.layout.display == "none"
    assert vm.vm_map.nentries == n and w.child is None


# -- ForkView inheritance -----------------------------------------------------------------------

def test_parse_inherit_words_and_errors():
    vm, a = anon_process(4)
    assert parse_inherit(f"{a:#x}:none, {a + PAGE:#x}:VM_INHERIT_SHARE; {a}:3", vm=vm) == [
        (a, 2), (a + PAGE, 0), (a, 3)]
    assert parse_inherit([(a, "copy")], vm=vm) == [(a, 1)]
    assert parse_inherit("") == []
    with pytest.raises(InputError, match="is not an inheritance"):
        parse_inherit(f"{a:#x}:private", vm=vm)
    with pytest.raises(InputError, match="0x10 is not inside any entry"):
        parse_inherit("0x10:none", vm=vm)
    with pytest.raises(InputError, match="should be ADDRESS:share"):
        parse_inherit("none", vm=vm)


def test_inherit_none_and_share_applied_before_the_fork():
    vm, a = anon_process(2)
    vm_write(vm, a, 1)
    w = ForkView(vm, "", inherit=f"{a + PAGE:#x}:none")  # any address inside the entry
    assert w.form.error.value == ""
    assert _entry(vm, a).inheritance == VM_INHERIT.NONE
    child = w.child
    assert [e for e in child.vm_map.entries() if e.start <= a < e.end] == []
    fe = [s.data for s in w.trace.steps if s.kind == "fork_entry" and s.data["start"] == a]
    assert len(fe) == 1 and fe[0]["inheritance"] == "NONE"
    assert fe[0]["child_entry"] == -1
    # the minherit itself is set-up, not animated: the first recorded step belongs to the fork
    assert not any(s.kind == "modify" and s.data.get("field") == "inheritance"
                   for s in w.trace.steps)
    assert f"minherit({a:#x}, {2 * PAGE:#x}, none) → 0" in w.result.value
    w.player.step = len(w.trace) - 1
    assert any(t["text"] == "hole (inheritance none)" and t["tag"] == f"row:c:{a:#x}"
               for t in w.view.canvas.shown("texts"))

    vm2, b = anon_process(2)
    vm_write(vm2, b, 1)
    w2 = ForkView(vm2, [("child", b)], inherit=[(b, "share")])
    assert _entry(w2.child, b).object is _entry(vm2, b).object  # one object, no COW
    assert not _entry(w2.child, b).eflags & MAP_ENTRY.COW


def test_inherit_bad_values_are_inline_and_change_nothing():
    vm, a = anon_process(2)
    for bad, msg in (("0x10:none", "0x10 is not inside any entry"),
                     (f"{a:#x}:nope", "'nope' is not an inheritance"),
                     (7, "'7' should be ADDRESS:share")):
        w = ForkView(vm, "", inherit=bad)
        assert msg in html.unescape(w.form.error.value)
        assert w.trace is None and w.child is None
        assert _entry(vm, a).inheritance == VM_INHERIT.COPY
        assert "vmlab-invalid" in w.form.boxes["inheritance"]._dom_classes
    # a wrong target is still reported as such, not as an inheritance error
    w = ForkView(42, "", inherit="0x1000:none")
    assert "needs a process" in w.form.error.value


# -- ForkView linked hover ----------------------------------------------------------------------

def _hot(w):
    d = w.view.canvas.hot.data
    return [{c: d[c][k] for c in d} for k in range(len(d["tag"]))]


def test_fork_rows_link_to_each_other_and_their_objects():
    vm, a = anon_process(4)
    vm_write(vm, a, 1)
    w = ForkView(vm, f"child:{a:#x}")
    w.player.step = len(w.trace) - 1
    po, co = _entry(vm, a).object, _entry(w.child, a).object
    assert po is not co  # the child's write shadowed its entry
    hot = {h["tag"]: h for h in _hot(w)}
    want = {f"row:p:{a:#x}", f"row:c:{a:#x}", f"obj:{po.id}", f"obj:{co.id}"}
    assert set(hot[f"row:p:{a:#x}"]["links"].split()) == want
    assert set(hot[f"row:c:{a:#x}"]["links"].split()) == want
    assert set(hot[f"obj:{co.id}"]["links"].split()) == {f"obj:{co.id}", f"row:c:{a:#x}"}
    # the hover tool runs the tag-linking callback; a canvas is unlinked unless asked
    tools = [t for t in w.view.figure.tools if getattr(t, "callback", None) is not None]
    assert len(tools) == 1 and tools[0].callback.code == _TAG_JS
    assert "links" not in Canvas().hot.data


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_fork_hover_js_marks_the_other_row_and_objects():
    """Run the browser callback in node on the shown data: hovering the parent's row
    outlines exactly the child's row, the parent's row and both objects' boxes."""
    vm, a = anon_process(4)
    vm_write(vm, a, 1)
    w = ForkView(vm, f"child:{a:#x}")
    w.player.step = len(w.trace) - 1
    hot = _hot(w)
    k = next(i for i, h in enumerate(hot) if h["tag"] == f"row:p:{a:#x}")
    data = {c: list(w.view.canvas.hot.data[c]) for c in ("l", "r", "t", "b", "tag", "links")}
    script = (f"const hot = {{data: {json.dumps(data)}}}; const mark = {{data: null}};\n"
              f"const f = new Function('cb_data', 'hot', 'mark', {json.dumps(_TAG_JS)});\n"
              f"f({{index: {{indices: [{k}]}}}}, hot, mark); const first = mark.data;\n"
              "mark.data = 'untouched'; f({index: {indices: [" + str(k) + "]}}, hot, mark);\n"
              "const again = mark.data; f({index: {indices: []}}, hot, mark);\n"
              "console.log(JSON.stringify([first, again, mark.data]));")
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    first, again, cleared = json.loads(out.stdout)
    po, co = _entry(vm, a).object, _entry(w.child, a).object
    want = {f"row:p:{a:#x}", f"row:c:{a:#x}", f"obj:{po.id}", f"obj:{co.id}"}
    boxes = {(h["l"], h["t"]) for h in hot if h["tag"] in want}
    assert len(boxes) == 4
    assert set(zip(first["l"], first["t"], strict=True)) == boxes
    assert again == "untouched"  # same box again: nothing re-sent
    assert cleared == {"l": [], "r": [], "b": [], "t": []}

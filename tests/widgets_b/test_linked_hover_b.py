"""Linked hover inside the prefault strip, the page walk and the stack view: which boxes a hover
outlines, computed by running the browser callback (`linking._TAG_JS`) in node on the data the
canvas holds (skipped without node); the ``links`` columns it reads are checked without node."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from wb_helpers import PAGE, anon_process, exec_process, prefault_process

from vmlab.core import vm_read
from vmlab.widgets import PageWalk, PrefaultStrip, StackGrowth
from vmlab.widgets.linking import _TAG_JS

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
Box = tuple[float, float, float, float]


def _hot(w: Any) -> list[dict[str, Any]]:
    d = w.view.canvas.hot.data
    return [{c: d[c][k] for c in d} for k in range(len(d["tag"]))]


def _links(w: Any) -> dict[str, set[str]]:
    """tag -> the tags its hot box links (the first box of that tag: boxes of one tag agree)."""
    out: dict[str, set[str]] = {}
    for h in _hot(w):
        out.setdefault(h["tag"], set(h["links"].split()))
    return out


def _box(h: dict[str, Any]) -> Box:
    return (h["l"], h["t"], h["r"], h["b"])


def _boxes(w: Any, *tags: str) -> set[Box]:
    got = {_box(h) for h in _hot(w) if h["tag"] in tags}
    assert {h["tag"] for h in _hot(w) if h["tag"] in tags} == set(tags), tags
    return got


def _centre(w: Any, tag: str, k: int = 0) -> tuple[float, float]:
    h = [h for h in _hot(w) if h["tag"] == tag][k]
    return ((h["l"] + h["r"]) / 2, (h["t"] + h["b"]) / 2)


def _hover(w: Any, points: list[tuple[float, float]]) -> list[set[Box]]:
    """Move the pointer over each point in turn; the boxes outlined after each move. The hit
    indices are every hot box holding the point, ascending (bokeh's hit test returns a
    bitset)."""
    hot = _hot(w)
    hits = [[k for k, h in enumerate(hot)
             if min(h["l"], h["r"]) <= x <= max(h["l"], h["r"])
             and min(h["t"], h["b"]) <= y <= max(h["t"], h["b"])] for x, y in points]
    data = {c: list(w.view.canvas.hot.data[c]) for c in ("l", "r", "t", "b", "tag", "links")}
    script = (f"const hot = {{data: {json.dumps(data)}}}; const mark = {{data: null}};\n"
              f"const f = new Function('cb_data', 'hot', 'mark', {json.dumps(_TAG_JS)});\n"
              f"const out = [];\n"
              f"for (const ind of {json.dumps(hits)}) {{\n"
              "  f({index: {indices: ind}}, hot, mark); out.push(mark.data); }\n"
              "console.log(JSON.stringify(out));")
    res = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    return [set(zip(m["l"], m["t"], m["r"], m["b"], strict=True)) if m else set()
            for m in json.loads(res.stdout)]


def test_views_are_linked_and_a_redraw_clears_the_marks():
    vm, a = prefault_process()
    vm2 = exec_process()
    for w in (PrefaultStrip(vm, a + 4 * PAGE), PageWalk(vm, a), StackGrowth(vm2)):
        c = w.view.canvas
        assert c.linked and "links" in c.hot.data
        tools = [t for t in c.figure.tools if getattr(t, "callback", None) is not None]
        assert [t.callback.code for t in tools] == [_TAG_JS]
        # any change of the hover boxes (the next step) empties the outline source
        assert set(c.hot.js_property_callbacks) == {"change:data", "patching"}
        assert c.mark.data == {"l": [], "r": [], "b": [], "t": []}


# -- PrefaultStrip -------------------------------------------------------------------------------

def _prefault() -> tuple[Any, int, list[dict[str, Any]]]:
    vm, a = prefault_process()
    fault = a + 4 * PAGE
    w = PrefaultStrip(vm, fault, "r")
    w.player.step = len(w.trace) - 1
    cands = [dict(s.data) for s in w.trace.steps if s.kind == "prefault_candidate"]
    return w, fault, cands


def test_prefault_cell_and_timeline_chip_link_each_other():
    w, fault, _c = _prefault()
    links = _links(w)
    # the timeline visits -1, +1, -2, +2, ... (4 back, 4 forward: 8 chips)
    spiral = [((k >> 1) + 1) * (-1 if k % 2 == 0 else 1) for k in range(8)]
    assert spiral == [-1, 1, -2, 2, -3, 3, -4, 4]
    for k, off in enumerate(spiral):
        assert links[f"cell:{off}"] == {f"cell:{off}", f"tl:{k}"}
        assert links[f"tl:{k}"] == {f"cell:{off}", f"tl:{k}"}
    assert links["cell:0"] == set()  # the faulting page is no candidate: no chip
    tips = {h["tag"]: h["tip"] for h in _hot(w)}
    assert tips["tl:0"].startswith(f"<b>{fault - PAGE:#x}</b> (-1 pages): candidate 1")
    assert tips["tl:6"].endswith("never examined")  # -4: after the stop at +3


@needs_node
def test_prefault_hover_outlines_exactly_the_same_page():
    w, fault, cands = _prefault()
    spiral = [-1, 1, -2, 2, -3, 3, -4, 4]
    points, want = [], []
    for k, off in enumerate(spiral):
        pair = _boxes(w, f"cell:{off}", f"tl:{k}")
        assert len(pair) == 2
        points += [_centre(w, f"cell:{off}"), _centre(w, f"tl:{k}")]
        want += [pair, pair]
    points.append(_centre(w, "cell:0"))
    want.append(set())
    assert _hover(w, points) == want
    # the visited ones include the stop at +3, drawn in its verdict colour
    assert [(c["va"] - fault) // PAGE for c in cands] == spiral[:6]


# -- PageWalk ------------------------------------------------------------------------------------

LEVELS = ("PML4E", "PDPTE", "PDE", "PTE")


def _walk(va_off: int = 0xABC) -> tuple[Any, int]:
    vm, a = anon_process()
    vm_read(vm, a)
    w = PageWalk(vm, a + va_off, "r", 3)
    assert w.value.ok and w.value.page_size == PAGE
    return w, a


def test_walk_index_fields_link_their_rows_and_offset_the_result():
    w, _a = _walk()
    w.player.step = len(w.trace) - 1
    links = _links(w)
    for lv in LEVELS:
        assert links[f"va:{lv}"] == links[f"row:{lv}"] == {f"va:{lv}", f"row:{lv}"}
        chips = [h for h in _hot(w) if h["tag"].startswith(f"flag:{lv}:")]
        assert chips and all(set(h["links"].split()) == {f"va:{lv}", f"row:{lv}"}
                             for h in chips)
    assert links["va:offset"] == links["result"] == {"va:offset", "result"}
    assert links["va:sign"] == set() and links["cr3"] == set()
    # mid-walk: unread rows are linked too; no result yet, so the offset links nothing
    w.player.step = 1
    links = _links(w)
    assert links["va:PTE"] == links["row:PTE"] == {"va:PTE", "row:PTE"}
    assert "not read yet" in next(h["tip"] for h in _hot(w) if h["tag"] == "row:PTE")
    assert links["va:offset"] == set() and "result" not in links


@needs_node
def test_walk_hover_outlines_field_and_row():
    w, _a = _walk()
    w.player.step = len(w.trace) - 1
    points, want = [], []
    for lv in LEVELS:
        pair = _boxes(w, f"va:{lv}", f"row:{lv}")
        assert len(pair) == 2
        points += [_centre(w, f"va:{lv}"), _centre(w, f"row:{lv}"),
                   _centre(w, f"flag:{lv}:P")]  # a chip on the row points where its row does
        want += [pair, pair, pair]
    off = _boxes(w, "va:offset", "result")
    points += [_centre(w, "va:offset"), _centre(w, "result"), _centre(w, "va:sign"),
               _centre(w, "cr3")]
    want += [off, off, set(), set()]
    assert _hover(w, points) == want


@needs_node
def test_walk_of_a_1gib_page_links_the_lower_index_fields_to_the_offset():
    """A DMAP address (FreeBSD's direct map: 1 GiB PDPTE leaves, pmap.c create_pagetables):
    bits 29:12 are offset bits, so the PD and PT fields go with the offset and the result; the
    rows the walk never read link nothing."""
    vm = exec_process()
    w = PageWalk(vm, 0xFFFF_F800_0000_1234, "r", 0)
    assert w.value.ok and w.value.page_size == 1 << 30
    w.player.step = len(w.trace) - 1
    group = {"va:offset", "va:PDE", "va:PTE", "result"}
    links = _links(w)
    assert all(links[t] == group for t in group)
    assert links["row:PDE"] == links["row:PTE"] == set()
    assert links["va:PDPTE"] == {"va:PDPTE", "row:PDPTE"}
    got = _hover(w, [_centre(w, "va:PTE"), _centre(w, "row:PDE"), _centre(w, "va:PDPTE")])
    assert got == [_boxes(w, *group), set(), _boxes(w, "va:PDPTE", "row:PDPTE")]


@needs_node
def test_walk_noncanonical_sign_field_links_the_gp_result():
    vm, _a = anon_process()
    w = PageWalk(vm, 0x0000_8000_0000_0000, "r")
    w.player.step = len(w.trace) - 1
    assert _links(w)["va:sign"] == {"va:sign", "result"}
    got = _hover(w, [_centre(w, "result"), _centre(w, "va:PML4E")])
    assert got == [_boxes(w, "va:sign", "result"), _boxes(w, "va:PML4E", "row:PML4E")]


# -- StackGrowth ---------------------------------------------------------------------------------

def _grow_step(w: Any) -> int:
    return next(i for i, s in enumerate(w.trace.steps) if s.kind == "grow")


@needs_node
def test_stack_fault_marker_links_the_gap_then_the_new_entry():
    vm = exec_process()
    w = StackGrowth(vm)  # three pages below the stack: in the gap, above its guard
    g = _grow_step(w)
    assert w.trace.steps[0].kind == "fault"
    w.player.step = 0
    assert _links(w)["fault"] == {"fault", "gap"}
    assert _links(w)["guard"] == set()
    tip = next(h["tip"] for h in _hot(w) if h["tag"] == "fault")
    assert tip.endswith(": in the stack gap")
    gap = _boxes(w, "fault", "gap")
    # the guard is the gap's lowest part: hovering it reaches the gap under it
    assert _hover(w, [_centre(w, "fault"), _centre(w, "gap"), _centre(w, "guard")]) == \
        [gap, gap, gap]
    # growstack first clips the gap's top: for a few steps the address is in no entry
    clip = next(i for i, s in enumerate(w.trace.steps) if s.kind == "extend")
    w.player.step = clip
    assert _links(w)["fault"] == set()
    assert next(h["tip"] for h in _hot(w) if h["tag"] == "fault").endswith(
        ": in no entry at this step")
    w.player.step = g  # grown: the address is now in the new stack entry
    links = _links(w)
    assert links["fault"] == links["new"] == {"fault", "new"}
    assert links["gap"] == set()
    new = _boxes(w, "fault", "new")
    assert _hover(w, [_centre(w, "new"), _centre(w, "fault"), _centre(w, "gap")]) == \
        [new, new, set()]


@needs_node
def test_stack_fault_in_the_guard_links_gap_and_guard():
    vm = exec_process()
    w = StackGrowth(vm, vm.vm_maxsaddr + 0x10)
    w.player.step = len(w.trace) - 1
    assert w.value == 2  # KERN_PROTECTION_FAILURE: nothing grew
    group = {"fault", "gap", "guard"}
    assert all(_links(w)[t] == group for t in group)
    assert "in the guard" in next(h["tip"] for h in _hot(w) if h["tag"] == "fault")
    boxes = _boxes(w, *group)
    assert len(boxes) == 3
    assert _hover(w, [_centre(w, "guard"), _centre(w, "fault")]) == [boxes, boxes]


# -- Canvas --------------------------------------------------------------------------------------

@needs_node
def test_linked_canvas_topmost_linking_box_decides():
    """A box drawn over another decides what a hover outlines; one that links nothing lets
    the pointer through to the box under it (`Canvas.draw` sends the hover boxes topmost
    first, `linking._TAG_JS` takes the first that links anything)."""
    from vmlab.widgets.canvas import Canvas, Scene

    class _V:  # what _hover reads: w.view.canvas
        pass

    sc = Scene()
    sc.box(0, 0, 100, 50, tag="under", tip="u")
    sc.box(10, 10, 30, 30, tag="over", tip="o")      # on top of "under"
    sc.box(60, 10, 80, 30, tag="chip", tip="c")      # on top of "under", links nothing
    sc.box(200, 0, 240, 50, tag="a", tip="a")
    sc.box(300, 0, 340, 50, tag="b", tip="b")
    sc.link(["under", "a"])
    sc.link(["over", "b"])
    sc.link(["over", "nowhere"])  # a tag no box has: no change
    canvas = Canvas(linked=True)
    canvas.draw(sc)
    w = _V()
    w.view = _V()
    w.view.canvas = canvas
    assert [h["tag"] for h in _hot(w)] == ["b", "a", "chip", "over", "under"]
    assert _links(w)["over"] == {"over", "b"} and _links(w)["chip"] == set()
    assert _hover(w, [(20, 20), (70, 20), (50, 40), (320, 20), (150, 20)]) == [
        _boxes(w, "over", "b"), _boxes(w, "under", "a"), _boxes(w, "under", "a"),
        _boxes(w, "over", "b"), set()]

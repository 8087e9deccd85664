"""Linked highlighting: point at an address in one view, see it marked in the others.

Works in the browser only (a bokeh ``CustomJS`` hover callback), so it stays instant however
busy the kernel is. All linked views must live in the same bokeh document (one `Embedded`).

Two forms. Between views of the same address space (map and tree): a *linkable* is a
``(figure, renderer, source, mark_source)`` tuple. ``source`` must have the columns
``start``/``end`` (the address range a glyph stands for) and ``l``/``r``/``b``/``t`` (the
glyph's bounding box in its figure's coordinates). ``mark_source`` (columns l, r, b, t)
feeds an outline glyph the view draws on top; the callback fills it with every glyph whose
range overlaps the pointed-at one. `linked_mark_glyph` draws that outline alike in every view.

Inside one diagram (`canvas.Canvas(linked=True)`, e.g. the fork view's parent row, child row
and object box of one address range): every hoverable box has a ``tag`` and ``links``, a
space-separated list of the tags it points at; `link_tags` marks the boxes whose tag is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bokeh.models import ColumnDataSource, CustomJS, HoverTool

__all__ = ["Linkable", "link_tags", "link_views", "linked_mark_glyph"]

Linkable = tuple[Any, Any, ColumnDataSource, ColumnDataSource]

# Every hover tool of a figure runs its callback on every pointer move, hit or not: the map's
# gap tool (no hit) must not erase what its entry tool (hit) just marked. So each source
# records its own pointed-at range in one shared table (kept on the first mark source), and
# the marks follow whichever source points at something.
_JS = """
const ind = cb_data.index.indices;
let s = null, e = null;
if (ind.length) { const k = ind[0]; s = src.data.start[k]; e = src.data.end[k]; }
if (s === e && s !== null) { e = s + 1; }
const hold = targets[0][1];
const hovered = hold._vmlab_hovered || (hold._vmlab_hovered = new Map());
hovered.set(src.id, s === null ? null : [s, e]);
s = null; e = null;
for (const r of hovered.values()) if (r !== null) { [s, e] = r; break; }
for (const [t, m] of targets) {
  const key = s === null ? '' : s + ':' + e;
  if (m._vmlab_key === key) continue;
  m._vmlab_key = key;
  const L = [], R = [], B = [], T = [];
  if (s !== null) {
    const ts = t.data.start, te = t.data.end, tl = t.data.l, tr = t.data.r,
          tb = t.data.b, tt = t.data.t;
    for (let j = 0; j < ts.length; j++)
      if (ts[j] < e && te[j] > s) { L.push(tl[j]); R.push(tr[j]); B.push(tb[j]); T.push(tt[j]); }
  }
  m.data = {l: L, r: R, b: B, t: T};
}
"""


def empty_marks() -> dict[str, list[float]]:
    return {"l": [], "r": [], "b": [], "t": []}


def linked_mark_glyph(fig: Any, mark: ColumnDataSource) -> Any:
    """Draw the "pointed at from another view" outline (dashed, dark) for ``mark``."""
    return fig.quad(left="l", right="r", bottom="b", top="t", source=mark, fill_alpha=0,
                    line_color="#111827", line_width=2, line_dash="dashed", level="overlay")


def link_views(linkables: Sequence[Linkable]) -> None:
    """Hovering a glyph of any linkable marks the overlapping glyphs of all of them."""
    targets = [[src, mark] for _f, _r, src, mark in linkables]
    for fig, renderer, src, _mark in linkables:
        cb = CustomJS(args={"src": src, "targets": targets}, code=_JS)
        tools = [t for t in fig.tools if isinstance(t, HoverTool)
                 and isinstance(t.renderers, list) and renderer in t.renderers]
        if tools:
            tools[0].callback = cb
        else:  # a hover tool with no tooltip, just for linking
            fig.add_tools(HoverTool(renderers=[renderer], tooltips=None, callback=cb))


# Hovering box k of ``hot`` outlines every hot box whose tag is in links[k]. The key check
# keeps a pointer moving inside one box from re-sending the marks on every move.
_TAG_JS = """
const ind = cb_data.index.indices;
let want = '';
for (const k of ind) { if (hot.data.links[k]) { want = hot.data.links[k]; break; } }
if (mark._vmlab_key === want) return;
mark._vmlab_key = want;
const keys = new Set(want.split(' ').filter((x) => x.length));
const L = [], R = [], B = [], T = [];
if (keys.size) {
  const d = hot.data;
  for (let j = 0; j < d.tag.length; j++)
    if (keys.has(d.tag[j])) { L.push(d.l[j]); R.push(d.r[j]); B.push(d.b[j]); T.push(d.t[j]); }
}
mark.data = {l: L, r: R, b: B, t: T};
"""
# A redraw (another step) moves the boxes: drop marks that would point at the old places.
_CLEAR_JS = "mark._vmlab_key = ''; mark.data = {l: [], r: [], b: [], t: []};"


def link_tags(hover: HoverTool, hot: ColumnDataSource, mark: ColumnDataSource) -> None:
    """Hovering a box of ``hot`` (columns l, r, t, b, tag, links) fills ``mark`` with the boxes
    whose tag its ``links`` lists; any change of ``hot`` clears ``mark``."""
    hover.callback = CustomJS(args={"hot": hot, "mark": mark}, code=_TAG_JS)
    clear = CustomJS(args={"mark": mark}, code=_CLEAR_JS)
    hot.js_on_change("data", clear)
    hot.js_on_change("patching", clear)

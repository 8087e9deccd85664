"""TreeView: the map's splay tree drawn as a tree, each node an entry with its max_free.

A node shows its range and ``max_free``. At each step of a search the descent so far is drawn
in blue, the node the step is about in amber, subtrees pruned because ``max_free < length`` are
greyed, and a rotation is labelled with its direction; after ``splay_done`` the new root is
marked. Everything is a pure function of the step's snapshot and the episode's step data
(`stepdata.splay_context`).

Large trees (more than `FULL_TREE` nodes) show the top levels, the search path and the path's
children; a hidden subtree is drawn as a small triangle with its node count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.core.properties import value
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, Range1d
from bokeh.plotting import figure

from . import theme
from .linking import empty_marks, linked_mark_glyph
from .mapview import _formatters
from .stepdata import splay_context, subtree_ids

__all__ = ["FULL_TREE", "TreeView", "tree_layout"]

FULL_TREE = 31
TOP_LEVELS = 4
NODE_W, NODE_H = 0.86, 0.62

NODE_TOOLTIP = [
    ("entry", "#@id (depth @depth)"),
    ("range", "@start{custom} – @end{custom}"),
    ("max_free", "@max_free{custom}"),
    ("hidden below", "@hidden nodes"),
]


def tree_layout(snap: Any, focus: set[int] | None = None) -> dict[str, Any]:
    """Positions of the visible nodes: x = in-order rank among them, y = -depth.

    Returns ids, rows (index into snap.entries), depth, x, y, parent (id or -1), hidden
    (count of nodes in non-visible child subtrees)."""
    e = snap.entries
    n = len(e)
    ids = e["id"].tolist()
    pos = {k: j for j, k in enumerate(ids)}
    left, right = e["left"].tolist(), e["right"].tolist()
    depth = [-1] * n
    parent = [-1] * n
    order: list[int] = []
    if snap.root >= 0 and snap.root in pos:
        stack = [(pos[snap.root], 0, -1)]
        while stack:
            j, dep, par = stack.pop()
            depth[j], parent[j] = dep, par
            order.append(j)
            for c in (left[j], right[j]):
                if c >= 0 and c in pos:
                    stack.append((pos[c], dep + 1, ids[j]))
    if n <= FULL_TREE:
        visible = set(order)
    else:
        visible = {j for j in order if depth[j] < TOP_LEVELS}
        for k in focus or ():
            j = pos.get(k)
            while j is not None and j >= 0 and depth[j] >= 0:
                visible.add(j)
                for c in (left[j], right[j]):
                    if c in pos:
                        visible.add(pos[c])
                p = parent[j]
                j = pos.get(p) if p >= 0 else None
    vis = sorted(visible)  # address order == in-order
    # hidden counts: subtree sizes of invisible children (iterative post-order)
    size = [1] * n
    for j in reversed(order):
        p = parent[j]
        if p >= 0:
            size[pos[p]] += size[j]
    hidden = []
    for j in vis:
        h = 0
        for c in (left[j], right[j]):
            if c >= 0 and c in pos and pos[c] not in visible:
                h += size[pos[c]]
        hidden.append(h)
    return {
        "ids": [ids[j] for j in vis],
        "rows": vis,
        "depth": [depth[j] for j in vis],
        "x": list(range(len(vis))),
        "y": [-depth[j] for j in vis],
        "parent": [parent[j] for j in vis],
        "hidden": hidden,
    }


class TreeView:
    """The splay tree at a trace step. ``figure`` is the bokeh figure to embed."""

    def __init__(self, *, title: str = "splay tree (node: range, max_free)",
                 width: int = theme.VIEW_WIDTH, height: int = 300) -> None:
        self.width = width
        self.embedded: Any = None
        fig = figure(width=width, height=height, x_range=Range1d(-0.6, 0.6),
                     y_range=Range1d(-1, 0.6), tools="pan,wheel_zoom,reset", active_scroll=None)
        theme.style_figure(fig, title=title)
        fig.xaxis.visible = False
        fig.yaxis.visible = False
        self.figure = fig
        cols = ["id", "start", "end", "max_free", "depth", "hidden", "x", "y", "l", "r", "b",
                "t", "fill", "alpha", "line", "lw", "text", "text_color"]
        self.nodes = ColumnDataSource({c: [] for c in cols})
        self.edges = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "color": [],
                                       "width": []})
        self.stubs = ColumnDataSource({"x": [], "y": [], "text": []})
        self.note = ColumnDataSource({"x": [], "y": [], "text": []})
        self.linked = ColumnDataSource(empty_marks())
        fig.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=self.edges, line_color="color",
                    line_width="width")
        fig.scatter(x="x", y="y", source=self.stubs, marker="triangle", size=12,
                    fill_color=theme.PRUNED, line_color=theme.GAP_LINE)
        fig.text(x="x", y="y", text="text", source=self.stubs, y_offset=14,
                 text_align="center", text_font=value(theme.MONO), text_font_size="9px",
                 text_color=theme.TEXT_MUTED)
        # an opaque card under each (translucent) node, so edges never run through its text
        fig.quad(left="l", right="r", bottom="b", top="t", source=self.nodes,
                 fill_color=theme.CARD_BG, line_color=None)
        r = fig.quad(left="l", right="r", bottom="b", top="t", source=self.nodes,
                     fill_color="fill", fill_alpha="alpha", line_color="line", line_width="lw")
        fig.text(x="x", y="y", text="text", source=self.nodes, text_align="center",
                 text_baseline="middle", text_font=value(theme.MONO), text_font_size="9.5px",
                 text_color="text_color", text_line_height=1.1)
        fig.text(x="x", y="y", text="text", source=self.note, y_offset=-26,
                 text_align="center", text_font=value(theme.FONT), text_font_size="11px",
                 text_color="#0891b2", text_font_style="bold")
        linked_mark_glyph(fig, self.linked)
        fmts = _formatters()
        fmts["@hidden"] = CustomJSHover(code="return value ? String(value) : '0';")
        fig.add_tools(HoverTool(renderers=[r], tooltips=NODE_TOOLTIP, formatters=fmts))
        self.node_renderer = r

    @property
    def linkables(self) -> list[tuple[Any, Any, ColumnDataSource, ColumnDataSource]]:
        return [(self.figure, self.node_renderer, self.nodes, self.linked)]

    def show_snapshot(self, snap: Any) -> None:
        from vmlab.core.trace import Step, Trace

        self.show(Trace(steps=[Step("note", "", {}, 0)], states=[snap]), 0)

    def show(self, trace: Any, i: int) -> None:
        from .bokeh_embed import set_data

        step = trace.steps[i]
        snap = trace.states[step.state]
        ctx = splay_context(trace, i)
        focus = set(ctx.path) | set(ctx.pruned)
        if ctx.current is not None:
            focus.add(ctx.current)
        lay = tree_layout(snap, focus)
        e = snap.entries
        rows = lay["rows"]
        nvis = len(rows)
        pruned_ids: set[int] = set()
        for p in ctx.pruned:
            pruned_ids.update(subtree_ids(snap, p))
        path = set(ctx.path)
        fill, alpha, line, lw, text, tcol = [], [], [], [], [], []
        compact = nvis > 14
        for k, j in zip(lay["ids"], rows, strict=True):
            row = e[j]
            s, en, mf = int(row["start"]), int(row["end"]), int(row["max_free"])
            base = theme.prot_color(int(row["protection"]), int(row["eflags"]))
            if k in pruned_ids:
                fill.append(theme.PRUNED)
                alpha.append(0.45)
                tcol.append(theme.TEXT_MUTED)
            else:
                fill.append(base)
                alpha.append(0.25)
                tcol.append(theme.TEXT)
            if k == ctx.current:
                line.append(theme.HIGHLIGHT)
                lw.append(4)
            elif k in path:
                line.append(theme.PATH)
                lw.append(3)
            else:
                line.append(base if k not in pruned_ids else theme.GAP_LINE)
                lw.append(1.5)
            if compact:
                text.append(f"{s:x}\nmf {theme.fmt_size(mf)}")
            else:
                text.append(f"{s:x}-{en:x}\nmax_free\n{theme.fmt_size(mf)}")
        xs = np.asarray(lay["x"], float)
        ys = np.asarray(lay["y"], float)
        set_data(self.nodes, {
            "id": lay["ids"], "start": e["start"][rows].astype(np.float64),
            "end": e["end"][rows].astype(np.float64),
            "max_free": e["max_free"][rows].astype(np.float64), "depth": lay["depth"],
            "hidden": lay["hidden"], "x": xs, "y": ys, "l": xs - NODE_W / 2,
            "r": xs + NODE_W / 2, "b": ys - NODE_H / 2, "t": ys + NODE_H / 2, "fill": fill,
            "alpha": alpha, "line": line, "lw": lw, "text": text, "text_color": tcol,
        })
        where = {k: (x, y) for k, x, y in zip(lay["ids"], lay["x"], lay["y"], strict=True)}
        edges: dict[str, list[Any]] = {"x0": [], "y0": [], "x1": [], "y1": [], "color": [],
                                       "width": []}
        for k, par in zip(lay["ids"], lay["parent"], strict=True):
            if par in where:
                (x0, y0), (x1, y1) = where[par], where[k]
                on_path = k in path and par in path
                edges["x0"].append(x0)
                edges["y0"].append(y0 - NODE_H / 2)
                edges["x1"].append(x1)
                edges["y1"].append(y1 + NODE_H / 2)
                edges["color"].append(theme.PATH if on_path else theme.GAP_LINE)
                edges["width"].append(3 if on_path else 1.5)
        set_data(self.edges, edges)
        stubs: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
        for x, y, h in zip(lay["x"], lay["y"], lay["hidden"], strict=True):
            if h:
                stubs["x"].append(x)
                stubs["y"].append(y - NODE_H / 2 - 0.25)
                stubs["text"].append(f"+{h}")
        set_data(self.stubs, stubs)
        note: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
        if ctx.rotation is not None and ctx.rotation[0] in where:
            x, y = where[ctx.rotation[0]]
            arrow = "↻" if ctx.rotation[1] == "right" else "↺"
            note = {"x": [x], "y": [y], "text": [f"{arrow} rotate {ctx.rotation[1]}"]}
        elif step.kind == "splay_done" and ctx.root_done in where:
            x, y = where[ctx.root_done]
            note = {"x": [x], "y": [y], "text": ["new root"]}
        set_data(self.note, note)
        maxdepth = -min(lay["y"]) if lay["y"] else 0
        self.figure.x_range.update(start=-0.6, end=max(nvis - 1, 0) + 0.6)
        self.figure.y_range.update(start=-maxdepth - 0.9, end=0.55)

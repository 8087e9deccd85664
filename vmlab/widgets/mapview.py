"""MapView: one vm_map drawn along its address axis, entries coloured by protection.

Gaps are drawn explicitly (hatched); a sparse map gets a compressed axis (see `scale`), with ≈
marks where a gap was squeezed. Hovering shows every field of an entry. The current step's
entry, gap, pruned range or the entry being inserted is highlighted. The axis is fixed for a
whole trace (the union of every snapshot's entries), so nothing jumps while stepping.

Updates replace or patch the sources (`bokeh_embed.set_data`), never rebuild the figure, and
a snapshot's columns are computed once and cached: stepping through twenty splay visits that
share one snapshot sends only the few highlight rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.core.properties import value
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, Range1d
from bokeh.plotting import figure

from . import theme
from .linking import empty_marks, linked_mark_glyph
from .scale import WIDTH, AddressScale
from .stepdata import entry_bounds, pending_insert, subtree_ids

__all__ = ["HOVER_FORMATTERS", "MapView", "entry_columns", "hover_tool"]

# Entry rectangles span y in [B, T]; the arriving entry floats above them.
B, T = 0.0, 1.0
GHOST_B, GHOST_T = 1.35, 1.95
MAX_LABELS = 60

_HEX = "return '0x' + Math.round(value).toString(16);"
_SIZE = """
const u = [['T', 2**40], ['G', 2**30], ['M', 2**20], ['K', 2**10]];
for (const [n, s] of u) if (value >= s) { const v = value / s;
  return (Number.isInteger(v) ? v : v.toFixed(1)) + n; }
return value + 'B';
"""
_PROT = "const p = Math.round(value); return (p&1?'r':'-') + (p&2?'w':'-') + (p&4?'x':'-');"
_EFLAGS = (
    "const names = " + repr({k: v for k, v in theme.EFLAG_NAMES.items()}).replace("'", '"')
    + """;
const f = Math.round(value); const out = [];
for (const k in names) if (f & Number(k)) out.push(names[k]);
return out.length ? out.join('|') : '0';
"""
)
_INH = "return ['share','copy','none','zero'][Math.round(value)] ?? String(value);"
_OBJ = "return value < 0 ? 'none' : '#' + Math.round(value);"


def _formatters() -> dict[str, CustomJSHover]:
    hexf, size = CustomJSHover(code=_HEX), CustomJSHover(code=_SIZE)
    return {
        "@start": hexf, "@end": hexf, "@offset": hexf, "@size": size, "@max_free": size,
        "@prot": CustomJSHover(code=_PROT), "@max_prot": CustomJSHover(code=_PROT),
        "@eflags": CustomJSHover(code=_EFLAGS), "@inheritance": CustomJSHover(code=_INH),
        "@object": CustomJSHover(code=_OBJ),
    }


HOVER_FORMATTERS = _formatters

ENTRY_TOOLTIP = [
    ("entry", "#@id"),
    ("range", "@start{custom} – @end{custom}"),
    ("size", "@size{custom}"),
    ("prot / max", "@prot{custom} / @max_prot{custom}"),
    ("inheritance", "@inheritance{custom}"),
    ("eflags", "@eflags{custom}"),
    ("object", "@object{custom}  offset @offset{custom}"),
    ("wired", "@wired_count"),
    ("max_free", "@max_free{custom}"),
]
GAP_TOOLTIP = [("free gap", "@start{custom} – @end{custom}"), ("size", "@size{custom}")]


def hover_tool(renderer: Any, tooltips: list[tuple[str, str]]) -> HoverTool:
    """A hover tool with the lab's field formatters (hex addresses, sizes, rwx, eflags)."""
    return HoverTool(renderers=[renderer], tooltips=tooltips, formatters=_formatters(),
                     point_policy="follow_mouse")


def entry_columns(snap: Any, scale: AddressScale, b: float = B, t: float = T) -> dict[str, Any]:
    """The entry source's columns for a snapshot (all numeric: formatted in the browser)."""
    e = snap.entries
    start = e["start"].astype(np.float64)
    end = e["end"].astype(np.float64)
    n = len(e)
    prot = e["protection"].astype(np.int32)
    eflags = e["eflags"].astype(np.int64)
    color_idx = np.where(eflags & theme.GUARD_BIT, 8, prot & 7)
    palette = np.array([theme.PROT_COLORS[k] for k in range(8)] + [theme.GUARD_FILL])
    return {
        "id": e["id"].astype(np.int32),
        "start": start,
        "end": end,
        "size": end - start,
        "offset": e["offset"].astype(np.float64),
        "prot": prot,
        "max_prot": e["max_protection"].astype(np.int32),
        "inheritance": e["inheritance"].astype(np.int32),
        "eflags": eflags.astype(np.float64),
        "object": e["object"].astype(np.int32),
        "wired_count": e["wired_count"].astype(np.int32),
        "max_free": e["max_free"].astype(np.float64),
        "l": scale.x(start) if n else np.zeros(0),
        "r": scale.x(end) if n else np.zeros(0),
        "b": np.full(n, b),
        "t": np.full(n, t),
        "color": palette[color_idx].tolist(),
    }


def gap_columns(snap: Any, scale: AddressScale) -> dict[str, Any]:
    e = snap.entries
    starts = np.concatenate([[float(snap.min)], e["end"].astype(np.float64)])
    ends = np.concatenate([e["start"].astype(np.float64), [float(snap.max)]])
    keep = ends > starts
    gs, ge = starts[keep], ends[keep]
    n = len(gs)
    return {"start": gs, "end": ge, "size": ge - gs, "l": scale.x(gs), "r": scale.x(ge),
            "b": np.full(n, B + 0.2), "t": np.full(n, T - 0.2)}


class MapView:
    """The map of one vm_map at a trace step. ``figure`` is the bokeh figure to embed."""

    def __init__(self, *, title: str = "vm_map", width: int = theme.VIEW_WIDTH,
                 height: int = 190, mode: str = "auto") -> None:
        self.mode = mode
        self.width = width
        self.embedded: Any = None  # set by the animation that embeds this view
        self.scale = AddressScale.build(0, 1, [], [], mode="linear")
        self._trace_key: int | None = None
        self._cols: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._pending: list[Any] = []

        fig = figure(width=width, height=height, x_range=Range1d(0, WIDTH, bounds=(0, WIDTH)),
                     y_range=Range1d(-0.75, 2.35), tools="xpan,xwheel_zoom,reset",
                     active_scroll=None)
        theme.style_figure(fig, title=title)
        fig.yaxis.visible = False
        fig.xaxis.formatter = self.scale.tick_formatter()
        fig.xaxis.ticker.desired_num_ticks = 6
        self.figure = fig

        self.entries = ColumnDataSource(_empty(["id", "start", "end", "size", "offset", "prot",
                                               "max_prot", "inheritance", "eflags", "object",
                                               "wired_count", "max_free", "l", "r", "b", "t",
                                               "color"]))
        self.gaps = ColumnDataSource(_empty(["start", "end", "size", "l", "r", "b", "t"]))
        self.labels = ColumnDataSource(_empty(["x", "text"]))
        self.breaks = ColumnDataSource(_empty(["x", "text"]))
        self.pruned = ColumnDataSource(_empty(["l", "r"]))
        self.hl = ColumnDataSource(_empty(["l", "r", "x", "text"]))
        self.gap_hl = ColumnDataSource(_empty(["l", "r", "color", "x", "text"]))
        self.ghost = ColumnDataSource(_empty(["l", "r", "x", "text"]))
        self.marks = ColumnDataSource(_empty(["x", "text"]))
        self.linked = ColumnDataSource(empty_marks())

        g = fig.quad(left="l", right="r", bottom="b", top="t", source=self.gaps,
                     fill_color=theme.GAP_FILL, line_color=theme.GAP_LINE,
                     hatch_pattern="/", hatch_color=theme.GAP_LINE, hatch_alpha=0.6,
                     hatch_scale=8)
        fig.text(x="x", y=0.5, text="text", source=self.breaks, text_align="center",
                 text_baseline="middle", text_font_size="16px", text_color=theme.TEXT_MUTED)
        fig.quad(left="l", right="r", bottom=B - 0.12, top=T + 0.12, source=self.pruned,
                 fill_color=theme.PRUNED, fill_alpha=0.55, line_color=None)
        r = fig.quad(left="l", right="r", bottom="b", top="t", source=self.entries,
                     fill_color="color", line_color="white", line_width=1)
        fig.text(x="x", y=0.5, text="text", source=self.labels, text_align="center",
                 text_baseline="middle", text_font=value(theme.MONO), text_font_size="10px",
                 text_color="white")
        fig.quad(left="l", right="r", bottom=B - 0.08, top=T + 0.08, source=self.gap_hl,
                 fill_color="color", fill_alpha=0.3, line_color="color", line_width=2,
                 line_dash="dashed")
        fig.text(x="x", y=-0.4, text="text", source=self.gap_hl, text_align="center",
                 text_baseline="middle", text_font=value(theme.FONT), text_font_size="11px",
                 text_color="color")
        fig.quad(left="l", right="r", bottom=B - 0.1, top=T + 0.1, source=self.hl,
                 fill_alpha=0, line_color=theme.HIGHLIGHT, line_width=4)
        fig.text(x="x", y=-0.4, text="text", source=self.hl, text_align="center",
                 text_baseline="middle", text_font=value(theme.FONT), text_font_size="11px",
                 text_color=theme.TEXT)
        fig.quad(left="l", right="r", bottom=GHOST_B, top=GHOST_T, source=self.ghost,
                 fill_color=theme.NEW_ENTRY, fill_alpha=0.35, line_color=theme.NEW_ENTRY,
                 line_width=2, line_dash="dashed")
        fig.text(x="x", y=(GHOST_B + GHOST_T) / 2, text="text", source=self.ghost,
                 text_align="center", text_baseline="middle", text_font=value(theme.MONO),
                 text_font_size="10px", text_color=theme.TEXT)
        fig.segment(x0="x", x1="x", y0=B - 0.25, y1=GHOST_T, source=self.marks,
                    line_color=theme.ACCENT, line_width=2)
        fig.text(x="x", y=2.15, text="text", source=self.marks, text_align="center",
                 text_baseline="middle", text_font=value(theme.MONO), text_font_size="10px",
                 text_color=theme.ACCENT)
        linked_mark_glyph(fig, self.linked)
        fig.add_tools(hover_tool(r, ENTRY_TOOLTIP), hover_tool(g, GAP_TOOLTIP))
        self.entry_renderer, self.gap_renderer = r, g

    # -- linking -----------------------------------------------------------------------------
    @property
    def linkables(self) -> list[tuple[Any, Any, ColumnDataSource, ColumnDataSource]]:
        return [(self.figure, self.entry_renderer, self.entries, self.linked),
                (self.figure, self.gap_renderer, self.gaps, self.linked)]

    # -- drawing -----------------------------------------------------------------------------
    def prepare(self, trace: Any) -> None:
        """Fix the axis for ``trace`` (union of all its snapshots) and precompute per-step
        context. Called automatically when `show` sees a new trace."""
        states = [s for s in trace.states if hasattr(s, "entries")]
        self._trace_key = id(trace)
        self._cols.clear()
        self._pending = pending_insert(trace) if len(trace) else []
        extra = [a for p in self._pending if p for a in p]
        for st in trace.steps:
            if st.kind == "gap_check":
                extra += [int(st.data.get("start", 0)), int(st.data.get("end", 0))]
        self._set_scale(states, extra)

    def _set_scale(self, states: list[Any], extra: list[int]) -> None:
        if not states:
            return
        lo, hi = min(s.min for s in states), max(s.max for s in states)
        starts = np.concatenate([s.entries["start"].astype(np.float64) for s in states])
        ends = np.concatenate([s.entries["end"].astype(np.float64) for s in states])
        extra = [a for a in extra if lo <= a <= hi]
        self.scale = AddressScale.build(lo, hi, starts, ends, mode=self.mode, extra=extra,
                                        px=self.width)
        src = self.figure.xaxis[0].formatter.args["bp"]
        self.scale.update_source(src)
        self.figure.x_range.update(start=0, end=WIDTH)

    def columns(self, trace: Any, state_index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Cached (entry columns, gap columns) for one snapshot of the trace."""
        cols = self._cols.get(state_index)
        if cols is None:
            snap = trace.states[state_index]
            cols = (entry_columns(snap, self.scale), gap_columns(snap, self.scale))
            self._cols[state_index] = cols
        return cols

    def show_snapshot(self, snap: Any) -> None:
        """Draw a bare snapshot (no trace): e.g. the map before anything ran."""
        from vmlab.core.trace import Step, Trace

        tr = Trace(steps=[Step("note", "", {}, 0)], states=[snap])
        self.show(tr, 0)

    def show(self, trace: Any, i: int) -> None:
        from .bokeh_embed import set_data

        if self._trace_key != id(trace):
            self.prepare(trace)
        step = trace.steps[i]
        snap = trace.states[step.state]
        ecols, gcols = self.columns(trace, step.state)
        set_data(self.entries, ecols)
        set_data(self.gaps, gcols)
        set_data(self.labels, self._labels(ecols))
        sx = self.scale
        set_data(self.breaks, {"x": list(sx.breaks), "text": ["≈"] * len(sx.breaks)})
        hl: dict[str, list[Any]] = {"l": [], "r": [], "x": [], "text": []}
        gap_hl: dict[str, list[Any]] = {"l": [], "r": [], "color": [], "x": [], "text": []}
        pruned: dict[str, list[Any]] = {"l": [], "r": []}
        marks: dict[str, list[Any]] = {"x": [], "text": []}
        d = step.data

        def add_hl(rng: tuple[int, int] | None, text: str = "") -> None:
            if rng is None:
                return
            lft, rgt = sx.x(rng[0]), sx.x(rng[1])
            hl["l"].append(lft)
            hl["r"].append(rgt)
            hl["x"].append((lft + rgt) / 2)
            hl["text"].append(text)

        def add_mark(addr: int, text: str) -> None:
            if snap.min <= addr <= snap.max:
                marks["x"].append(sx.x(addr))
                marks["text"].append(text)

        kind = step.kind
        if kind in ("splay_visit", "rotate", "modify"):
            node = d.get("node", d.get("entry"))
            add_hl(entry_bounds(snap, node), f"entry #{node}" if node is not None else "")
        elif kind == "splay_done":
            add_hl(entry_bounds(snap, d.get("root")), "new root")
        elif kind == "prune":
            ids = subtree_ids(snap, int(d.get("node", -1)))
            rows = snap.entries[np.isin(snap.entries["id"], ids)]
            if len(rows):
                pruned["l"].append(sx.x(int(rows["start"].min())))
                pruned["r"].append(sx.x(int(rows["end"].max())))
        elif kind == "gap_check":
            s, e = int(d.get("start", 0)), int(d.get("end", 0))
            fits = bool(d.get("fits"))
            lft, rgt = sx.x(s), sx.x(e)
            gap_hl["l"].append(lft)
            gap_hl["r"].append(rgt)
            gap_hl["color"].append(theme.OK if fits else theme.ERROR)
            gap_hl["x"].append((lft + rgt) / 2)
            gap_hl["text"].append(f"{theme.fmt_size(e - s)} gap: " +
                                  ("fits ✓" if fits else "too small ✗"))
        elif kind == "clip":
            add_hl(entry_bounds(snap, d.get("entry")))
            add_hl(entry_bounds(snap, d.get("new_entry")))
            if d.get("at") is not None:
                add_mark(int(d["at"]), f"clip {theme.fmt_addr(d['at'])}")
        elif kind in ("link", "unlink", "merge"):
            s, e = d.get("start"), d.get("end")
            if s is not None and e is not None:
                add_hl((int(s), int(e)), kind)
        elif kind == "extend":
            s = d.get("old_end")
            e = d.get("new_end")
            if s is not None and e is not None:
                add_hl((int(s), int(e)), "extended")
        elif kind == "call":
            s = d.get("args", {}).get("start") if isinstance(d.get("args"), dict) else None
            if d.get("name") == "vm_map_findspace" and s is not None:
                add_mark(int(s), f"start {theme.fmt_addr(s)}")
        elif kind == "return" and d.get("name") == "vm_map_findspace":
            val = d.get("value") if d.get("value") is not None else d.get("rv")
            if val is not None:
                add_mark(int(val), f"→ {theme.fmt_addr(val)}")
        ghost: dict[str, list[Any]] = {"l": [], "r": [], "x": [], "text": []}
        pend = self._pending[i] if i < len(self._pending) else None
        if pend is not None and pend[1] <= snap.max and pend[0] >= snap.min:
            lft, rgt = sx.x(pend[0]), sx.x(pend[1])
            ghost = {"l": [lft], "r": [rgt], "x": [(lft + rgt) / 2],
                     "text": [f"new {theme.fmt_addr(pend[0])}–{theme.fmt_addr(pend[1])}"]}
        set_data(self.hl, hl)
        set_data(self.gap_hl, gap_hl)
        set_data(self.pruned, pruned)
        set_data(self.ghost, ghost)
        set_data(self.marks, marks)

    def _labels(self, ecols: dict[str, Any]) -> dict[str, list[Any]]:
        n = len(ecols["l"])
        if n == 0 or n > MAX_LABELS:
            return {"x": [], "text": []}
        px = (ecols["r"] - ecols["l"]) / WIDTH * self.width
        xs, texts = [], []
        for j in np.nonzero(px >= 26)[0].tolist():
            xs.append(float(ecols["l"][j] + ecols["r"][j]) / 2)
            guard = int(ecols["eflags"][j]) & theme.GUARD_BIT
            texts.append("guard" if guard and px[j] >= 36 else theme.prot_str(ecols["prot"][j]))
        return {"x": xs, "text": texts}


def _empty(names: list[str]) -> dict[str, list[Any]]:
    return {n: [] for n in names}

"""AddressSpaceOverview: a whole address space at a glance, readable at 47 bits and 65,530 entries.

The axis is segmented (`scale.AddressScale`, mode ``"log"`` by default): every entry and every
gap gets a width that grows with the log of its size, so a guard page and a 100 TiB hole are
both visible and in address order; ≈ marks squeezed gaps. Upper band: protection; lower band:
object type. Wheel to zoom, drag to pan; the tick labels are true addresses at every zoom.
Hovering shows every field of the entry, plus the path and type when the map was imported.

Built for size: every column is numeric (strings are formatted in the browser), colours are
palette indices, paths are indices into one list. See benchmarks/bench_widgets.py for the
measured build time and bytes sent for 65,530 entries.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    HoverTool,
    LinearColorMapper,
    Range1d,
)
from bokeh.plotting import figure

from . import theme
from .bokeh_embed import Embedded
from .mapview import _formatters
from .scale import WIDTH, AddressScale

__all__ = ["MODES", "TYPE_COLORS", "AddressSpaceOverview", "as_snapshot",
           "overview_columns"]

#: Object / mapping type (vmlab.io's ``type`` strings, FreeBSD and Linux) -> colour.
TYPE_COLORS: dict[str, str] = {
    "none": "#e5e7eb",
    "anon": "#9c755f",
    "swap": "#9c755f",
    "default": "#9c755f",
    "heap": "#c49c7f",
    "stack": "#0f766e",
    "vnode": "#edc948",
    "file": "#edc948",
    "device": "#6b7280",
    "physical": "#8cd17d",
    "phys": "#8cd17d",
    "guard": "#374151",
    "shmem": "#86bcb6",
    "vdso": "#d37295",
    "vvar": "#d37295",
    "vsyscall": "#d37295",
    "special": "#d37295",
    "pagetable": "#a0cbe8",
    "object": "#bcbd22",
    "other": "#c4b5fd",
}
MAX_BREAK_MARKS = 2000
#: Every entry is drawn at least this many screen pixels wide, at any zoom (a one-page entry
#: in a 47-bit space is 10^-8 px to scale). Its tooltip still gives the true range.
MIN_PX = 3

# Hover filters: the true-size quad answers for entries at least MIN_PX wide on screen, the
# MIN_PX marker for the narrower ones, so an entry never shows two tooltips.
_WIDE_JS = """
const px = (cb_data.row.r - cb_data.row.l) * fig.inner_width / (xr.end - xr.start);
return wide ? px >= min_px : px < min_px;
"""

_SIZE_FROM_ROW = """
const i = special_vars.index; const v = src.data.end[i] - src.data.start[i];
const u = [['T', 2**40], ['G', 2**30], ['M', 2**20], ['K', 2**10]];
for (const [n, s] of u) if (v >= s) { const x = v / s;
  return (Number.isInteger(x) ? x : x.toFixed(1)) + n; }
return v + 'B';
"""
_NAME = "const k = Math.round(value); return k < 0 ? '' : names[k];"


def _is_map_snapshot(obj: Any) -> bool:
    return hasattr(obj, "min") and hasattr(obj, "root") and \
        isinstance(getattr(obj, "entries", None), np.ndarray)


def as_snapshot(obj: Any) -> Any:
    """A MapSnapshot from a MapSnapshot, a live VmMap, a process (a `Vmspace`: its
    ``vm_map``, as struct vmspace embeds its vm_map), a `ProcessSnapshot` (its ``map``), or
    anything with ``to_snapshot()``."""
    if _is_map_snapshot(obj):
        return obj
    if hasattr(obj, "to_snapshot"):
        return obj.to_snapshot()
    # a Vmspace records a ProcessSnapshot, not a MapSnapshot: draw its map
    inner = getattr(obj, "vm_map", None)
    if inner is not None and hasattr(inner, "_trace_snapshot"):
        return as_snapshot(inner)
    if _is_map_snapshot(getattr(obj, "map", None)):  # a ProcessSnapshot
        return obj.map
    if hasattr(obj, "_trace_snapshot"):
        snap = obj._trace_snapshot()
        if _is_map_snapshot(snap):
            return snap
    raise TypeError(f"cannot draw {type(obj).__name__}: pass a VmMap, a process (Vmspace), "
                    f"a MapSnapshot, a ProcessSnapshot or an imported map (anything with "
                    f".to_snapshot())")


#: The axis modes the overview accepts (`scale.AddressScale.build`).
MODES = ("log", "gaps", "linear", "auto")


def _type_name(t: str) -> str:
    t = (t or "").lower()
    return t if t in TYPE_COLORS else ("other" if t else "none")


def overview_columns(snap: Any, scale: AddressScale,
                     rows: Sequence[dict[str, Any]] | None = None) -> tuple[dict[str, Any],
                                                                            list[str], list[str]]:
    """(columns, path names, type names) for the overview's entry source."""
    e = snap.entries
    n = len(e)
    # to scale, a page of a 47-bit space is 3e-8 display units: float32 would round it away
    xdt = np.float64 if scale.mode == "linear" else np.float32
    start = e["start"].astype(np.float64)
    end = e["end"].astype(np.float64)
    eflags = e["eflags"].astype(np.uint32)
    prot_idx = np.where(eflags & theme.GUARD_BIT, 8, e["protection"] & 7).astype(np.uint8)
    types: list[str] = []
    paths: list[str] = []
    if rows is not None and len(rows) == n:
        tnames = [_type_name(str(r.get("type", ""))) for r in rows]
        pnames = [str(r.get("path", "") or "") for r in rows]
    else:
        tnames = ["none" if o < 0 else "object" for o in e["object"].tolist()]
        pnames = [""] * n
    types = sorted(set(tnames))
    tpos = {t: k for k, t in enumerate(types)}
    paths = sorted(set(pnames))
    ppos = {p: k for k, p in enumerate(paths)}
    cols = {
        "id": e["id"].astype(np.int32),
        "start": start,
        "end": end,
        "offset": e["offset"].astype(np.float64),
        "max_free": e["max_free"].astype(np.float64),
        "prot": e["protection"].astype(np.uint8),
        "max_prot": e["max_protection"].astype(np.uint8),
        "inheritance": e["inheritance"].astype(np.uint8),
        "eflags": eflags,
        "object": e["object"].astype(np.int32),
        "wired_count": e["wired_count"].astype(np.int32),
        "l": scale.x(start).astype(xdt) if n else np.zeros(0, xdt),
        "r": scale.x(end).astype(xdt) if n else np.zeros(0, xdt),
        "pcol": prot_idx.astype(np.float32) + 0.5,
        "tcol": np.array([tpos[t] for t in tnames], np.float32) + 0.5,
        "path": np.array([ppos[p] for p in pnames], np.int32),
        "type": np.array([tpos[t] for t in tnames], np.int32),
    }
    cols["m"] = ((cols["l"] + cols["r"]) / 2).astype(xdt)
    return cols, paths, types


class AddressSpaceOverview(W.VBox):
    """The whole map, readable at any size. ``AddressSpaceOverview(m)`` for a VmMap, a process
    (`Vmspace`), a MapSnapshot, a ProcessSnapshot or an imported map (``vmlab.io``); anything
    it cannot draw (or a bad ``mode``) leaves only an inline sentence. ``rows=`` gives
    per-entry dicts with ``path``/``type`` (taken from ``obj.rows()`` when the object has
    it)."""

    def __init__(self, obj: Any, *, rows: Sequence[dict[str, Any]] | None = None,
                 mode: str = "log", title: str | None = None,
                 width: int = theme.VIEW_WIDTH, height: int = 210) -> None:
        self.error = W.HTML()
        self.error.add_class("vmlab-error")
        self.snapshot: Any = None
        try:
            children = self._build(obj, rows, mode, title, width, height)
        except Exception as exc:  # noqa: BLE001 - shown to the student instead of a traceback
            # nothing half-drawn: only the sentence is shown
            self.snapshot = None
            self.error.value = (f'<span style="color:{theme.ERROR};font-family:{theme.FONT}">'
                                f"{html.escape(str(exc))}</span>")
            super().__init__([self.error])
            self.add_class("vmlab-overview")
            return
        super().__init__(children, layout=W.Layout(max_width="880px"))
        self.add_class("vmlab-overview")

    def _build(self, obj: Any, rows: Sequence[dict[str, Any]] | None, mode: str,
               title: str | None, width: int, height: int) -> list[W.Widget]:
        """The figure and legend; raises (with a sentence) on anything it cannot draw."""
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not an axis mode (one of "
                             f"{', '.join(MODES)})")
        snap = as_snapshot(obj)
        if rows is None and hasattr(obj, "rows"):
            rows = obj.rows()
        e = snap.entries
        self.scale = AddressScale.build(snap.min, snap.max, e["start"].astype(np.float64),
                                        e["end"].astype(np.float64), mode=mode, px=width)
        cols, paths, types = overview_columns(snap, self.scale, rows)
        self.paths, self.types = paths, types
        self.source = ColumnDataSource(cols)
        # a little room at both ends, so a MIN_PX marker at the very edge is not cut in half;
        # zoom in until 16 pages span the figure (to scale, that is 10^-7 of a 47-bit axis)
        pad = WIDTH * 0.006
        span = max(float(snap.max) - float(snap.min), 1.0)
        finest = WIDTH * 16 * 4096 / span if self.scale.mode == "linear" else 1e-3
        fig = figure(width=width, height=height,
                     x_range=Range1d(-pad, WIDTH + pad, bounds=(-pad, WIDTH + pad),
                                     min_interval=min(finest, 1e-3)),
                     y_range=Range1d(-0.15, 1.25), tools="xpan,xwheel_zoom,xbox_zoom,reset",
                     active_scroll="xwheel_zoom", active_drag="xpan")
        nent = len(e)
        title = title or (f"address space {theme.fmt_addr(snap.min)} – "
                          f"{theme.fmt_addr(snap.max)}: {nent:,} entries, "
                          f"{theme.fmt_size(int(snap.size))} mapped "
                          f"({self.scale.mode} axis; wheel to zoom, drag to pan)")
        theme.style_figure(fig, title=title)
        fig.yaxis.visible = False
        fig.xaxis.formatter = self.scale.tick_formatter()
        fig.xaxis.ticker.desired_num_ticks = 6
        fig.quad(left=0, right=WIDTH, bottom=0.05, top=1.0, fill_color=theme.GAP_FILL,
                 line_color=theme.GAP_LINE, hatch_pattern="/", hatch_color=theme.GAP_LINE,
                 hatch_alpha=0.5, hatch_scale=8)
        pal = [theme.PROT_COLORS[k] for k in range(8)] + [theme.GUARD_FILL]
        pmap = LinearColorMapper(palette=pal, low=0, high=len(pal))
        tpal = [TYPE_COLORS[t] for t in types] or ["#ffffff"]
        tmap = LinearColorMapper(palette=tpal, low=0, high=len(tpal))
        pfill = {"field": "pcol", "transform": pmap}
        tfill = {"field": "tcol", "transform": tmap}
        # The outline, MIN_PX screen pixels wide in the fill colour, keeps a sliver visible at
        # any zoom; a transparent MIN_PX-wide marker at each entry's centre makes it hoverable
        # (a quad is hit only inside its true, perhaps 10^-8 px, extent). Painting a second
        # visible glyph per entry would cost ≈ 60% more per redraw at 65,530 entries.
        r = fig.quad(left="l", right="r", bottom=0.42, top=1.0, source=self.source,
                     fill_color=pfill, line_color=pfill, line_width=MIN_PX)
        fig.quad(left="l", right="r", bottom=0.05, top=0.38, source=self.source,
                 fill_color=tfill, line_color=tfill, line_width=MIN_PX)
        rmin = fig.rect(x="m", y=0.71, width=MIN_PX, width_units="screen", height=0.58,
                        source=self.source, fill_alpha=0, line_color=None)
        nb = len(self.scale.breaks)
        if 0 < nb <= MAX_BREAK_MARKS:
            fig.text(x=self.scale.breaks.tolist(), y=[1.1] * nb, text=["≈"] * nb,
                     text_align="center", text_baseline="middle", text_font_size="12px",
                     text_color=theme.TEXT_MUTED)
        fmts = _formatters()
        fmts["@l"] = CustomJSHover(args={"src": self.source}, code=_SIZE_FROM_ROW)
        fmts["@path"] = CustomJSHover(args={"names": paths}, code=_NAME)
        fmts["@type"] = CustomJSHover(args={"names": types}, code=_NAME)
        tips = [
            ("entry", "#@id"),
            ("range", "@start{custom} – @end{custom}"),
            ("size", "@l{custom}"),
            ("prot / max", "@prot{custom} / @max_prot{custom}"),
            ("inheritance", "@inheritance{custom}"),
            ("eflags", "@eflags{custom}"),
            ("object", "@object{custom}  offset @offset{custom}"),
            ("wired", "@wired_count"),
            ("max_free", "@max_free{custom}"),
            ("type", "@type{custom}"),
        ]
        if any(paths):
            tips.append(("path", "@path{custom}"))
        for rend, wide in ((r, True), (rmin, False)):
            keep = CustomJS(args={"fig": fig, "xr": fig.x_range, "wide": wide,
                                  "min_px": MIN_PX}, code=_WIDE_JS)
            fig.add_tools(HoverTool(renderers=[rend], tooltips=tips, formatters=fmts,
                                    point_policy="follow_mouse", filters={"@l": keep},
                                    limit=4))
        self.entry_renderer, self.marker_renderer = r, rmin
        self.figure = fig
        self.embedded = Embedded(fig)
        legend = W.HTML(theme.legend_html(highlight=False) + _type_legend(types))
        self.snapshot = snap
        return [self.embedded.widget, legend, self.error]

    def refresh(self) -> None:
        """Re-send the figure (Voilà's first render)."""
        if self.snapshot is not None:
            self.embedded.refresh()


def _type_legend(types: list[str]) -> str:
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:10px">'
        f'<span style="display:inline-block;width:14px;height:10px;background:'
        f'{TYPE_COLORS[t]};border-radius:2px;margin-right:4px"></span>{t}</span>'
        for t in types)
    return (f'<div style="font-family:{theme.FONT};font-size:12px;line-height:20px;'
            f'color:var(--jp-ui-font-color1,{theme.TEXT})">'
            f'<span style="margin-right:6px">type (lower band):</span>{items}</div>')

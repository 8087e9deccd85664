"""Standalone HTML: a trace (or a real address space) as one offline web page for slides and
course pages.

`export_html(obj, path, title=...)` writes a single file with BokehJS inlined (no server, no
network: it opens from a USB stick or an LMS upload). A **trace** (`vmlab.core.Trace`, a
`Replay` from `vmlab.io.scenario`, or the trace JSON of docs/trace-format.md) becomes a player:
◀ / ▶ buttons, play, a slider, "previous / next operation" jumps for scenarios, arrow keys, and
the step's explanation. Each process of the trace gets the lab's own `MapView` (same colours,
highlights and tooltips as in the notebooks) plus, for process traces, a table of its entries,
their VM objects (shadow chains, resident pages) and the pmap's mappings. Every step's view data
is computed here in Python by the lab's views and stored once per distinct table; the page's
JavaScript only switches between them.

An **imported map** (`vmlab.io.ImportedMap`) or a `MapSnapshot` becomes the lab's overview
(segmented log axis, protection and type bands) with a tour: step 0 is the summary, step k
highlights mapping k and describes it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_html", "trace_page", "map_page"]

_PAGE_WIDTH = 880


# ------------------------------------------------------------------------------------------
# input normalisation


def _as_trace(obj: Any) -> Any:
    from vmlab.core.trace import Trace

    if isinstance(obj, Trace):
        return obj
    if hasattr(obj, "trace") and isinstance(obj.trace, Trace):  # a scenario Replay
        return obj.trace
    if isinstance(obj, Mapping) and obj.get("format") == "vmlab-trace":
        return Trace.from_dict(obj)
    return None


def _is_map(obj: Any) -> bool:
    return hasattr(obj, "to_snapshot") or (hasattr(obj, "entries") and hasattr(obj, "root"))


# ------------------------------------------------------------------------------------------
# shared page pieces (bokeh models)


def _controls(n: int, *, op_starts: Sequence[int] = ()) -> tuple[Any, Any, list[Any]]:
    """Slider + buttons; returns (slider, row, buttons). The slider is 1-based."""
    from bokeh.layouts import row
    from bokeh.models import Button, CustomJS, Slider

    from vmlab.widgets import theme

    slider = Slider(start=1, end=max(n, 2), value=1, step=1, title="step", width=300,
                    disabled=n <= 1, css_classes=["vmlab-slider"], bar_color=theme.ACCENT)

    def button(label: str, cls: str, code: str, width: int = 44, **args: Any) -> Any:
        b = Button(label=label, width=width, css_classes=[cls], disabled=n <= 1)
        b.js_on_click(CustomJS(args=dict(s=slider, **args), code=code))
        return b

    back = button("◀", "vmlab-step-back", "if (s.value > s.start) s.value = s.value - 1;")
    fwd = button("▶", "vmlab-step-forward", "if (s.value < s.end) s.value = s.value + 1;")
    play = Button(label="play", width=70, css_classes=["vmlab-play"], disabled=n <= 1,
                  button_type="primary")
    play.js_on_click(CustomJS(args=dict(s=slider, b=play), code="""
        const w = window;
        if (w.__vmlab_timer) { clearInterval(w.__vmlab_timer); w.__vmlab_timer = null;
                               b.label = 'play'; return; }
        if (s.value >= s.end) s.value = s.start;
        b.label = 'pause';
        w.__vmlab_timer = setInterval(() => {
            if (s.value < s.end) s.value = s.value + 1;
            else { clearInterval(w.__vmlab_timer); w.__vmlab_timer = null; b.label = 'play'; }
        }, 700);"""))
    buttons = [back, play, fwd]
    if op_starts:
        starts = [k + 1 for k in op_starts]
        prev_op = button("« op", "vmlab-op-back", """
            let t = s.start; for (const k of starts) if (k < s.value) t = k; s.value = t;""",
                         width=64, starts=starts)
        next_op = button("op »", "vmlab-op-forward", """
            let t = s.end; for (const k of starts) if (k > s.value) { t = k; break; }
            s.value = t;""", width=64, starts=starts)
        buttons = [prev_op, back, play, fwd, next_op]
    return slider, row(*buttons, slider), buttons


def _keyboard(slider: Any) -> Any:
    """← / → step through the page (installed once the document is ready)."""
    from bokeh.models import CustomJS

    return CustomJS(args=dict(s=slider), code="""
        if (window.__vmlab_keys) return; window.__vmlab_keys = true;
        document.addEventListener('keydown', (e) => {
            if (e.key === 'ArrowRight' && s.value < s.end) s.value = s.value + 1;
            else if (e.key === 'ArrowLeft' && s.value > s.start) s.value = s.value - 1;
        });""")


def _header(title: str, subtitle: str) -> Any:
    from bokeh.models import Div

    from vmlab.widgets import theme

    sub = (f'<div style="color:{theme.TEXT_MUTED};font-size:13px;max-width:860px;'
           f'line-height:1.45;margin-top:4px">{html.escape(subtitle)}</div>' if subtitle else "")
    return Div(text=f'<div style="font-family:{theme.FONT};color:{theme.TEXT}">'
               f'<div style="font-size:20px;font-weight:600">{html.escape(title)}</div>{sub}'
               f"</div>", width=_PAGE_WIDTH, css_classes=["vmlab-title"])


def _footer(extra: str = "") -> Any:
    from bokeh.models import Div

    from vmlab import __version__
    from vmlab.widgets import theme

    return Div(text=theme.legend_html() + f'<div style="font-family:{theme.FONT};font-size:11px;'
               f'color:{theme.TEXT_MUTED};margin-top:6px">{extra}Made with vmlab {__version__}'
               f" — FreeBSD 14's vm_map, step by step. ← / → keys step; hover an entry for "
               f"its fields.</div>", width=_PAGE_WIDTH)


def _write(layout: Any, title: str, path: str | Path | None) -> str:
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    text = file_html(layout, resources=INLINE, title=title)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


# ------------------------------------------------------------------------------------------
# traces: one lane (MapView + details) per process


class _Lane:
    """The snapshots of one process (or bare map) along a trace."""

    def __init__(self, key: Any, name: str) -> None:
        self.key, self.name = key, name
        self.maps: list[Any] = []  # per step: MapSnapshot (or None before the lane exists)
        self.procs: list[Any] = []  # per step: ProcessSnapshot or None


def _lanes(trace: Any) -> tuple[list[_Lane], list[Any]]:
    """Per-step map and process snapshots for every process in the trace; and, per step, the
    lane the step acts on."""
    names = {int(k): v for k, v in (trace.meta.get("processes") or {}).items()}
    lanes: dict[Any, _Lane] = {}
    map_owner: dict[int, Any] = {}
    cur_map: dict[Any, Any] = {}
    cur_proc: dict[Any, Any] = {}
    acting: list[Any] = []

    def lane(key: Any, name: str) -> _Lane:
        if key not in lanes:
            lanes[key] = _Lane(key, name)
        return lanes[key]

    def take_process(ps: Any) -> Any:
        key = ("pid", ps.pid)
        lane(key, names.get(ps.pid, ps.name))
        map_owner[ps.map.map_id] = key
        cur_map[key], cur_proc[key] = ps.map, ps
        return key

    for st in trace.steps:
        s = trace.states[st.state]
        key = None
        if hasattr(s, "map") and hasattr(s, "pid"):
            key = take_process(s)
            if s.child is not None:
                take_process(s.child)
        elif hasattr(s, "entries") and hasattr(s, "map_id"):
            key = map_owner.get(s.map_id, ("map", s.map_id))
            lane(key, f"vm_map #{s.map_id}")
            cur_map[key] = s
        acting.append(key)
        for k, ln in lanes.items():
            while len(ln.maps) < len(acting) - 1:  # lane born at this step: nothing before
                ln.maps.append(None)
                ln.procs.append(None)
            ln.maps.append(cur_map.get(k))
            ln.procs.append(cur_proc.get(k))
    return list(lanes.values()), acting


def _entry_rows(ps: Any) -> str:
    """HTML table: the entries of a process snapshot with their objects and resident pages."""
    from vmlab.widgets import theme

    snap = ps.map
    e = snap.entries
    resident = {}
    for m in ps.mappings:
        resident[int(m["va"])] = (int(m["pa"]), int(m["prot"]))
    head = ("<tr><th>range</th><th>prot</th><th>flags</th><th>inh</th><th>object chain "
            "(resident pages)</th><th>mapped</th></tr>")
    rows = []
    for r in e:
        s, en = int(r["start"]), int(r["end"])
        oid = int(r["object"])
        chain = []
        for k in ps.chain(oid) if oid >= 0 else []:
            o = ps.objects[k]
            what = o.handle or o.type.lower()
            chain.append(f"#{k} {html.escape(what)} ({len(o.pages)})")
        n_mapped = sum(1 for va in resident if s <= va < en)
        guard = int(r["eflags"]) & theme.GUARD_BIT
        color = theme.prot_color(int(r["protection"]), int(r["eflags"]))
        rows.append(
            f'<tr><td><span style="display:inline-block;width:9px;height:9px;background:'
            f'{color};border-radius:2px;margin-right:5px"></span>{s:#x}–{en:#x}</td>'
            f"<td>{theme.prot_str(int(r['protection']))}</td>"
            f"<td>{'guard' if guard else html.escape(theme.eflags_str(int(r['eflags'])))}</td>"
            f"<td>{theme.inherit_str(int(r['inheritance']))}</td>"
            f"<td>{' → '.join(chain) or '—'}</td><td>{n_mapped or ''}</td></tr>")
    style = (f"font-family:{theme.MONO};font-size:11px;border-collapse:collapse;"
             f"color:{theme.TEXT}")
    return (f'<table class="vmlab-entries" style="{style}">'
            f'<thead style="color:{theme.TEXT_MUTED};text-align:left">{head}</thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _details_html(ps: Any, name: str) -> str:
    from vmlab.widgets import theme

    if ps is None:
        return ""
    facts = (f"pid {ps.pid} · {ps.map.nentries} entries · {theme.fmt_size(int(ps.map.size))} "
             f"mapped · {len(ps.mappings)} pages mapped in the pmap · map timestamp "
             f"{ps.map.timestamp}{' · exited' if ps.exited else ''}")
    return (f'<details class="vmlab-details" open style="font-family:{theme.FONT};font-size:12px;'
            f'color:{theme.TEXT};margin:2px 0 10px 0"><summary style="cursor:pointer;'
            f'color:{theme.TEXT_MUTED}">{html.escape(name)}: {facts}</summary>'
            f'<div style="max-height:220px;overflow:auto;margin-top:4px">{_entry_rows(ps)}'
            f"</div></details>")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return [round(float(x), 4) if np.isfinite(x) else 0.0 for x in v.tolist()]
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [x.item() if isinstance(x, np.generic) else x for x in v]
    return v


class _Tables:
    """Distinct column tables, each stored once; a step refers to tables by index."""

    def __init__(self) -> None:
        self.tables: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def add(self, data: Mapping[str, Any]) -> int:
        d = {k: _jsonable(v) for k, v in data.items()}
        key = json.dumps(d, sort_keys=True)
        k = self._index.get(key)
        if k is None:
            k = self._index[key] = len(self.tables)
            self.tables.append(d)
        return k


def _empty_map(like: Any) -> Any:
    from dataclasses import replace

    from vmlab.core.snapshot import ENTRY_DTYPE

    return replace(like, entries=np.zeros(0, dtype=ENTRY_DTYPE), nentries=0, size=0, root=-1)


def trace_page(trace: Any, *, title: str | None = None, subtitle: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Any:
    """The bokeh layout of a trace's page (see `export_html`)."""
    from bokeh.events import DocumentReady
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, Div

    from vmlab.core.trace import Step, Trace
    from vmlab.widgets import theme
    from vmlab.widgets.mapview import MapView
    from vmlab.widgets.player import step_html
    from vmlab.widgets.treeview import TreeView

    n = len(trace)
    if n == 0:
        raise ValueError("the trace has no steps: nothing to export")
    meta = trace.meta or {}
    title = title or meta.get("title") or "vmlab trace"
    subtitle = subtitle if subtitle is not None else meta.get("description", "")
    lanes, acting = _lanes(trace)
    if not lanes:
        raise ValueError("the trace holds no vm_map or process snapshots to draw")

    views: list[tuple[Any, list[Any]]] = []  # (bokeh model, sources) in page order
    per_view_frames: list[list[list[int]]] = []
    ranges: list[list[list[float]]] = []  # per view, per step: x0, x1, y0, y1 ([] = fixed)
    tables = _Tables()
    detail_texts: list[str] = []
    detail_index: dict[str, int] = {}
    lane_details: list[list[int]] = []
    title_texts: list[list[str]] = []
    blocks: list[Any] = []
    splay_kinds = {"splay_visit", "rotate", "splay_done", "prune", "gap_check"}
    want_tree = len(lanes) == 1 and any(s.kind in splay_kinds for s in trace.steps)
    total = len(lanes) * n
    done = 0
    for ln in lanes:
        first = next(m for m in ln.maps if m is not None)
        states = [m if m is not None else _empty_map(first) for m in ln.maps]
        uniq: dict[int, int] = {}
        lane_states: list[Any] = []
        steps = []
        for i, (st, snap) in enumerate(zip(trace.steps, states, strict=True)):
            k = uniq.get(id(snap))
            if k is None:
                k = uniq[id(snap)] = len(lane_states)
                lane_states.append(snap)
            mine = acting[i] == ln.key
            steps.append(Step(st.kind, st.text, st.data, k) if mine else Step("note", "", {}, k))
        lane_trace = Trace(steps=steps, states=lane_states)
        mv = MapView(title=ln.name, width=theme.VIEW_WIDTH, height=180)
        lane_views: list[Any] = [mv]
        if want_tree:
            lane_views.append(TreeView())
        for v in lane_views:
            srcs = sorted(v.figure.select(type=ColumnDataSource), key=lambda s: s.id)
            frames = []
            rng = []
            fig = v.figure
            for i in range(n):
                v.show(lane_trace, i)
                frames.append([tables.add(s.data) for s in srcs])
                # views may also move their axes per step (the tree view does)
                rng.append([round(float(x), 4) for x in (fig.x_range.start, fig.x_range.end,
                                                          fig.y_range.start, fig.y_range.end)])
                done += 1 if v is mv else 0
                if progress is not None and v is mv and done % 50 == 0:
                    progress(done, total)
            v.show(lane_trace, 0)
            views.append((v, srcs))
            per_view_frames.append(frames)
            ranges.append(rng if any(r != rng[0] for r in rng) else [])
        titles, dets = [], []
        for i in range(n):
            born = ln.maps[i] is not None
            what = "" if born else " (does not exist yet)"
            act = " — this step" if acting[i] == ln.key and len(lanes) > 1 else ""
            titles.append(f"{ln.name}{what}{act}")
            text = _details_html(ln.procs[i], ln.name) if born else ""
            j = detail_index.get(text)
            if j is None:
                j = detail_index[text] = len(detail_texts)
                detail_texts.append(text)
            dets.append(j)
        title_texts.append(titles)
        lane_details.append(dets)
        mv.figure.title.text = titles[0]
        det_div = Div(text=detail_texts[dets[0]], width=_PAGE_WIDTH,
                      css_classes=["vmlab-lane-details"])
        blocks.append((lane_views, det_div))

    # explanation and "current operation" context, per step
    explain = [step_html(trace, i) for i in range(n)]
    op_starts = [i for i, s in enumerate(trace.steps) if s.kind == "scenario_op"]
    context = []
    cur = ""
    for i, s in enumerate(trace.steps):
        if s.kind == "scenario_op":
            k = op_starts.index(i)
            cur = (f'<b style="color:{theme.ACCENT}">operation {k + 1} of {len(op_starts)}</b> '
                   f"{html.escape(s.text)}")
        context.append(cur)
    explain_div = Div(text=explain[0], width=_PAGE_WIDTH, min_height=44,
                      css_classes=["vmlab-explain"],
                      styles={"padding": "6px 10px", "background": theme.CARD_BG,
                              "border": f"1px solid {theme.CARD_BORDER}",
                              "border-radius": "6px"})
    context_div = Div(text=(f'<div style="font-family:{theme.FONT};font-size:13px">'
                            f"{context[0]}</div>") if op_starts else "",
                      width=_PAGE_WIDTH, css_classes=["vmlab-context"])
    slider, controls, _ = _controls(n, op_starts=op_starts)
    all_srcs = [s for _, srcs in views for s in srcs]
    frames = [[t for f in per_view_frames for t in f[i]] for i in range(n)]
    lane_figs = [b[0][0].figure for b in blocks]
    det_divs = [b[1] for b in blocks]
    code = """
        const i = s.value - 1;
        const f = frames[i];
        for (let k = 0; k < sources.length; k++) {
            const src = sources[k];
            if (src.__vmlab_table !== f[k]) {
                src.__vmlab_table = f[k];
                src.data = Object.assign({}, tables[f[k]]);
            }
        }
        for (let j = 0; j < figs.length; j++) {
            figs[j].title.text = titles[j][i];
            const t = details[lane_details[j][i]];
            if (dets[j].text !== t) dets[j].text = t;
        }
        for (let j = 0; j < vfigs.length; j++) {
            const r = ranges[j][i];
            if (r) { const f = vfigs[j];
                     f.x_range.setv({start: r[0], end: r[1]});
                     f.y_range.setv({start: r[2], end: r[3]}); }
        }
        explain.text = texts[i];
        if (context.length) ctx.text = '<div style="font-family:' + font +
            ';font-size:13px">' + context[i] + '</div>';
    """
    render = CustomJS(args=dict(s=slider, frames=frames, tables=tables.tables, sources=all_srcs,
                                figs=lane_figs, titles=title_texts, details=detail_texts,
                                lane_details=lane_details, dets=det_divs, explain=explain_div,
                                texts=explain, ctx=context_div,
                                context=context if op_starts else [], font=theme.FONT,
                                vfigs=[v.figure for v, _ in views], ranges=ranges),
                      code=code)
    slider.js_on_change("value", render)
    parts: list[Any] = [_header(title, subtitle), controls]
    if op_starts:
        parts.append(context_div)
    parts.append(explain_div)
    for lane_views, det in blocks:
        parts.extend(v.figure for v in lane_views)
        parts.append(det)
    parts.append(_footer())
    layout = column(*parts, width=_PAGE_WIDTH,
                    styles={"margin": "18px auto", "gap": "8px"})
    from bokeh.document import Document

    doc = Document()
    doc.add_root(layout)
    doc.title = title
    doc.js_on_event(DocumentReady, _keyboard(slider))
    return layout


# ------------------------------------------------------------------------------------------
# imported maps and bare snapshots: the overview plus a tour of the mappings


_MAP_JS = """
const i = s.value - 1;
const d = src.data;
const n = d.start.length;
const hex = (v) => '0x' + Math.round(v).toString(16);
const size = (v) => { for (const [u, k] of [['T', 2**40], ['G', 2**30], ['M', 2**20],
    ['K', 2**10]]) if (v >= k) { const x = v / k; return (Number.isInteger(x) ? x :
    x.toFixed(1)) + u; } return v + 'B'; };
const prot = (p) => (p & 1 ? 'r' : '-') + (p & 2 ? 'w' : '-') + (p & 4 ? 'x' : '-');
const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;');
if (i === 0 || n === 0) {
    hl.data = {l: [], r: []};
    explain.text = head + summary;
} else {
    const k = i - 1;
    hl.data = {l: [d.l[k]], r: [d.r[k]]};
    const path = paths[d.path[k]] || '';
    const type = types[d.type[k]] || '';
    const fl = flags[k];
    explain.text = head + '<span style="color:' + muted + ';margin-right:8px">Step ' + (i + 1) +
        ' of ' + (n + 1) + '</span><b>mapping ' + (k + 1) + ' of ' + n + '</b>: <code>' +
        hex(d.start[k]) + '–' + hex(d.end[k]) + '</code> (' + size(d.end[k] - d.start[k]) +
        ') <code>' + prot(d.prot[k]) + '</code> ' + esc(type) + (fl ? ' [' + esc(fl) + ']' : '') +
        (path ? ' <code>' + esc(path) + '</code>' : '');
}
"""


def map_page(obj: Any, *, title: str | None = None, subtitle: str | None = None) -> Any:
    """The bokeh layout of an imported map's (or a MapSnapshot's) page (see `export_html`)."""
    from bokeh.events import DocumentReady
    from bokeh.layouts import column
    from bokeh.models import (
        ColumnDataSource,
        CustomJS,
        CustomJSHover,
        Div,
        HoverTool,
        LinearColorMapper,
        Range1d,
    )
    from bokeh.plotting import figure

    from vmlab.widgets import theme
    from vmlab.widgets.mapview import HOVER_FORMATTERS
    from vmlab.widgets.overview import TYPE_COLORS, as_snapshot, overview_columns
    from vmlab.widgets.player import step_html  # noqa: F401 - same look as the player
    from vmlab.widgets.scale import WIDTH, AddressScale

    snap = as_snapshot(obj)
    rows = obj.rows() if hasattr(obj, "rows") else None
    e = snap.entries
    n = len(e)
    scale = AddressScale.build(snap.min, snap.max, e["start"].astype(np.float64),
                               e["end"].astype(np.float64), mode="log", px=theme.VIEW_WIDTH)
    cols, paths, types = overview_columns(snap, scale, rows)
    src = ColumnDataSource(cols)
    hl = ColumnDataSource({"l": [], "r": []})
    fig = figure(width=theme.VIEW_WIDTH, height=230,
                 x_range=Range1d(0, WIDTH, bounds=(0, WIDTH), min_interval=1e-3),
                 y_range=Range1d(-0.15, 1.25), tools="xpan,xwheel_zoom,xbox_zoom,reset",
                 active_scroll="xwheel_zoom", active_drag="xpan")
    source_name = getattr(obj, "source_name", "") or ""
    fmt = getattr(obj, "format", "")
    theme.style_figure(fig, title=f"{n:,} mappings, {theme.fmt_size(int(snap.size))} mapped "
                       f"(log axis: every mapping and gap visible; wheel to zoom, drag to pan)")
    fig.yaxis.visible = False
    fig.xaxis.formatter = scale.tick_formatter()
    fig.xaxis.ticker.desired_num_ticks = 6
    fig.quad(left=0, right=WIDTH, bottom=0.05, top=1.0, fill_color=theme.GAP_FILL,
             line_color=theme.GAP_LINE, hatch_pattern="/", hatch_color=theme.GAP_LINE,
             hatch_alpha=0.5, hatch_scale=8)
    pal = [theme.PROT_COLORS[k] for k in range(8)] + [theme.GUARD_FILL]
    pmap = LinearColorMapper(palette=pal, low=0, high=len(pal))
    tpal = [TYPE_COLORS[t] for t in types] or ["#ffffff"]
    tmap = LinearColorMapper(palette=tpal, low=0, high=len(tpal))
    r = fig.quad(left="l", right="r", bottom=0.42, top=1.0, source=src,
                 fill_color={"field": "pcol", "transform": pmap},
                 line_color={"field": "pcol", "transform": pmap})
    fig.quad(left="l", right="r", bottom=0.05, top=0.38, source=src,
             fill_color={"field": "tcol", "transform": tmap},
             line_color={"field": "tcol", "transform": tmap})
    fig.quad(left="l", right="r", bottom=-0.08, top=1.13, source=hl, fill_alpha=0,
             line_color=theme.HIGHLIGHT, line_width=4)
    if 0 < len(scale.breaks) <= 2000:
        nb = len(scale.breaks)
        fig.text(x=scale.breaks.tolist(), y=[1.1] * nb, text=["≈"] * nb, text_align="center",
                 text_baseline="middle", text_font_size="12px", text_color=theme.TEXT_MUTED)
    fmts = HOVER_FORMATTERS()
    names = "const k = Math.round(value); return k < 0 ? '' : names[k];"
    fmts["@path"] = CustomJSHover(args={"names": paths}, code=names)
    fmts["@type"] = CustomJSHover(args={"names": types}, code=names)
    tips = [("entry", "#@id"), ("range", "@start{custom} – @end{custom}"),
            ("prot", "@prot{custom}"), ("eflags", "@eflags{custom}"), ("type", "@type{custom}")]
    if any(paths):
        tips.append(("path", "@path{custom}"))
    fig.add_tools(HoverTool(renderers=[r], tooltips=tips, formatters=fmts,
                            point_policy="follow_mouse"))
    flags = [",".join(row.get("flags", [])) if rows else theme.eflags_str(int(f))
             for row, f in zip(rows or [{}] * n, e["eflags"].tolist(), strict=True)]
    title = title or (f"{source_name}" if source_name else "address space")
    issues = len(getattr(obj, "issues", []) or [])
    summary = (f"<b>{n:,} mappings</b> from <code>{html.escape(source_name or '?')}</code>"
               f"{f' ({html.escape(fmt)} format)' if fmt else ''}: "
               f"{theme.fmt_size(int(snap.size))} mapped between "
               f"<code>{int(e['start'][0]) if n else 0:#x}</code> and "
               f"<code>{int(e['end'][-1]) if n else 0:#x}</code>"
               f"{f'; {issues} lines could not be imported' if issues else ''}. "
               "Step through the mappings with ▶ or the → key.")
    head = (f'<div style="font-family:{theme.FONT};font-size:13px;line-height:1.45">')
    explain_div = Div(text=head + summary, width=_PAGE_WIDTH, min_height=44,
                      css_classes=["vmlab-explain"],
                      styles={"padding": "6px 10px", "background": theme.CARD_BG,
                              "border": f"1px solid {theme.CARD_BORDER}",
                              "border-radius": "6px"})
    slider, controls, _ = _controls(n + 1)
    slider.js_on_change("value", CustomJS(
        args=dict(s=slider, src=src, hl=hl, explain=explain_div, paths=paths, types=types,
                  flags=flags, head=head, summary=summary, muted=theme.TEXT_MUTED),
        code=_MAP_JS))
    from vmlab.widgets.overview import _type_legend

    legend = Div(text=_type_legend(types), width=_PAGE_WIDTH)
    layout = column(_header(title, subtitle or ""), controls, explain_div, fig, legend,
                    _footer(), width=_PAGE_WIDTH,
                    styles={"margin": "18px auto", "gap": "8px"})
    from bokeh.document import Document

    doc = Document()
    doc.add_root(layout)
    doc.title = title
    doc.js_on_event(DocumentReady, _keyboard(slider))
    return layout


# ------------------------------------------------------------------------------------------


def export_html(obj: Any, path: str | Path | None = None, *, title: str | None = None,
                subtitle: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> str:
    """Write ``obj`` as one standalone HTML file (BokehJS inlined: works offline, no server).

    ``obj`` is a trace (`vmlab.core.Trace`, a scenario `Replay`, or a trace dict from
    ``json.load``), an imported map (`vmlab.io.ImportedMap`) or a `MapSnapshot`. Returns the
    HTML text; writes it to ``path`` when given. ``title`` defaults to the scenario's title or
    the imported file's name; ``subtitle`` to the scenario's description.
    """
    trace = _as_trace(obj)
    if trace is not None:
        layout = trace_page(trace, title=title, subtitle=subtitle, progress=progress)
    elif _is_map(obj):
        layout = map_page(obj, title=title, subtitle=subtitle)
    else:
        raise TypeError(f"cannot export {type(obj).__name__}: pass a Trace, a scenario Replay, "
                        "a trace dict, an ImportedMap or a MapSnapshot")
    return _write(layout, layout.document.title, path)

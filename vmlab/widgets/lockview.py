"""LockView: who holds the map lock, shared or exclusive, and map.timestamp, over the trace.

Upper band: one cell per step, coloured by the lock mode after that step (white: unlocked,
blue: shared, red: exclusive), labelled with the holders where they change; a failed attempt is
marked ✗. Lower plot: ``map.timestamp`` after each step (a staircase). A cursor marks the
current step. The whole timeline is computed once per trace; stepping only moves the cursor.
"""

from __future__ import annotations

from typing import Any

from bokeh.core.properties import value
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, Range1d, Span
from bokeh.plotting import figure

from . import theme

__all__ = ["LOCK_COLORS", "LockView", "lock_timeline"]

LOCK_COLORS = {"unlocked": "#ffffff", "shared": "#93c5fd", "exclusive": "#fca5a5"}


def lock_timeline(trace: Any) -> dict[str, list[Any]]:
    """Per step: mode, holders text, timestamp, whether this step was a failed lock attempt."""
    cols: dict[str, list[Any]] = {"step": [], "mode": [], "holders": [], "timestamp": [],
                                  "failed": [], "kind": [], "text": [], "color": []}
    for i, st in enumerate(trace.steps):
        snap = trace.states[st.state]
        mode = getattr(snap, "lock_mode", "unlocked")
        holders = getattr(snap, "lock_holders", ())
        ts = int(getattr(snap, "timestamp", 0))
        if st.kind == "lock":
            mode = st.data.get("mode", mode)
            holders = st.data.get("holders", holders)
            ts = int(st.data.get("timestamp", ts))
        elif st.kind == "timestamp":
            ts = int(st.data.get("new", ts))
        cols["step"].append(i + 1)
        cols["mode"].append(mode)
        cols["holders"].append(", ".join(sorted(set(holders))) or "—")
        cols["timestamp"].append(ts)
        cols["failed"].append(st.kind == "lock" and st.data.get("ok") is False)
        cols["kind"].append(st.kind)
        cols["text"].append(st.text)
        cols["color"].append(LOCK_COLORS.get(mode, "#e5e7eb"))
    return cols


class LockView:
    """Lock mode, holders and timestamp along the trace. ``figure`` is a bokeh column."""

    def __init__(self, *, width: int = theme.VIEW_WIDTH) -> None:
        self.embedded: Any = None
        self._key: int | None = None
        self.cells = ColumnDataSource({k: [] for k in lock_timeline_keys()})
        self.labels = ColumnDataSource({"x": [], "text": []})
        self.fails = ColumnDataSource({"x": [], "y": []})
        self.cursor_band = Span(location=1, dimension="height", line_color=theme.HIGHLIGHT,
                                line_width=3)
        self.cursor_ts = Span(location=1, dimension="height", line_color=theme.HIGHLIGHT,
                              line_width=3)
        x_range = Range1d(0.5, 1.5)
        band = figure(width=width, height=95, x_range=x_range, y_range=Range1d(0, 1),
                      tools="xpan,reset", toolbar_location=None)
        theme.style_figure(band, title="map lock (white: unlocked · blue: shared · red: "
                                       "exclusive)")
        band.xaxis.visible = False
        band.yaxis.visible = False
        r = band.quad(left="l", right="r", bottom=0.1, top=0.9, source=self.cells,
                      fill_color="color", line_color=theme.CARD_BORDER)
        band.text(x="x", y=0.5, text="text", source=self.labels, text_align="left",
                  text_baseline="middle", text_font=value(theme.FONT), text_font_size="10px",
                  text_color=theme.TEXT, x_offset=3)
        band.scatter(x="x", y="y", source=self.fails, marker="x", size=12,
                     line_color=theme.ERROR, line_width=3)
        band.add_layout(self.cursor_band)
        band.add_tools(HoverTool(renderers=[r], tooltips=[
            ("step", "@step (@kind)"), ("lock", "@mode by @holders"),
            ("timestamp", "@timestamp"), ("", "@text")]))
        ts = figure(width=width, height=120, x_range=x_range, y_range=Range1d(-0.5, 0.5),
                    tools="xpan,reset",
                    toolbar_location=None)
        theme.style_figure(ts, title="map.timestamp")
        ts.xaxis.axis_label = "step"
        # steps and timestamps are integers: never a 6.5 tick, whatever the zoom
        ts.xaxis.ticker.min_interval = 1
        ts.yaxis.ticker.min_interval = 1
        ts.yaxis.ticker.desired_num_ticks = 4
        ts.step(x="step", y="timestamp", source=self.cells, mode="center",
                line_color="#7c3aed", line_width=2)
        ts.scatter(x="step", y="timestamp", source=self.cells, size=4, color="#7c3aed")
        ts.add_layout(self.cursor_ts)
        self.band, self.ts_fig = band, ts
        self.figure = column(band, ts)

    def show(self, trace: Any, i: int) -> None:
        from .bokeh_embed import set_data

        if self._key != id(trace):
            self._key = id(trace)
            cols = lock_timeline(trace)
            cols["l"] = [s - 0.5 for s in cols["step"]]
            cols["r"] = [s + 0.5 for s in cols["step"]]
            set_data(self.cells, cols)
            labels: dict[str, list[Any]] = {"x": [], "text": []}
            prev = None
            for s, m, h in zip(cols["step"], cols["mode"], cols["holders"], strict=True):
                if (m, h) != prev and m != "unlocked":
                    labels["x"].append(s - 0.5)
                    labels["text"].append(h)
                prev = (m, h)
            set_data(self.labels, labels)
            fx = [s for s, f in zip(cols["step"], cols["failed"], strict=True) if f]
            set_data(self.fails, {"x": fx, "y": [0.5] * len(fx)})
            n = max(len(trace), 1)
            self.band.x_range.update(start=0.5, end=n + 0.5)
            tsv = cols["timestamp"] or [0]
            self.ts_fig.y_range.update(start=min(tsv) - 0.5, end=max(tsv) + 0.5)
        self.cursor_band.location = i + 1
        self.cursor_ts.location = i + 1


def lock_timeline_keys() -> list[str]:
    return ["step", "mode", "holders", "timestamp", "failed", "kind", "text", "color", "l", "r"]

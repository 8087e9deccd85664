"""A bokeh figure in pixel coordinates that draws *scenes*: boxes, texts, lines and arrows.

The diagram views (page walk, prefault strip, fork, stack growth) are drawings rather than
plots: cards, chips, labels and arrows at fixed places. `Canvas` is one bokeh figure whose
axes are pixels (x right, y **down**, like CSS) with four ColumnDataSources, built once. A view
computes a `Scene` for (trace, step) — plain lists, cheap to build and to test — and
`Canvas.draw(scene)` pushes it with `bokeh_embed.set_data` (patch when only a few rows changed,
replace otherwise; never ``stream()``). Every primitive may carry a ``tag`` so tests can find
"the PTE row" or "the A chip of the PDE" in the source data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bokeh.core.properties import field as bk_field
from bokeh.models import Arrow, ColumnDataSource, HoverTool, Range1d, VeeHead
from bokeh.plotting import figure

from . import theme
from .bokeh_embed import set_data
from .linking import link_tags, linked_mark_glyph

__all__ = ["Canvas", "Scene"]

BOX_COLS = ("l", "r", "t", "b", "fill", "alpha", "line", "lw", "dash", "hatch", "tag", "tip")
TEXT_COLS = ("x", "y", "text", "color", "size", "font", "style", "align", "baseline", "tag")
HOT_COLS = ("l", "r", "t", "b", "tip")
#: With ``Canvas(linked=True)`` the hoverable boxes also carry their tag and the tags they
#: point at (`linking.link_tags`); see `Scene.link`.
LINKED_HOT_COLS = (*HOT_COLS, "tag", "links")
LINE_COLS = ("x0", "y0", "x1", "y1", "color", "lw", "dash", "tag")


@dataclass
class Scene:
    """What one step looks like: lists of primitives in pixel coordinates (y down)."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    texts: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    arrows: list[dict[str, Any]] = field(default_factory=list)
    height: int | None = None  # resize the canvas to this height (None: keep)

    def box(self, l: float, t: float, r: float, b: float, fill: str | None = "white", *,
            line: str | None = theme.CARD_BORDER, lw: float = 1.0, alpha: float = 1.0,
            dash: str = "solid", hatch: str = " ", tag: str = "", tip: str = "",
            links: str = "") -> None:
        """A box; with a ``tip`` it answers the hover tool, and on a linked canvas hovering it
        outlines the boxes whose tags ``links`` lists (space-separated)."""
        self.boxes.append({"l": l, "r": r, "t": t, "b": b, "fill": fill or "white",
                           "alpha": alpha if fill else 0.0, "line": line or "white",
                           "lw": lw if line else 0.0, "dash": dash, "hatch": hatch,
                           "tag": tag, "tip": tip, "links": links})

    def text(self, x: float, y: float, s: str, *, color: str = theme.TEXT, size: int = 11,
             mono: bool = False, bold: bool = False, italic: bool = False,
             align: str = "left", baseline: str = "middle", tag: str = "") -> None:
        style = "bold italic" if bold and italic else "bold" if bold else \
            "italic" if italic else "normal"
        self.texts.append({"x": x, "y": y, "text": s, "color": color, "size": f"{size}px",
                           "font": theme.MONO if mono else theme.FONT, "style": style,
                           "align": align, "baseline": baseline, "tag": tag})

    def line(self, x0: float, y0: float, x1: float, y1: float, *, color: str = theme.TEXT_MUTED,
             lw: float = 1.5, dash: str = "solid", tag: str = "") -> None:
        self.lines.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "color": color, "lw": lw,
                           "dash": dash, "tag": tag})

    def arrow(self, x0: float, y0: float, x1: float, y1: float, *,
              color: str = theme.TEXT_MUTED, lw: float = 1.5, dash: str = "solid",
              tag: str = "") -> None:
        self.arrows.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "color": color, "lw": lw,
                            "dash": dash, "tag": tag})

    def link(self, tags: Iterable[str]) -> None:
        """On a linked canvas, hovering any box tagged in ``tags`` outlines every box tagged in
        ``tags`` (added to what those boxes already link). Only boxes with a ``tip`` take part,
        since only they answer the hover tool; tags no such box has are dropped, and a group
        left with fewer than two tags links nothing (outlining just the pointed-at box would
        say nothing)."""
        hot = {b["tag"] for b in self.boxes if b["tip"]}
        keep = [t for t in dict.fromkeys(tags) if t in hot]
        if len(keep) < 2:
            return
        for b in self.boxes:
            if b["tip"] and b["tag"] in keep:
                b["links"] = " ".join(dict.fromkeys([*b["links"].split(), *keep]))

    # -- for tests and descriptions ----------------------------------------------------------
    def find(self, tag: str) -> list[dict[str, Any]]:
        """Every primitive whose tag equals ``tag`` (or starts with it, for ``"x:*"``)."""
        items = [*self.boxes, *self.texts, *self.lines, *self.arrows]
        if tag.endswith("*"):
            return [p for p in items if p["tag"].startswith(tag[:-1])]
        return [p for p in items if p["tag"] == tag]


def _columns(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in cols}


class Canvas:
    """One bokeh figure, ``width`` × ``height`` CSS pixels, drawn in pixel coordinates."""

    def __init__(self, *, width: int = theme.VIEW_WIDTH, height: int = 300,
                 title: str | None = None, hover: bool = True, linked: bool = False) -> None:
        self.width = width
        self.linked = linked and hover
        self.hot_cols = LINKED_HOT_COLS if self.linked else HOT_COLS
        self.height = height
        fig = figure(width=width, height=height, x_range=Range1d(0, width),
                     y_range=Range1d(height, 0), tools="", toolbar_location=None)
        theme.style_figure(fig, title=title)
        fig.xaxis.visible = False
        fig.yaxis.visible = False
        fig.min_border_left = fig.min_border_right = 0
        fig.min_border_top = 4 if title is None else 0
        fig.min_border_bottom = 0
        self.figure = fig
        self.boxes = ColumnDataSource(_columns([], BOX_COLS))
        self.texts = ColumnDataSource(_columns([], TEXT_COLS))
        self.lines = ColumnDataSource(_columns([], LINE_COLS))
        self.arrows = ColumnDataSource(_columns([], LINE_COLS))
        self.hot = ColumnDataSource(_columns([], self.hot_cols))
        #: the boxes a linked hover outlines (filled in the browser only)
        self.mark = ColumnDataSource({"l": [], "r": [], "b": [], "t": []})
        fig.quad(left="l", right="r", top="t", bottom="b", source=self.boxes,
                     fill_color="fill", fill_alpha="alpha", line_color="line",
                     line_width="lw", line_dash="dash", hatch_pattern="hatch",
                     hatch_color=theme.GAP_LINE, hatch_alpha=0.7, hatch_scale=7)
        fig.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=self.lines, line_color="color",
                    line_width="lw", line_dash="dash")
        head = VeeHead(size=8, fill_color=bk_field("color"), line_color=bk_field("color"))
        fig.add_layout(Arrow(end=head, source=self.arrows, x_start="x0", y_start="y0",
                             x_end="x1", y_end="y1", line_color="color", line_width="lw",
                             line_dash="dash"))
        fig.text(x="x", y="y", text="text", source=self.texts, text_color="color",
                 text_font_size="size", text_font="font", text_font_style="style",
                 text_align="align", text_baseline="baseline")
        if hover:  # invisible copies of the boxes that have a tip answer the hover tool
            r = fig.quad(left="l", right="r", top="t", bottom="b", source=self.hot,
                         fill_alpha=0, line_alpha=0)
            hover_tool = HoverTool(renderers=[r], tooltips=_TIP, point_policy="follow_mouse")
            fig.add_tools(hover_tool)
            if self.linked:
                linked_mark_glyph(fig, self.mark)
                link_tags(hover_tool, self.hot, self.mark)

    def draw(self, scene: Scene) -> None:
        """Show ``scene`` (only boxes with a ``tip`` answer the hover tool)."""
        if scene.height is not None and scene.height != self.height:
            self.height = scene.height
            self.figure.height = scene.height
            self.figure.y_range.update(start=scene.height, end=0)
        set_data(self.boxes, _columns(scene.boxes, BOX_COLS))
        set_data(self.texts, _columns(scene.texts, TEXT_COLS))
        set_data(self.lines, _columns(scene.lines, LINE_COLS))
        set_data(self.arrows, _columns(scene.arrows, LINE_COLS))
        hot = [b for b in scene.boxes if b["tip"]]
        if self.linked:
            # topmost first: `linking.link_tags` follows the first hovered box that links
            # anything, so a box drawn over another (a flag chip on its row) decides, and one
            # that links nothing lets the pointer through to the box under it
            hot.reverse()
        set_data(self.hot, _columns(hot, self.hot_cols))

    # -- reading back what is shown (tests) --------------------------------------------------
    def shown(self, source: str = "texts") -> list[dict[str, Any]]:
        data = getattr(self, source).data
        cols = list(data)
        n = len(data[cols[0]]) if cols else 0
        return [{c: data[c][k] for c in cols} for k in range(n)]

    def tagged(self, tag: str, source: str = "texts") -> list[dict[str, Any]]:
        rows = self.shown(source)
        if tag.endswith("*"):
            return [r for r in rows if r["tag"].startswith(tag[:-1])]
        return [r for r in rows if r["tag"] == tag]


_TIP = """<div style="font-family:DejaVu Sans, sans-serif;font-size:12px;max-width:340px">
@tip{safe}</div>"""

"""Colours, fonts, sizes and the legend shared by every vmlab view.

One palette for the whole lab, so "green" means read/write in every lesson. Bokeh figures are
drawn as light *cards* (their own background), so they stay readable in JupyterLab's light and
dark themes alike; ipywidgets text uses JupyterLab's CSS variables and follows the theme.

A new view takes its colours from here (`prot_color`, `HIGHLIGHT`, ...) and styles its figures
with `style_figure`; see docs/widgets.md.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACCENT",
    "CARD_BG",
    "CARD_BORDER",
    "EFLAG_NAMES",
    "ERROR",
    "FONT",
    "GAP_FILL",
    "GAP_LINE",
    "GUARD_FILL",
    "HIGHLIGHT",
    "KERN_NAMES",
    "MONO",
    "NEW_ENTRY",
    "OBJT_COLORS",
    "OBJT_NAMES",
    "OK",
    "PATH",
    "PROT_COLORS",
    "PRUNED",
    "TEXT",
    "TEXT_MUTED",
    "VIEW_WIDTH",
    "eflags_str",
    "fmt_addr",
    "fmt_size",
    "inherit_str",
    "kern_str",
    "legend_html",
    "prot_color",
    "prot_str",
    "style_figure",
]

#: Width of every figure in CSS pixels: fits a laptop's JupyterLab without horizontal scroll.
VIEW_WIDTH = 860

# Unquoted: bokeh's canvas text rejects quoted family lists (falls back to serif).
FONT = "Helvetica Neue, DejaVu Sans, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"

CARD_BG = "#fbfbfd"
CARD_BORDER = "#d0d4dc"
TEXT = "#1f2430"
TEXT_MUTED = "#6b7280"

#: Protection (r/w/x bits of VM_PROT) -> fill colour. Tableau-like hues that keep their contrast
#: on the light card and print well; "---" (PROT_NONE, e.g. guards) is grey.
PROT_COLORS: dict[int, str] = {
    0: "#a3a8b3",  # ---
    1: "#4e79a7",  # r--  blue
    2: "#76b7b2",  # -w-  teal
    3: "#59a14f",  # rw-  green
    4: "#b07aa1",  # --x  purple
    5: "#f28e2b",  # r-x  orange
    6: "#ff9da7",  # -wx  pink
    7: "#e15759",  # rwx  red
}

#: OBJT values (vmlab.core.constants.OBJT) plus -1 for "no object" (anonymous, not yet faulted).
OBJT_NAMES: dict[int, str] = {
    -1: "none",
    0: "invalid",
    1: "swap (anon)",
    2: "vnode (file)",
    3: "device",
    4: "phys",
    5: "dead",
    6: "sg",
    7: "mgtdevice",
}
OBJT_COLORS: dict[int, str] = {
    -1: "#d9dce3",
    0: "#000000",
    1: "#9c755f",
    2: "#edc948",
    3: "#bab0ac",
    4: "#8cd17d",
    5: "#555555",
    6: "#86bcb6",
    7: "#bab0ac",
}

GAP_FILL = "#ffffff"
GAP_LINE = "#b8bdc8"
GUARD_FILL = "#5b6270"
HIGHLIGHT = "#ffb000"  # the entry / gap / node the current step is about (amber)
PATH = "#3b82f6"  # nodes already visited on the splay descent
PRUNED = "#c9ccd3"  # subtrees skipped because max_free < length
NEW_ENTRY = "#7c3aed"  # the entry being inserted, before it lands
OK = "#15803d"
ERROR = "#b91c1c"
ACCENT = "#2563eb"

KERN_NAMES = {
    0: "KERN_SUCCESS",
    1: "KERN_INVALID_ADDRESS",
    2: "KERN_PROTECTION_FAILURE",
    3: "KERN_NO_SPACE",
    4: "KERN_INVALID_ARGUMENT",
    5: "KERN_FAILURE",
    6: "KERN_RESOURCE_SHORTAGE",
    7: "KERN_NOT_RECEIVER",
    8: "KERN_NO_ACCESS",
    9: "KERN_OUT_OF_BOUNDS",
    10: "KERN_RESTART",
}

#: MAP_ENTRY eflags bit -> short name (sys/vm/vm_map.h), for tooltips.
EFLAG_NAMES = {
    0x0001: "NOSYNC",
    0x0002: "IS_SUB_MAP",
    0x0004: "COW",
    0x0008: "NEEDS_COPY",
    0x0010: "NOFAULT",
    0x0020: "USER_WIRED",
    0x0040: "BEHAV_SEQUENTIAL",
    0x0080: "BEHAV_RANDOM",
    0x0100: "IN_TRANSITION",
    0x0200: "NEEDS_WAKEUP",
    0x0400: "NOCOREDUMP",
    0x0800: "VN_EXEC",
    0x1000: "GROWS_DOWN",
    0x2000: "GROWS_UP",
    0x4000: "WIRE_SKIPPED",
    0x8000: "WRITECNT",
    0x10000: "GUARD",
    0x20000: "STACK_GAP_DN",
    0x40000: "STACK_GAP_UP",
    0x80000: "HEADER",
}
GUARD_BIT = 0x10000
INHERIT_NAMES = {0: "share", 1: "copy", 2: "none", 3: "zero"}


def prot_str(prot: int) -> str:
    """'rwx'-style string for the low three VM_PROT bits."""
    return ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-")


def prot_color(prot: int, eflags: int = 0) -> str:
    """Fill colour of an entry: guards are dark grey whatever their protection."""
    if eflags & GUARD_BIT:
        return GUARD_FILL
    return PROT_COLORS[int(prot) & 7]


def eflags_str(eflags: int) -> str:
    names = [n for bit, n in EFLAG_NAMES.items() if eflags & bit]
    return "|".join(names) if names else "0"


def inherit_str(inh: int) -> str:
    return INHERIT_NAMES.get(int(inh), str(int(inh)))


def kern_str(rv: Any) -> str:
    """'KERN_NO_SPACE (3)' for a KERN code; other values as they are."""
    try:
        code = int(rv)
    except (TypeError, ValueError):
        return str(rv)
    name = KERN_NAMES.get(code)
    return f"{name} ({code})" if name else str(code)


def fmt_addr(a: int) -> str:
    return f"{int(a):#x}"


def fmt_size(n: int) -> str:
    """Compact human size: 4K, 1.5M, 128G (binary units), exact bytes below 1 KiB."""
    n = int(n)
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f}{unit}" if v == int(v) or v >= 100 else f"{v:.1f}{unit}"
    return f"{n}B"


def style_figure(fig: Any, *, title: str | None = None) -> Any:
    """Apply the lab's look to a bokeh figure: light card, muted axes, no toolbar clutter."""
    fig.background_fill_color = CARD_BG
    fig.border_fill_color = CARD_BG
    fig.outline_line_color = CARD_BORDER
    fig.min_border_left = 10
    fig.min_border_right = 10
    if title is not None:
        fig.title.text = title
    fig.title.text_font = FONT
    fig.title.text_font_size = "13px"
    fig.title.text_color = TEXT
    for ax in (*fig.xaxis, *fig.yaxis):
        ax.axis_label_text_font = FONT
        ax.major_label_text_font = MONO
        ax.major_label_text_font_size = "10px"
        ax.major_label_text_color = TEXT_MUTED
        ax.axis_line_color = CARD_BORDER
        ax.major_tick_line_color = CARD_BORDER
        ax.minor_tick_line_color = None
    fig.grid.grid_line_color = None
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    return fig


def _swatch(color: str, label: str, *, hatch: bool = False) -> str:
    border = f"1px solid {GAP_LINE}" if hatch else "none"
    bg = (
        f"repeating-linear-gradient(45deg,{GAP_LINE} 0 1px,{GAP_FILL} 1px 4px)" if hatch else color
    )
    return (
        f'<span style="display:inline-flex;align-items:center;margin-right:10px;">'
        f'<span style="display:inline-block;width:14px;height:10px;background:{bg};'
        f'border:{border};border-radius:2px;margin-right:4px"></span>{label}</span>'
    )


def legend_html(*, types: bool = False, highlight: bool = True,
                extra: dict[str, str] | None = None) -> str:
    """The colour legend as HTML (protections, gap, guard, highlight; object types if asked)."""
    items = [_swatch(PROT_COLORS[p], prot_str(p)) for p in (1, 3, 5, 7, 0)]
    items.append(_swatch(GUARD_FILL, "guard"))
    items.append(_swatch(GAP_FILL, "free gap", hatch=True))
    if highlight:
        items.append(_swatch(HIGHLIGHT, "this step"))
    for label, color in (extra or {}).items():
        items.append(_swatch(color, label))
    html = "".join(items)
    if types:
        html += '<br><span style="margin-right:6px">object type (lower band):</span>' + "".join(
            _swatch(OBJT_COLORS[t], OBJT_NAMES[t]) for t in (-1, 1, 2, 3, 4)
        )
    return (
        f'<div class="vmlab-legend" style="font-family:{FONT};font-size:12px;'
        f'line-height:20px;color:var(--jp-ui-font-color1,{TEXT})">{html}</div>'
    )

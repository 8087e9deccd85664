"""Shared plumbing of the diagram animations (page walk, prefault strip, fork, stack growth).

- `DiagramView`: a view (``figure``, ``show(trace, i)``) whose picture is a `canvas.Scene`
  computed by ``scene(trace, i)``; the last scene stays in ``view.last`` for tests.
- `TracedAnimation`: an `animations.Animation` that records any traced objects (an `Mmu`, a
  `Vmspace`), not only a vm_map, and reports bad targets inline.
- `process_states`: the latest `ProcessSnapshot` of every process at each step of a trace that
  mixes map snapshots (steps the map core records) and process snapshots.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from . import theme
from .animations import Animation
from .canvas import Canvas, Scene
from .inputs import Field, InputError

__all__ = ["DiagramView", "TracedAnimation", "chip", "note_box", "process_states"]


class DiagramView:
    """A view drawn as a `Scene` on a `Canvas`. Subclasses implement ``scene(trace, i)``."""

    linkables: list[Any] = []

    def __init__(self, *, height: int = 300, title: str | None = None,
                 linked: bool = False) -> None:
        # linked: hovering a box outlines the boxes its ``links`` name (`linking.link_tags`)
        self.canvas = Canvas(height=height, title=title, linked=linked)
        self.figure = self.canvas.figure
        self.embedded: Any = None
        self.last: Scene | None = None

    def scene(self, trace: Any, i: int) -> Scene:
        raise NotImplementedError

    def show(self, trace: Any, i: int) -> None:
        self.last = self.scene(trace, i)
        self.canvas.draw(self.last)


class TracedAnimation(Animation):
    """Form + Player + diagram views for an operation on any traced object(s).

    Subclasses define ``check_target() -> str | None`` (an inline error for a wrong object),
    ``recorded() -> tuple`` (what to record), ``operation(values)`` and ``summary``.
    """

    show_legend = False

    def __init__(self, target: Any, fields: list[Field], views: Sequence[Any], *,
                 run_label: str = "Run") -> None:
        self.target = target
        self.recording: Any = None  # the Trace being recorded, during operation()
        super().__init__(target, fields, views, run_label=run_label)

    def check_target(self) -> str | None:
        return None

    def recorded(self) -> tuple[Any, ...]:
        return (self.target,)

    def run(self) -> bool:
        values = self.form.values()
        if values is None:
            return False
        err = self.check_target()
        if err:
            self.form.show_errors([err])
            return False
        from vmlab.core.trace import recording

        try:
            with recording(*self.recorded()) as tr:
                self.recording = tr
                result = self.operation(values)
        except InputError as exc:
            self.form.show_errors([str(exc)])
            return False
        except Exception as exc:  # noqa: BLE001 - a KASSERT-like error, shown as a sentence
            self.form.show_errors([f"{type(exc).__name__}: {exc}"])
            return False
        finally:
            self.recording = None
        if not len(tr):
            self.form.show_errors(["the operation recorded no steps (nothing to animate)"])
            return False
        self.trace, self.value = tr, result
        self.player.set_trace(tr)
        self.result.value = self.summary(values, result)
        return True


def process_states(trace: Any, *, with_index: bool = False) -> list[dict[int, Any]]:
    """For each step, {pid: latest ProcessSnapshot at or before it} (a fork's child comes from
    the parent's snapshot ``child`` until it records steps of its own). With ``with_index``
    the values are (state index, snapshot), so two processes' snapshots can be ordered."""
    from vmlab.core.process_snapshot import ProcessSnapshot

    out: list[dict[int, Any]] = []
    cur: dict[int, Any] = {}
    seen = -1
    for st in trace.steps:
        while seen < st.state:
            seen += 1
            s = trace.states[seen]
            if isinstance(s, ProcessSnapshot):
                cur = dict(cur)
                cur[s.pid] = (seen, s) if with_index else s
                if s.child is not None:
                    cur[s.child.pid] = (seen, s.child) if with_index else s.child
        out.append(cur)
    return out


def chip(sc: Scene, x: float, y: float, label: str, *, on: bool, color: str,
         changed: bool = False, na: bool = False, tag: str = "", tip: str = "",
         h: float = 16, size: int = 10) -> float:
    """A flag chip at (x, y top): filled with ``color`` when ``on``; returns its right edge."""
    w = 8 + 6.6 * len(label)
    if na:
        sc.box(x, y, x + w, y + h, None, line=theme.CARD_BORDER, dash="dotted", tag=tag,
               tip=tip)
        sc.text(x + w / 2, y + h / 2 + 0.5, label, color="#b8bdc8", size=size, mono=True,
                align="center", tag=tag)
    else:
        sc.box(x, y, x + w, y + h, color if on else "white",
               line=theme.HIGHLIGHT if changed else (color if on else theme.CARD_BORDER),
               lw=3 if changed else 1, tag=tag, tip=tip)
        sc.text(x + w / 2, y + h / 2 + 0.5, label, color="white" if on else theme.TEXT_MUTED,
                size=size, mono=True, bold=on, align="center", tag=tag)
    return x + w


def note_box(sc: Scene, l: float, t: float, r: float, b: float, lines: list[str], *,
             color: str = theme.ACCENT, tag: str = "") -> None:
    """A callout: light card with a coloured left bar and a few lines of text."""
    sc.box(l, t, r, b, "white", line=theme.CARD_BORDER, tag=tag)
    sc.box(l, t, l + 4, b, color, line=None, tag=tag)
    for k, s in enumerate(lines):
        sc.text(l + 12, t + 12 + 15 * k, s, size=11, bold=k == 0, color=color if k == 0 else
                theme.TEXT, tag=tag)


def esc(s: Any) -> str:
    return html.escape(str(s))

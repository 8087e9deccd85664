"""The Player: the one place that owns "the current step" of a trace.

Controls: ◀ back, ▶ play/pause (ipywidgets ``Play``), forward ▶, a slider, "go to step" box and
a speed choice; underneath, the current step's explanation in words. The slider alone drives
everything (``Play`` misbehaves in some front ends), and ``Play`` is linked to it kernel-side.

Views register with `Player.add_view`; on every step change the player calls
``view.show(trace, step_index)`` on each. A view must be a pure function of (trace, step): it
may cache, but stepping back must give exactly what stepping forward gave. See docs/widgets.md.

CSS classes the browser tests rely on: the player box ``vmlab-player``, the buttons
``vmlab-step-back`` / ``vmlab-step-forward``, the explanation ``vmlab-explain``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any, Protocol

import ipywidgets as W

from .theme import ERROR, FONT, HIGHLIGHT, MONO, OK, PATH, TEXT_MUTED, kern_str

__all__ = ["KIND_COLORS", "Player", "StepView", "step_html"]

SPEEDS = {"slow": 1400, "normal": 800, "fast": 350, "very fast": 120}

KIND_COLORS = {
    "call": "#374151",
    "return": OK,
    "error": ERROR,
    "lock": "#7c3aed",
    "timestamp": "#7c3aed",
    "splay_visit": PATH,
    "rotate": "#0891b2",
    "splay_done": "#0891b2",
    "gap_check": HIGHLIGHT,
    "prune": "#6b7280",
    "clip": "#db2777",
    "link": OK,
    "unlink": ERROR,
    "merge": "#0d9488",
    "extend": "#0d9488",
    "modify": "#ca8a04",
    "note": "#6b7280",
}


class StepView(Protocol):
    """What the player needs from a view."""

    def show(self, trace: Any, step_index: int) -> None: ...


def step_html(trace: Any, i: int, extra: str = "") -> str:
    """The explanation box's HTML for step ``i`` (kind badge, sentence, return code)."""
    n = len(trace) if trace is not None else 0
    if not n:
        return f'<div style="font-family:{FONT};color:{TEXT_MUTED}">No steps recorded.</div>'
    st = trace.steps[i]
    color = KIND_COLORS.get(st.kind, "#374151")
    badge = (
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px;'
        f'font-family:{MONO};font-size:11px;margin-right:8px">{html.escape(st.kind)}</span>'
    )
    text = html.escape(st.text)
    if st.kind in ("return", "error") and "rv" in st.data:
        rv = st.data["rv"]
        tone = OK if rv in (0, None) else ERROR
        text += f' <b style="color:{tone}">→ {html.escape(kern_str(rv))}</b>'
    return (
        f'<div style="font-family:{FONT};font-size:13px;line-height:1.45">'
        f'<span style="color:{TEXT_MUTED};margin-right:8px">Step {i + 1} of {n}</span>'
        f"{badge}{text}{extra}</div>"
    )


class Player(W.VBox):
    """Step through a `vmlab.core.trace.Trace`, showing each step in the registered views.

    ``describe(trace, i) -> str`` may add HTML after the step's sentence (e.g. what a return
    value means). ``player.step`` is the current (0-based) step index; set it to jump.
    """

    def __init__(
        self,
        trace: Any = None,
        views: Iterable[StepView] = (),
        *,
        interval: int = SPEEDS["normal"],
        describe: Callable[[Any, int], str] | None = None,
        start: int = 0,
    ) -> None:
        self.trace = trace
        self.views: list[StepView] = []
        self.describe = describe
        self._updating = False

        def button(icon: str, tip: str, cls: str) -> W.Button:
            b = W.Button(icon=icon, tooltip=tip, layout=W.Layout(width="38px"))
            b.add_class(cls)
            return b

        self.back_button = button("step-backward", "previous step", "vmlab-step-back")
        self.forward_button = button("step-forward", "next step", "vmlab-step-forward")
        self.play = W.Play(value=0, min=0, max=0, step=1, interval=interval,
                           layout=W.Layout(width="auto"))
        self.play.add_class("vmlab-play")
        self.slider = W.IntSlider(value=0, min=0, max=0, readout=False, continuous_update=True,
                                  layout=W.Layout(width="300px"))
        self.slider.add_class("vmlab-slider")
        self.jump = W.BoundedIntText(value=1, min=1, max=1, description="step",
                                     layout=W.Layout(width="120px"),
                                     style={"description_width": "34px"})
        self.jump.add_class("vmlab-jump")
        self.speed = W.Dropdown(options=list(SPEEDS), value=_speed_name(interval),
                                layout=W.Layout(width="100px"))
        self.speed.add_class("vmlab-speed")
        self.explain = W.HTML(layout=W.Layout(min_height="42px", width="auto"))
        self.explain.add_class("vmlab-explain")

        W.link((self.play, "value"), (self.slider, "value"))
        W.link((self.play, "max"), (self.slider, "max"))
        self.slider.observe(self._on_slider, names="value")
        self.jump.observe(self._on_jump, names="value")
        self.speed.observe(self._on_speed, names="value")
        self.back_button.on_click(lambda _b: self.back())
        self.forward_button.on_click(lambda _b: self.forward())

        controls = W.HBox(
            [self.back_button, self.play, self.forward_button, self.slider, self.jump,
             self.speed],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )
        super().__init__([controls, self.explain],
                         layout=W.Layout(width="100%", max_width="880px"))
        self.add_class("vmlab-player")
        for v in views:
            self.add_view(v)
        self.set_trace(trace, start=start)

    # -- API ---------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.slider.value)

    @step.setter
    def step(self, i: int) -> None:
        n = len(self.trace) if self.trace is not None else 0
        i = max(0, min(int(i), max(n - 1, 0)))
        if i == self.slider.value:
            self.render()
        else:
            self.slider.value = i

    def add_view(self, view: StepView) -> None:
        """Register a view; it is shown at the current step at once."""
        self.views.append(view)
        if self.trace is not None and len(self.trace):
            view.show(self.trace, self.step)

    def set_trace(self, trace: Any, *, start: int = 0) -> None:
        """Replace the trace (e.g. after the user re-ran the operation) and show ``start``."""
        self.trace = trace
        n = len(trace) if trace is not None else 0
        self._updating = True
        try:
            self.play.playing = False
            self.slider.max = max(n - 1, 0)
            self.jump.max = max(n, 1)
            self.slider.value = max(0, min(start, max(n - 1, 0)))
        finally:
            self._updating = False
        for w in (self.back_button, self.forward_button, self.play, self.slider, self.jump):
            w.disabled = n <= 1
        self.render()

    def forward(self) -> None:
        self.step = self.step + 1

    def back(self) -> None:
        self.step = self.step - 1

    def render(self) -> None:
        """Show the current step in every view and the explanation box."""
        trace, i = self.trace, self.step
        n = len(trace) if trace is not None else 0
        extra = ""
        if n:
            with ExitStack() as stack:
                seen: set[int] = set()
                for v in self.views:
                    emb = getattr(v, "embedded", None)
                    if emb is not None and id(emb) not in seen:
                        seen.add(id(emb))
                        stack.enter_context(emb.batch())
                for v in self.views:
                    v.show(trace, i)
            if self.describe is not None:
                extra = self.describe(trace, i) or ""
        self.explain.value = step_html(trace, i, extra)
        if self.jump.value != i + 1:
            self._updating = True
            try:
                self.jump.value = i + 1
            finally:
                self._updating = False

    # -- callbacks ---------------------------------------------------------------------------
    def _on_slider(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.render()

    def _on_jump(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.step = int(change["new"]) - 1

    def _on_speed(self, change: dict[str, Any]) -> None:
        self.play.interval = SPEEDS[change["new"]]


def _speed_name(interval: int) -> str:
    return min(SPEEDS, key=lambda k: abs(SPEEDS[k] - interval))

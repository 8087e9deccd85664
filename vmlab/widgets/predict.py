"""Predict, then reveal: a student types an answer to a `vmlab.exercises.Problem`, the widget
checks it inline, then shows the model's explanation and (if given) an animation.

::

    from vmlab.exercises import generate
    from vmlab.widgets import Predict
    p = generate("findspace", seed=7)
    Predict(p, animation=p.animation())

Callbacks never raise: unreadable answers get a red sentence, not a traceback (docs/testing.md,
widget conventions). The explanation and animation stay hidden until Check or Reveal.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from .theme import ERROR, FONT, MONO, OK

__all__ = ["Predict"]


def _pre(text: str) -> str:
    return (f'<pre style="font-family:{MONO};font-size:12px;line-height:1.35;margin:4px 0;'
            f'white-space:pre-wrap">{html.escape(text)}</pre>')


class Predict(W.VBox):
    """The problem's scene and question, a Text answer box, Check and Reveal buttons, the
    feedback line (class ``vmlab-feedback``, green when right, red otherwise) and the reveal
    area (class ``vmlab-reveal``: explanation, then the animation), hidden until a check or
    Reveal.

    ``answer`` is the Text widget, ``check_button`` / ``reveal_button`` the buttons,
    ``feedback`` the HTML line, ``reveal_area`` the box; ``correct`` is None before a check.
    """

    def __init__(self, problem: Any, animation: Any = None, *, show_setup: bool = True) -> None:
        self.problem = problem
        self.animation = animation
        self.correct: bool | None = None
        self.revealed = False
        header = W.HTML(
            f'<div style="font-family:{FONT};font-size:13px"><b>{html.escape(problem.title)}'
            f"</b> <span style=\"color:#6b7280\">({html.escape(problem.topic)}, "
            f"{'seed ' + str(problem.seed) if problem.seed is not None else 'explicit input'})"
            f"</span></div>"
        )
        parts: list[W.Widget] = [header]
        if show_setup:
            parts.append(W.HTML(_pre(problem.setup)))
        parts.append(W.HTML(_pre(problem.question)))
        self.answer = W.Text(placeholder=problem.answer_format,
                             layout=W.Layout(width="520px"))
        self.answer.add_class("vmlab-answer")
        self.check_button = W.Button(description="Check", button_style="primary")
        self.check_button.add_class("vmlab-check")
        self.reveal_button = W.Button(description="Reveal")
        self.reveal_button.add_class("vmlab-reveal-button")
        self.feedback = W.HTML("")
        self.feedback.add_class("vmlab-feedback")
        self.explanation = W.HTML("")
        self.reveal_area = W.VBox([], layout=W.Layout(display="none"))
        self.reveal_area.add_class("vmlab-reveal")
        self.check_button.on_click(lambda _b: self.check())
        self.reveal_button.on_click(lambda _b: self.reveal())
        fmt = W.HTML(f'<span style="font-family:{FONT};font-size:12px;color:#6b7280">'
                     f"{html.escape(problem.answer_format)}</span>")
        parts += [W.HBox([self.answer, self.check_button, self.reveal_button]), fmt,
                  self.feedback, self.reveal_area]
        super().__init__(parts)
        self.add_class("vmlab-predict")

    # ------------------------------------------------------------------------------------
    def check(self, text: str | None = None) -> tuple[bool, str]:
        """Check ``text`` (default: what is in the box), show the feedback, reveal."""
        if text is not None:
            self.answer.value = text
        try:
            ok, msg = self.problem.check(self.answer.value)
        except Exception as exc:  # noqa: BLE001 - never a traceback in a lesson
            ok, msg = False, f"Could not check this answer ({type(exc).__name__})."
        self.correct = ok
        color = OK if ok else ERROR
        self.feedback.value = (f'<div style="font-family:{FONT};font-size:13px;color:{color};'
                               f'white-space:pre-wrap">{html.escape(msg)}</div>')
        self.reveal()
        return ok, msg

    def reveal(self) -> None:
        """Show the explanation (and the animation) below."""
        if not self.revealed:
            try:
                text = self.problem.explain()
            except Exception as exc:  # noqa: BLE001
                text = f"The explanation is unavailable ({type(exc).__name__}: {exc})."
            self.explanation.value = _pre(text)
            kids: list[W.Widget] = [self.explanation]
            if self.animation is not None:
                kids.append(self.animation)
            self.reveal_area.children = tuple(kids)
            self.revealed = True
        self.reveal_area.layout.display = "flex"

"""The Predict widget, model side: type, click Check, read the feedback, see the reveal."""

from __future__ import annotations

import ipywidgets as W

from vmlab.exercises import build, generate
from vmlab.widgets import Predict
from vmlab.widgets.theme import ERROR, OK

ENTRIES = [{"start": 0x2000, "end": 0x5000, "prot": 3, "max": 7}]


def _problem():  # noqa: ANN202
    return build("findspace", entries=ENTRIES, start=0x1000, length=0x2000)  # -> 0x5000


def test_hidden_until_checked() -> None:
    w = Predict(_problem())
    assert w.reveal_area.layout.display == "none"
    assert w.feedback.value == "" and w.correct is None
    assert "vm_map_findspace" in "".join(c.value for c in w.children if isinstance(c, W.HTML))


def test_right_answer_green_and_reveals_explanation() -> None:
    p = _problem()
    w = Predict(p)
    w.answer.value = "0x5000"
    w.check_button.click()
    assert w.correct is True
    assert OK in w.feedback.value and "Correct!" in w.feedback.value
    assert w.reveal_area.layout.display == "flex"
    assert "Answer: 0x5000" in w.explanation.value
    assert w.reveal_area.children == (w.explanation,)


def test_wrong_answer_red_and_still_reveals() -> None:
    w = Predict(_problem())
    w.answer.value = "20480"  # == 0x5000: decimal is fine
    w.check_button.click()
    assert w.correct is True
    w.answer.value = "0x1000"
    w.check_button.click()
    assert w.correct is False
    assert ERROR in w.feedback.value and "Not quite." in w.feedback.value
    assert w.reveal_area.layout.display == "flex"


def test_bad_input_gives_a_sentence_not_a_traceback() -> None:
    w = Predict(generate("insert", 2))
    for junk in ("", "???", "0x", "KERN_SUCCESS; [0x1, ", "\x00\xff"):
        w.answer.value = junk
        w.check_button.click()
        assert w.correct is False
        assert ERROR in w.feedback.value and "Traceback" not in w.feedback.value


def test_reveal_button_and_animation_below_explanation() -> None:
    anim = W.Label("animation")
    w = Predict(_problem(), animation=anim)
    w.reveal_button.click()
    assert w.reveal_area.layout.display == "flex"
    assert w.reveal_area.children == (w.explanation, anim)
    assert w.feedback.value == ""  # revealing is not checking
    assert "vmlab-predict" in w._dom_classes and "vmlab-reveal" in w.reveal_area._dom_classes


def test_check_method_for_lessons_that_run_unattended() -> None:
    p = generate("walk", 4)
    w = Predict(p, show_setup=False)
    ok, msg = w.check(p.solve().text())
    assert ok and w.answer.value == p.solve().text() and "Correct!" in msg

"""check(): equivalent notations are accepted, wrong answers rejected, junk never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.core import KERN
from vmlab.exercises import TOPICS, AnswerError, build, generate
from vmlab.exercises.parse import (
    parse_addr,
    parse_errcode,
    parse_kern,
    parse_prot,
    parse_prot_pair,
    parse_ranges,
)

ENTRIES = [{"start": 0x2000, "end": 0x5000, "prot": 3, "max": 7},
           {"start": 0x8000, "end": 0x9000, "prot": 1, "max": 5}]


def test_address_notations() -> None:
    p = build("findspace", entries=ENTRIES, start=0x3000, length=0x4000)  # answer 0x9000
    for text in ("0x9000", "0X9000", "0x9_000", " 36864 ", "0x00009000", "addr = 0x9000"):
        assert p.check(text)[0], text
    for text in ("0x8000", "9000", "0x90000", "36865"):
        ok, fb = p.check(text)
        assert not ok, text
    ok, fb = p.check("9000")
    assert "0x9000" in fb  # decimal typed where hex was meant: say so


def test_kern_notations() -> None:
    p = build("insert", entries=ENTRIES, start=0x6000, end=0x9000, prot=3, max=7)
    ranges = "[0x2000, 0x5000) [0x8000, 0x9000)"
    for k in ("KERN_NO_SPACE", "kern_no_space", "NO_SPACE", "no space", "3", "KERN-NO-SPACE"):
        assert p.check(f"{k}; {ranges}")[0], k
    # other range notations, other order, and no separator between the parts
    assert p.check("KERN_NO_SPACE; 0x8000-0x9000, 0x2000-0x5000")[0]
    assert p.check("no_space 0x2000..0x5000 0x8000..0x9000")[0]
    assert p.check("3; 8192:20480 32768:36864")[0]
    assert not p.check(f"KERN_SUCCESS; {ranges}")[0]
    assert not p.check("KERN_NO_SPACE; [0x2000, 0x9000)")[0]
    assert not p.check("KERN_INVALID_ADDRESS")[0]


def test_multi_part_feedback_names_each_part() -> None:
    p = build("clip", entries=ENTRIES, entry_addr=0x2000, clips=[("start", 0x3000)])
    ok, fb = p.check("[0x2000,0x3000) [0x3000,0x5000) [0x8000,0x9000); [0x2000,0x3000); 0")
    assert not ok
    assert "✓ entries after" in fb and "✗ entry's range" in fb and "✗ entry's offset" in fb
    assert p.check(p.solve().text())[0]


def test_prot_and_errcode_notations() -> None:
    assert parse_prot("rw-") == parse_prot("RW") == parse_prot("READ|WRITE") == parse_prot("3")
    assert parse_prot("---") == parse_prot("none") == 0
    assert parse_prot_pair("r--/r-x") == (1, 5)
    assert parse_errcode("0x7") == parse_errcode("P W U") == parse_errcode("#PF 7") == 7
    assert parse_errcode("P|U|I/D") == 0x15
    assert parse_kern("KERN_OUT_OF_BOUNDS") == KERN.OUT_OF_BOUNDS == parse_kern("9")
    assert parse_ranges("none") == []
    for bad in ("rwz", "x/y"):
        with pytest.raises(AnswerError):
            parse_prot_pair(bad)
    with pytest.raises(AnswerError):
        parse_addr("0x1 0x2")
    with pytest.raises(AnswerError):
        parse_kern("42")
    with pytest.raises(AnswerError):
        parse_ranges("0x1000-0x2000 0x3000")


def test_walk_notations() -> None:
    va = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12)
    p = build("walk", pages=[(va, 3)], va=va + 0x18, access="w")
    pa = p.solve()["outcome"][1]
    assert p.check(f"1 2 3 4; PA {pa:#x}")[0]
    assert p.check(f"PML4 1, PDPT 2, PD 3, PT 4; {pa}")[0]
    assert not p.check("1 2 3 4; #PF 0x7")[0]
    assert not p.check(f"4 3 2 1; {pa:#x}")[0]


@pytest.mark.parametrize("topic", list(TOPICS))
def test_model_answer_text_is_accepted_and_others_rejected(topic: str) -> None:
    for seed in range(8):
        p = generate(topic, seed)
        assert p.check(p.solve().text()) == (True, p.check(p.solve().text())[1])
        other = generate(topic, seed + 100)
        if other.solve().text() != p.solve().text():
            assert not p.check(other.solve().text())[0]


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=30).map(repr), st.none(),
                 st.integers()))
def test_junk_never_raises(junk: object) -> None:
    for topic in ("insert", "walk", "clip"):
        p = _PROBLEMS[topic]
        ok, fb = p.check(junk)
        assert isinstance(ok, bool) and isinstance(fb, str) and fb


_PROBLEMS = {t: generate(t, 3) for t in ("insert", "walk", "clip")}

"""Lesson prose that the generators must never leak: an f-string placeholder left unformatted
(a markdown cell written as md(\"\"\"...{man("x")}...\"\"\") without the f prefix shows the
literal braces to students)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PLACEHOLDER = re.compile(r"\{(man|src)\(")


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_unformatted_placeholders(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    bad = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "markdown" and PLACEHOLDER.search(c.source)]
    assert bad == [], f"{path.name}: cells {bad} show a literal {{man(...)}} / {{src(...)}}"

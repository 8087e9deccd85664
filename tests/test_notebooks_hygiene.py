"""Static rules every notebook in notebooks/ keeps (docs/testing.md, "Notebook rules").

They keep the notebooks small, diffable and comparable by strict nbval, and they catch the
frontend traps nbval cannot see (BokehJS from a CDN, ColumnDataSource.stream()). Whether the
notebook really runs and renders is checked by nbval (`make test`) and tests/browser.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for p in (REPO / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
MAX_BYTES = 300 * 1024
TEXT_MIMES = {"text/plain", "text/html", "text/markdown", "text/latex"}
IGNORE_TAG = "nbval-ignore-output"
# Tags that make Lab, Voilà and nbval disagree on what "ran cleanly" means.
FORBIDDEN_TAGS = {"raises-exception", "nbval-raises-exception", "nbval-skip"}
USES_BOKEH = re.compile(r"^\s*(from|import)\s+(bokeh|jupyter_bokeh)\b", re.M)
INLINE_LOAD = re.compile(r"output_notebook\(\s*(resources\s*=\s*)?INLINE\b")
ANY_LOAD = re.compile(r"\boutput_notebook\(")


def _id(p: Path) -> str:
    return p.relative_to(REPO / "notebooks").as_posix()


def _text(v: str | list[str]) -> str:
    return "".join(v) if isinstance(v, list) else v


@pytest.fixture(params=NOTEBOOKS, ids=[_id(p) for p in NOTEBOOKS])
def nb_path(request) -> Path:
    return request.param


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook: nbval and the browser tests would test nothing"


def test_valid_nbformat_and_size(nb_path: Path) -> None:
    size = nb_path.stat().st_size
    assert size < MAX_BYTES, f"{size} bytes: widget or BokehJS output stored? (make notebooks)"
    nb = nbformat.read(nb_path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)


def test_metadata(nb_path: Path) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    assert "widgets" not in nb.metadata, "stored widget state: run tools/strip_widget_outputs.py"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_cells(nb_path: Path) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({_text(cell.source)[:40]!r})"
        assert _text(cell.source).strip(), f"{where}: empty code cell (Lab's Run All stalls on it)"
        tags = set(cell.metadata.get("tags", []))
        assert not tags & FORBIDDEN_TAGS, f"{where}: tag {tags & FORBIDDEN_TAGS}; no cell may fail"
        if IGNORE_TAG in tags:
            assert not cell.outputs, f"{where}: tagged {IGNORE_TAG} but outputs are stored"
        for out in cell.outputs:
            kind = out.output_type
            assert kind != "error", f"{where}: stored error output"
            if kind == "stream":
                assert out.name == "stdout", f"{where}: stored stderr: {_text(out.text)[:200]}"
                continue
            mimes = set(out.get("data", {}))
            assert mimes <= TEXT_MIMES, f"{where}: non-text output {sorted(mimes - TEXT_MIMES)}"
            html = _text(out.data.get("text/html", ""))
            assert "<script" not in html.lower(), f"{where}: HTML output with <script>"
        if cell.outputs:
            assert cell.execution_count is not None, f"{where}: outputs without execution count"


def test_bokehjs_inline(nb_path: Path) -> None:
    """BokehJS must come from the kernel, not a CDN (offline classrooms): a notebook that uses
    bokeh directly loads it INLINE in its first code cell; vmlab.widgets does it by itself."""
    nb = nbformat.read(nb_path, as_version=4)
    code = [_text(c.source) for c in nb.cells if c.cell_type == "code"]
    for src in code:
        for m in ANY_LOAD.finditer(src):
            assert INLINE_LOAD.match(src, m.start()), "output_notebook() without INLINE"
    if any(USES_BOKEH.search(src) for src in code):
        assert INLINE_LOAD.search(code[0]), "first code cell must call output_notebook(INLINE, …)"


def _calls_stream(source: str) -> bool:
    # IPython magics and shell escapes are not Python
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:  # not this test's business: importing or running it fails elsewhere
        return False
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "stream"
        for n in ast.walk(tree)
    )


def test_no_columndatasource_stream() -> None:
    """jupyter_bokeh 4.1.0 echoes stream()ed rows back to the kernel (jupyter-notes.md #2):
    notebooks and widgets replace `source.data` or `patch()` instead."""
    offenders = []
    for f in NOTEBOOKS:
        nb = nbformat.read(f, as_version=4)
        if any(_calls_stream(_text(c.source)) for c in nb.cells if c.cell_type == "code"):
            offenders.append(_id(f))
    for f in sorted((REPO / "vmlab" / "widgets").rglob("*.py")):
        if _calls_stream(f.read_text()):
            offenders.append(str(f.relative_to(REPO)))
    assert not offenders, f"ColumnDataSource.stream() called in {offenders}"


def test_binder_pins_match_pyproject() -> None:
    """binder/requirements.txt (repo2docker's cached layer) pins what pyproject's lab and
    dashboard extras pin, so Binder runs the stack the browser tests verified."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI runs 3.11)

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    wanted = {r for r in extras["lab"] + extras["dashboard"] if "==" in r}
    lines = (REPO / "binder" / "requirements.txt").read_text().splitlines()
    have = {ln.strip() for ln in lines if "==" in ln and not ln.lstrip().startswith("#")}
    assert wanted == have, f"pyproject pins {sorted(wanted)}, binder pins {sorted(have)}"

#!/usr/bin/env python3
"""Execute notebooks and store only what nbval can compare.

Usage: python tools/strip_widget_outputs.py [--no-execute] NOTEBOOK [NOTEBOOK ...]
(`make notebooks` runs it on every notebook in notebooks/).

Lessons are tests: the text a fact-stating cell prints (a return code, an address, a table of
entries) is stored and strict nbval compares it on every CI run. Widget and BokehJS outputs are
not stored: they hold random model ids and megabytes of inline BokehJS. So, per code cell:

- run it in a fresh kernel (nbclient, kernel ``python3``, working directory = the notebook's);
- keep stdout streams and results whose mimetypes are all textual (text/plain, text/html,
  text/markdown, text/latex) and whose HTML holds no <script>;
- a cell with anything else (a widget view, application/javascript, BokehJS, images) loses ALL
  its outputs and gets the tag ``nbval-ignore-output``: nbval still runs it but does not compare
  (put facts to compare in a cell of their own);
- stderr output or an exception is an error: the notebook is not written.

Notebook metadata is normalised so re-running gives the same file: no widget state, kernelspec
``python3``, no per-cell timing, no Python patch version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

TEXT_MIMES = {"text/plain", "text/html", "text/markdown", "text/latex"}
IGNORE_TAG = "nbval-ignore-output"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def is_text_output(out: dict) -> bool:
    """True if nbval can compare ``out`` stably (stdout text, or purely textual data)."""
    kind = out.get("output_type")
    if kind == "stream":
        return out.get("name") == "stdout"
    if kind in ("execute_result", "display_data"):
        data = out.get("data", {})
        if not data or not set(data) <= TEXT_MIMES:
            return False
        html = data.get("text/html", "")
        html = "".join(html) if isinstance(html, list) else html
        return "<script" not in html.lower()
    return False


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs a lesson must never produce: stderr text (warnings) and errors."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {i}: stderr: {''.join(out.get('text', ''))[:500]}")
    return found


def merge_streams(outputs: list) -> list:
    """Join adjacent stdout chunks: how the kernel splits a print into messages is timing, not
    content, and a stored split would make the file differ from one regeneration to the next."""
    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (prev is not None and out.get("output_type") == "stream" == prev.get("output_type")
                and out.get("name") == prev.get("name")):
            text = prev.get("text", "")
            prev["text"] = ("".join(text) if isinstance(text, list) else text) + (
                "".join(out["text"]) if isinstance(out.get("text"), list) else out.get("text", ""))
        else:
            merged.append(out)
    return merged


def strip(nb: nbformat.NotebookNode) -> int:
    """Drop non-textual outputs in place (see module doc). Returns the number of cells tagged."""
    tagged = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if not all(is_text_output(o) for o in cell.outputs):
            cell.outputs = []
            tags = cell.metadata.setdefault("tags", [])
            if IGNORE_TAG not in tags:
                tags.append(IGNORE_TAG)
            tagged += 1
        else:
            cell.outputs = merge_streams(cell.outputs)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    lang = nb.metadata.get("language_info", {})
    nb.metadata["language_info"] = {
        k: lang[k] for k in ("name", "file_extension", "mimetype", "pygments_lexer") if k in lang
    } or {"name": "python"}
    return tagged


def process(path: Path, execute: bool, timeout: int) -> bool:
    nb = nbformat.read(path, as_version=4)
    if execute:
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=timeout,
            record_timing=False,
            store_widget_state=False,
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            print(f"{path}: a cell raised; not written\n{exc}", file=sys.stderr)
            return False
    bad = problems(nb)
    if bad:
        print(f"{path}: not written:\n  " + "\n  ".join(bad), file=sys.stderr)
        return False
    tagged = strip(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    kept = sum(len(c.get("outputs", [])) for c in nb.cells)
    print(f"{path}: {kept} text outputs kept, {tagged} widget cells stripped and tagged")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--no-execute", action="store_true", help="only strip the stored outputs")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = ap.parse_args(argv)
    ok = [process(p, not args.no_execute, args.timeout) for p in args.notebooks]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())

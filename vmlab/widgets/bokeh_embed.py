"""The one place where bokeh meets ipywidgets (see shared/reference/jupyter-notes.md).

- `ensure_bokeh()` loads BokehJS **inline** (``output_notebook(INLINE, hide_banner=True)``) once
  per kernel. No CDN is reachable offline or behind a classroom firewall, and jupyter_bokeh's
  labextension does not bundle BokehJS. Every vmlab widget calls it, so lessons need no
  boilerplate.
- `Embedded` wraps a bokeh layout in jupyter_bokeh's ``BokehModel`` and keeps the reference
  needed by `Embedded.refresh()` (``update_from_model``), which fixes Voilà's stale first render.
  It does so by itself: a figure changed while a cell runs (``anim.player.step = 5`` in a later
  cell, or in the cell that built it) is re-sent whole when that cell ends (IPython's
  ``post_run_cell``), because BokehModel's widget state is the document as it was when the
  model was built, and Voilà (or a view created later) renders that state first; the
  incremental patches sent before a view existed are lost. Changes made by widget callbacks
  (the player's buttons) reach live views as patches and need no re-send.
- `set_data` replaces a ColumnDataSource's data, or patches it when only a few rows changed.
  Never ``ColumnDataSource.stream()``: jupyter_bokeh 4.1.0 echoes streamed rows back to the
  kernel, which then holds every row twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, LayoutDOM

__all__ = ["Embedded", "ensure_bokeh", "in_kernel", "set_data"]

_loaded = False


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not in plain Python, pytest or a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def ensure_bokeh() -> bool:
    """Load BokehJS inline into the page, once per kernel. Returns True if it loaded it now."""
    global _loaded
    if _loaded or not in_kernel():
        return False
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
    _loaded = True
    return True


# Embedded objects whose document changed while a cell was running (see the module doc).
_live: weakref.WeakSet[Embedded] = weakref.WeakSet()
_in_cell = False
_hooks_installed = False


def _pre_run_cell(*_args: Any) -> None:
    global _in_cell
    _in_cell = True


def _post_run_cell(*_args: Any) -> None:
    global _in_cell
    _in_cell = False
    for emb in list(_live):
        if emb.stale:
            try:
                emb.refresh()
            except Exception:  # noqa: BLE001 - a hook must never break the student's cell
                emb.stale = True


def _install_hooks() -> None:
    """Register the cell hooks once per kernel (no-op outside IPython)."""
    global _hooks_installed
    if _hooks_installed:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None:
        return
    ip.events.register("pre_run_cell", _pre_run_cell)
    ip.events.register("post_run_cell", _post_run_cell)
    _hooks_installed = True


class Embedded:
    """A bokeh layout shown through one ``BokehModel`` widget (``.widget``).

    Group the updates of one step in ``with emb.batch():`` so the browser receives one combined
    patch instead of one message per source. ``stale`` is True when the document changed during
    the running cell since the widget state was last taken; the cell's end re-sends it.
    """

    def __init__(self, layout: LayoutDOM) -> None:
        ensure_bokeh()
        from bokeh.document import Document
        from jupyter_bokeh.widgets import BokehModel

        self.layout = layout
        self.widget = BokehModel(layout)
        self.widget.add_class("vmlab-bokeh")
        self.stale = False
        doc = layout.document
        if isinstance(doc, Document):
            doc.on_change(self._on_doc_change)
        _live.add(self)
        _install_hooks()

    def _on_doc_change(self, _event: Any) -> None:
        if _in_cell:
            self.stale = True

    @property
    def document(self) -> Any:
        return self.layout.document

    @contextmanager
    def batch(self) -> Iterator[None]:
        doc = self.document
        if doc is None:
            yield
            return
        doc.hold("combine")
        try:
            yield
        finally:
            doc.unhold()

    def refresh(self) -> None:
        """Push the whole current state again (Voilà's first render, or a reloaded page)."""
        self.stale = False
        self.widget.update_from_model(self.layout)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
    return list(a) == list(b)


def set_data(
    source: ColumnDataSource, data: Mapping[str, Any], *, patch_limit: int = 64
) -> str:
    """Make ``source.data`` equal ``data`` with the smallest update bokeh offers.

    Returns what it did: ``"same"`` (nothing sent), ``"patch"`` (same length, at most
    ``patch_limit`` rows differ: ``source.patch``) or ``"replace"`` (``source.data = data``).
    """
    old = source.data
    if set(old) == set(data):
        lengths = {len(v) for v in data.values()}
        if len(lengths) <= 1 and all(len(old[k]) == len(data[k]) for k in data):
            diff_rows: set[int] = set()
            for k, new in data.items():
                cur = old[k]
                if _same(cur, new):
                    continue
                if isinstance(new, np.ndarray) and isinstance(cur, np.ndarray):
                    rows = np.nonzero(cur != new)[0]
                    diff_rows.update(rows.tolist())
                else:
                    diff_rows.update(i for i, (x, y) in enumerate(zip(cur, new, strict=True))
                                      if x != y)
                if len(diff_rows) > patch_limit:
                    break
            if not diff_rows:
                return "same"
            if len(diff_rows) <= patch_limit:
                patches: dict[str, list[tuple[int, Any]]] = {}
                for k, new in data.items():
                    cur = old[k]
                    ch = [(i, _py(new[i])) for i in sorted(diff_rows) if _py(cur[i]) != _py(new[i])]
                    if ch:
                        patches[k] = ch
                source.patch(patches)
                return "patch"
    # Copies: later patches modify columns in place, and callers often cache ``data``.
    source.data = {k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in data.items()}
    return "replace"


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

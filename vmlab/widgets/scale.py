"""Address axes: where an address is drawn, to scale or with big gaps compressed.

A user address space is 2^47 bytes with entries of a few pages; drawn to scale, almost
everything is invisible. `AddressScale` is a monotone piecewise-linear map from addresses to
display units (0..`WIDTH`), built from the boundaries of the entries (and gaps) to show:

- ``"linear"``: to scale;
- ``"gaps"``: entries to scale, gaps longer than a cap squeezed (marked with ≈ by the views);
- ``"log"``: a segmented axis: every entry and gap gets a width that grows with log2 of its
  size, so a 4 KiB guard and a 128 GiB hole are both visible (the overview's default);
- ``"auto"``: linear if the smallest entry would be at least 10 px wide, else gaps, else log.

The tick formatter runs in the browser, so zooming and panning show true addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["WIDTH", "AddressScale", "merge_intervals"]

WIDTH = 1000.0
PAGE = 4096.0

_TICK_JS = """
const a = bp.data.a, x = bp.data.x, n = x.length;
let v;
if (tick <= x[0]) v = a[0];
else if (tick >= x[n - 1]) v = a[n - 1];
else {
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) { const m = (lo + hi) >> 1; if (x[m] <= tick) lo = m; else hi = m; }
  v = a[lo] + (a[hi] - a[lo]) * (tick - x[lo]) / (x[hi] - x[lo]);
}
v = Math.round(v / 4096) * 4096;
return '0x' + v.toString(16);
"""


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals, sorted (float64 arrays)."""
    if not len(starts):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(starts, kind="stable")
    s, e = np.asarray(starts, float)[order], np.asarray(ends, float)[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > run_end[:-1]
    idx = np.nonzero(new)[0]
    ends_out = np.maximum.reduceat(e, idx)
    return s[idx], ends_out


class AddressScale:
    """address -> display x, piecewise linear through breakpoints ``(bp_addr, bp_x)``."""

    def __init__(self, bp_addr: np.ndarray, bp_x: np.ndarray, mode: str,
                 breaks: np.ndarray | None = None) -> None:
        self.bp_addr = np.asarray(bp_addr, float)
        self.bp_x = np.asarray(bp_x, float)
        self.mode = mode
        #: display x of the middle of each compressed gap (where views draw a ≈ mark)
        self.breaks = np.zeros(0) if breaks is None else breaks
        self._bp_source: Any = None

    @classmethod
    def build(
        cls,
        lo: int,
        hi: int,
        starts: Iterable[int] | np.ndarray,
        ends: Iterable[int] | np.ndarray,
        *,
        mode: str = "auto",
        extra: Iterable[int] = (),
        px: float = 860.0,
    ) -> AddressScale:
        """Scale for [lo, hi) showing the entries ``[starts[i], ends[i])`` (any order, may
        overlap: pass the union over several snapshots). ``extra`` adds breakpoints (addresses a
        step points at). ``px`` is the figure's width, used by ``"auto"``."""
        s = np.asarray(list(starts) if not isinstance(starts, np.ndarray) else starts, float)
        e = np.asarray(list(ends) if not isinstance(ends, np.ndarray) else ends, float)
        lo_f, hi_f = float(lo), float(max(hi, lo + 1))
        if mode == "auto":
            span = hi_f - lo_f
            smallest = float(np.min(e - s)) if len(s) else span
            if smallest / span * px >= 10.0:
                mode = "linear"
            else:
                mode = "gaps"
                trial = cls.build(lo, hi, s, e, mode="gaps", extra=extra, px=px)
                widths = trial.x(e) - trial.x(s)
                if len(s) and float(np.min(widths)) / WIDTH * px < 2.0:
                    mode = "log"
                else:
                    return trial
        if mode == "linear":
            return cls(np.array([lo_f, hi_f]), np.array([0.0, WIDTH]), "linear")
        ms, me = merge_intervals(s, e)
        pts = np.concatenate([[lo_f, hi_f], s, e, np.asarray(list(extra), float)])
        pts = np.unique(np.clip(pts, lo_f, hi_f))
        seg_len = np.diff(pts)
        mid = (pts[:-1] + pts[1:]) / 2
        k = np.searchsorted(ms, mid, side="right") - 1
        covered = (k >= 0) & (me[np.maximum(k, 0)] > mid) if len(ms) else np.zeros(len(mid), bool)
        pages = np.maximum(seg_len / PAGE, 1.0)
        if mode == "gaps":
            cap = max(float(np.median(e - s)) * 2.0 if len(s) else PAGE, PAGE)
            gap_w = np.where(seg_len <= cap, seg_len, cap * (1.0 + 0.25 * np.log2(seg_len / cap)))
            w = np.where(covered, seg_len, gap_w)
            squeezed = ~covered & (seg_len > cap)
        elif mode == "log":
            w = np.where(covered, 1.0 + np.log2(pages), 0.6 * (1.0 + np.log2(pages)))
            squeezed = ~covered & (pages > 16)
        else:
            raise ValueError(f"unknown scale mode {mode!r}")
        w = np.maximum(w, 1e-9)
        x = np.concatenate([[0.0], np.cumsum(w)])
        x *= WIDTH / x[-1]
        breaks = ((x[:-1] + x[1:]) / 2)[squeezed]
        return cls(pts, x, mode, breaks)

    def x(self, addr: Any) -> Any:
        """Display x of an address (scalar or array)."""
        out = np.interp(np.asarray(addr, float), self.bp_addr, self.bp_x)
        return float(out) if np.ndim(out) == 0 else out

    def addr(self, x: float) -> int:
        """Address at display x (inverse, rounded down to a page)."""
        a = float(np.interp(x, self.bp_x, self.bp_addr))
        return int(a) // 4096 * 4096

    def tick_formatter(self) -> Any:
        """A bokeh tick formatter that labels display x with the true hex address."""
        from bokeh.models import ColumnDataSource, CustomJSTickFormatter

        self._bp_source = ColumnDataSource({"a": self.bp_addr, "x": self.bp_x})
        return CustomJSTickFormatter(args={"bp": self._bp_source}, code=_TICK_JS)

    def update_source(self, source: Any) -> None:
        """Point an existing formatter's breakpoint source at this scale."""
        source.data = {"a": self.bp_addr.copy(), "x": self.bp_x.copy()}

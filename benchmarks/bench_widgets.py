"""Server-side cost of the widgets.

1. One animation step on a 10^4-entry map: `Player.render()` of a GapSearch (tree + map views
   in one BokehModel, with the jupyter_bokeh message serialisation the kernel really does),
   against the naive baseline that rebuilds the bokeh figures and a new BokehModel per step.
   Target: median <= 10 ms.
2. The overview of a 65,530-entry map (Linux's default vm.max_map_count): build time and the
   bytes of the first render bundle the browser receives.

Run: .venv/bin/python benchmarks/bench_widgets.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "widgets"))

import numpy as np  # noqa: E402
from widget_synth import big_map  # noqa: E402

from vmlab.core import KERN, vm_map_create, vm_map_insert, vm_map_lock, vm_map_unlock  # noqa: E402
from vmlab.widgets import AddressSpaceOverview, GapSearch, MapView, TreeView  # noqa: E402

PAGE = 4096


class _Bytes:
    """Counts what BokehModel.send would put on the wire (the kernel-side serialisation)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, content, buffers=None) -> None:  # noqa: ANN001
        self.n += len(str(content)) + sum(len(b) for b in (buffers or []))


def build_map(n: int):
    rng = np.random.default_rng(7)
    m = vm_map_create(None, 0x1000, 1 << 47)
    vm_map_lock(m)
    addr = 0x10000
    for _ in range(n):
        size = int(rng.integers(1, 16)) * PAGE
        gap = int(rng.integers(1, 64)) * PAGE
        assert vm_map_insert(m, None, 0, addr, addr + size, int(rng.choice([1, 3, 5])), 7,
                             0) == KERN.SUCCESS
        addr += size + gap
    vm_map_unlock(m)
    return m


def bench_step(n: int = 10_000) -> None:
    m = build_map(n)
    g = GapSearch(m, 0x1000, 80 * PAGE)
    sent = _Bytes()
    g.embedded.widget.send = sent
    steps = len(g.trace)
    times = []
    for _ in range(3):
        for i in list(range(steps)) + list(reversed(range(steps))):
            t0 = time.perf_counter()
            g.player.step = i
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95)]

    # naive: rebuild the views' figures and a fresh BokehModel for every step
    from bokeh.layouts import column
    from jupyter_bokeh.widgets import BokehModel

    naive = []
    for i in range(min(steps, 8)):
        t0 = time.perf_counter()
        mv, tv = MapView(), TreeView()
        mv.show(g.trace, i)
        tv.show(g.trace, i)
        BokehModel(column(tv.figure, mv.figure))
        naive.append(time.perf_counter() - t0)
    nmed = statistics.median(naive)
    print(f"animation step, {n} entries, {steps}-step GapSearch trace:")
    print(f"  player step  median {med * 1e3:7.2f} ms   p95 {p95 * 1e3:7.2f} ms   "
          f"(target <= 10 ms)  bytes sent/step {sent.n / len(times):,.0f}")
    print(f"  naive rebuild median {nmed * 1e3:7.2f} ms   ratio {nmed / med:6.1f}x")


def bench_overview(n: int = 65_530) -> None:
    snap = big_map(n)
    rows = [{"id": i, "path": f"/usr/lib/lib{i % 300}.so", "type": ("vnode", "swap")[i % 2]}
            for i in range(n)]
    t0 = time.perf_counter()
    ov = AddressSpaceOverview(snap, rows=rows)
    build = time.perf_counter() - t0
    from bokeh.core.json_encoder import serialize_json

    t1 = time.perf_counter()
    size = len(serialize_json(ov.embedded.widget.render_bundle))
    ser = time.perf_counter() - t1
    print(f"overview, {n:,} entries: build {build * 1e3:.0f} ms (includes the first "
          f"serialisation), bundle {size / 1e6:.2f} MB ({size / n:.0f} B/entry), "
          f"re-serialise {ser * 1e3:.0f} ms, axis mode {ov.scale.mode}")


if __name__ == "__main__":
    bench_step()
    bench_overview()

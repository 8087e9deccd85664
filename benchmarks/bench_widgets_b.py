"""Server-side cost of one step of the diagram animations (WIDGETS-B).

For each of PageWalk, PrefaultStrip, ForkView and StackGrowth: the median and p95 time of
`Player.render()` (scene + ColumnDataSource updates + the jupyter_bokeh message the kernel
serialises) over every step of its trace, and the bytes sent per step; against the naive
baseline that rebuilds the view's figure and a new BokehModel for the same step. The fork
runs on a process with 300 extra mappings (rows beyond 24 are folded). Target: ≤ 10 ms.

Run: .venv/bin/python benchmarks/bench_widgets_b.py
"""

from __future__ import annotations

import statistics
import time

from vmlab.core import (
    MAP_ANON,
    MAP_PRIVATE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    Machine,
    exec_image,
    mmap,
    vm_read,
    vm_write,
)
from vmlab.widgets import ForkView, PageWalk, PrefaultStrip, StackGrowth


class _Bytes:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, content, buffers=None) -> None:  # noqa: ANN001
        self.n += len(str(content)) + sum(len(b) for b in (buffers or []))


def _naive(widget, i: int) -> float:
    """Rebuild the view (new figure, sources) and a new BokehModel for step i."""
    from jupyter_bokeh.widgets import BokehModel

    t0 = time.perf_counter()
    view = type(widget.view)()
    for attr in ("question", "parent_pid", "child_pid"):
        if hasattr(widget.view, attr):
            setattr(view, attr, getattr(widget.view, attr))
    view.show(widget.trace, i)
    BokehModel(view.figure)
    return time.perf_counter() - t0


def measure(name: str, widget) -> tuple[float, float, float, int]:
    sent = _Bytes()
    widget.embedded.widget.send = sent
    n = len(widget.trace)
    times = []
    for _rep in range(2):
        for i in list(range(n)) + list(reversed(range(n))):
            t0 = time.perf_counter()
            widget.player.step = i
            times.append(time.perf_counter() - t0)
    naive = [_naive(widget, i) for i in range(0, n, max(1, n // 8))]
    med = statistics.median(times) * 1e3
    p95 = sorted(times)[int(0.95 * len(times))] * 1e3
    nav = statistics.median(naive) * 1e3
    per = sent.n // max(1, len(times))
    print(f"{name:14s} {n:4d} steps  median {med:6.2f} ms  p95 {p95:6.2f} ms  "
          f"~{per:6d} B/step   naive rebuild {nav:7.1f} ms  ({nav / med:5.1f}x)")
    return med, p95, nav, per


def main() -> None:
    m = Machine(64 << 20)
    vm = exec_image(m)
    err, a = mmap(vm, 0, 16 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
    for k in (0, 1, 2, 3, 4, 5, 6, 8):
        vm_write(vm, a + k * PAGE_SIZE, k)
    vm.vm_pmap.remove(a, a + 16 * PAGE_SIZE)
    vm_read(vm, a + 6 * PAGE_SIZE)
    measure("PageWalk", PageWalk(vm, a + 6 * PAGE_SIZE, "w"))
    measure("PrefaultStrip", PrefaultStrip(vm, a + 4 * PAGE_SIZE))
    measure("StackGrowth", StackGrowth(vm))
    for k in range(300):
        prot = PROT_READ | (PROT_WRITE if k % 2 else 0)  # alternate: no merging
        err, b = mmap(vm, 0, 2 * PAGE_SIZE, prot, MAP_ANON | MAP_PRIVATE)
        if k % 2:
            vm_write(vm, b, k)
    t0 = time.perf_counter()
    f = ForkView(vm, f"child:{a:#x}, parent:{a:#x}")
    print(f"ForkView on {vm.vm_map.nentries} entries: fork + writes + first render "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
    measure("ForkView", f)


if __name__ == "__main__":
    main()

"""Benchmark: vm_map_findspace / vm_map_insert / vm_map_delete on maps of 10^3 .. 10^6 entries,
against the naive map a student would write (a sorted Python list of (start, end) pairs walked
from the lowest entry), in the same run.

The map holds N one-page entries (alternating protections, so nothing merges) separated by
one-page holes, except that every 97th hole is four pages. findspace asks for 2-4 pages from a
random start: the first fit is the next big hole after the start, which the naive scan reaches
by walking from the lowest entry, while vmlab descends the tree pruning subtrees by max_free.
findspace warm repeats the findspace queries after the insert/delete phase (the tree has been
reshaped by a few hundred splays: the amortised cost); the headline ratio is the fresh one.
findspace_tail asks for six pages: only the gap after the last entry fits (the scan walks
everything; vmlab's max_free answers at once).
insert maps one page into a random one-page hole, delete removes it again.

    .venv/bin/python benchmarks/bench_core.py            # 10^3 .. 10^6 (about 15-30 s)
    .venv/bin/python benchmarks/bench_core.py --quick    # 10^3 .. 10^4

Prints per-operation medians (microseconds), the ratio naive / vmlab, the growth from 10^3
entries, and the memory a map of N entries takes.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from functools import partial

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vmlab.core import (  # noqa: E402
    VM_PROT,
    vm_map_create,
    vm_map_delete,
    vm_map_findspace,
    vm_map_insert,
    vm_map_lock,
)

P = 0x1000
BASE = 0x10000


class NaiveMap:
    """The baseline: a sorted list of (start, end), always walked from the lowest entry."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.entries: list[tuple[int, int]] = []

    def findspace(self, start: int, length: int) -> int:
        cur = max(start, self.lo)
        for s, e in self.entries:
            if e <= cur:
                continue
            if s >= cur + length:
                return cur
            cur = max(cur, e)
        return cur if cur + length <= self.hi else self.hi - length + 1

    def insert(self, start: int, end: int) -> bool:
        for i, (s, e) in enumerate(self.entries):
            if e > start:
                if s < end:
                    return False
                self.entries.insert(i, (start, end))
                return True
        self.entries.append((start, end))
        return True

    def delete(self, start: int, end: int) -> None:
        for i, (s, _e) in enumerate(self.entries):
            if s == start:
                del self.entries[i]
                return


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn, args_list) -> float:
    """Median microseconds of fn(*args) over args_list."""
    out = []
    for args in args_list:
        t0 = time.perf_counter_ns()
        fn(*args)
        out.append(time.perf_counter_ns() - t0)
    return statistics.median(out) / 1000


def bench(n: int, reps: int, naive_reps: int, rng: random.Random) -> dict[str, float]:
    starts_of = [0] * n
    a = BASE
    for i in range(n):
        starts_of[i] = a
        a += P * (5 if i % 97 == 96 else 2)
    hi = a + 64 * P
    gc.collect()
    before = rss_bytes()
    m = vm_map_create(None, BASE, hi)
    vm_map_lock(m)
    t0 = time.perf_counter()
    for i, a in enumerate(starts_of):
        vm_map_insert(m, None, 0, a, a + P, VM_PROT.READ if i & 1 else VM_PROT.RW, VM_PROT.ALL, 0)
    build = time.perf_counter() - t0
    mem = rss_bytes() - before
    naive = NaiveMap(BASE, hi)
    naive.entries = [(a, a + P) for a in starts_of]

    starts = [(rng.randrange(BASE, hi, P), rng.randrange(2, 5) * P) for _ in range(reps)]
    r: dict[str, float] = {"build_s": build, "mem_mb": mem / 2**20}
    for q in starts[:20]:
        assert vm_map_findspace(m, *q) == naive.findspace(*q), q
    r["findspace"] = timed(partial(vm_map_findspace, m), starts)
    r["findspace_naive"] = timed(naive.findspace, starts[:naive_reps])
    # six pages: no hole is that big, only the gap after the last entry fits
    tail = [(rng.randrange(BASE, hi - 64 * P, P), 6 * P) for _ in range(reps)]
    assert vm_map_findspace(m, *tail[0]) == naive.findspace(*tail[0]) == starts_of[-1] + P
    r["findspace_tail"] = timed(partial(vm_map_findspace, m), tail)
    r["findspace_tail_naive"] = timed(naive.findspace, tail[:naive_reps])

    holes = [starts_of[i] + P for i in (rng.randrange(n) for _ in range(reps)) if i % 97 != 96]
    ins, dels, nins, ndels = [], [], [], []
    for k, h in enumerate(holes):
        t0 = time.perf_counter_ns()
        vm_map_insert(m, None, 0, h, h + P, VM_PROT.EXECUTE, VM_PROT.ALL, 0)
        t1 = time.perf_counter_ns()
        vm_map_delete(m, h, h + P)
        t2 = time.perf_counter_ns()
        ins.append(t1 - t0)
        dels.append(t2 - t1)
        if k < naive_reps:
            t0 = time.perf_counter_ns()
            naive.insert(h, h + P)
            t1 = time.perf_counter_ns()
            naive.delete(h, h + P)
            t2 = time.perf_counter_ns()
            nins.append(t1 - t0)
            ndels.append(t2 - t1)
    r["insert"] = statistics.median(ins) / 1000
    r["delete"] = statistics.median(dels) / 1000
    r["insert_naive"] = statistics.median(nins) / 1000
    r["delete_naive"] = statistics.median(ndels) / 1000
    # The same findspace queries again, now that ~3 * reps splays have reshaped the tree built
    # in address order (a left path at first): the amortised cost, reported beside the fresh one.
    r["findspace_warm"] = timed(partial(vm_map_findspace, m), starts)
    r["table_mb"] = m._t.nbytes() / 2**20
    assert m.nentries == n
    del m, naive
    gc.collect()
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 10^3 and 10^4 entries")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5, 10**6]
    rng = random.Random(args.seed)
    results = {}
    print(f"{'entries':>9} {'op':>14} {'vmlab us':>10} {'naive us':>11} {'ratio':>8} "
          f"{'vs 1e3':>7}")
    for n in sizes:
        naive_reps = 200 if n <= 10**4 else (40 if n <= 10**5 else 10)
        r = results[n] = bench(n, 400 if n < 10**6 else 200, naive_reps, rng)
        for op in ("findspace", "findspace_tail", "insert", "delete"):
            growth = r[op] / results[sizes[0]][op]
            print(f"{n:>9} {op:>14} {r[op]:>10.1f} {r[op + '_naive']:>11.1f} "
                  f"{r[op + '_naive'] / r[op]:>7.1f}x {growth:>6.2f}x")
        print(f"{n:>9} {'findspace warm':>14} {r['findspace_warm']:>10.1f} "
              f"{r['findspace_naive']:>11.1f} {r['findspace_naive'] / r['findspace_warm']:>7.1f}x "
              f"{r['findspace_warm'] / results[sizes[0]]['findspace_warm']:>6.2f}x")
        print(f"{n:>9} {'build':>14} {r['build_s']:>9.2f}s   map memory {r['mem_mb']:.0f} MB RSS "
              f"(entry table {r['table_mb']:.0f} MB)")
    if 10**5 in results:
        r5 = results[10**5]
        print(f"\nfindspace at 1e5: {r5['findspace_tail_naive'] / r5['findspace_tail']:.0f}x "
              f"faster than the scan when only the last gap fits, "
              f"{r5['findspace_naive'] / r5['findspace']:.0f}x when the next big hole fits "
              f"(target >= 50x); 1e3 -> 1e5 growth: findspace "
              f"{r5['findspace'] / results[10**3]['findspace']:.2f}x, insert "
              f"{r5['insert'] / results[10**3]['insert']:.2f}x, delete "
              f"{r5['delete'] / results[10**3]['delete']:.2f}x (target <= 4x)")
    if 10**6 in results:
        print(f"1e6-entry map: {results[10**6]['mem_mb']:.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()

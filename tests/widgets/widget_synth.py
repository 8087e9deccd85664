"""Synthetic MapSnapshots and Traces for widget tests (no vm_map core needed).

`snapshot()` builds a balanced search tree over the entries with FreeBSD's max_free (M23: the
largest gap between an entry of the subtree and its neighbour, bounded by the nearest
ancestors). `findspace_trace()` records a plausible descent for vm_map_findspace.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vmlab.core.snapshot import ENTRY_DTYPE, MapSnapshot
from vmlab.core.trace import Step, Trace

PAGE = 4096


def snapshot(entries: list[tuple[int, int, int]], lo: int = 0x1000, hi: int = 0x100000, *,
             ids: list[int] | None = None, eflags: list[int] | None = None, timestamp: int = 0,
             lock_mode: str = "unlocked", holders: tuple[str, ...] = (),
             objects: list[int] | None = None) -> MapSnapshot:
    """entries: (start, end, prot) in address order."""
    n = len(entries)
    ids = ids if ids is not None else list(range(n))
    arr = np.zeros(n, ENTRY_DTYPE)
    for j, (s, e, p) in enumerate(entries):
        arr[j]["id"] = ids[j]
        arr[j]["start"], arr[j]["end"] = s, e
        arr[j]["protection"], arr[j]["max_protection"] = p, 7
        arr[j]["inheritance"] = 1
        arr[j]["eflags"] = eflags[j] if eflags else 0
        arr[j]["object"] = objects[j] if objects else -1
    arr["left"] = -1
    arr["right"] = -1

    def build(a: int, b: int, lb: int, ub: int) -> tuple[int, int]:
        """Subtree over rows [a, b) bounded by lb (prev end) and ub (next start): (root, mf)."""
        if a >= b:
            return -1, 0
        m = (a + b) // 2
        s, e = int(arr[m]["start"]), int(arr[m]["end"])
        lroot, lmf = build(a, m, lb, s)
        rroot, rmf = build(m + 1, b, e, ub)
        left_part = lmf if lroot >= 0 else s - lb
        right_part = rmf if rroot >= 0 else ub - e
        arr[m]["left"] = ids[lroot] if lroot >= 0 else -1
        arr[m]["right"] = ids[rroot] if rroot >= 0 else -1
        arr[m]["max_free"] = max(left_part, right_part)
        return m, max(left_part, right_part)

    root, _ = build(0, n, lo, hi)
    size = sum(e - s for s, e, _p in entries)
    return MapSnapshot(map_id=1, min=lo, max=hi, timestamp=timestamp, nentries=n, size=size,
                       anon_loc=0, flags=0, lock_mode=lock_mode, lock_holders=holders,
                       root=ids[root] if root >= 0 else -1, entries=arr)


def trace_of(steps: list[tuple[str, str, dict[str, Any], int]], states: list[Any]) -> Trace:
    return Trace(steps=[Step(k, t, d, s) for k, t, d, s in steps], states=states)


def findspace_trace(snap: MapSnapshot, start: int, length: int) -> tuple[Trace, int]:
    """A findspace-like descent over ``snap``'s tree: visit, prune by max_free, test gaps."""
    rows = {int(r["id"]): r for r in snap.entries}
    steps: list[tuple[str, str, dict[str, Any], int]] = [
        ("call", "vm_map_findspace", {"name": "vm_map_findspace",
                                      "args": {"start": start, "length": length}}, 0)]
    gaps = snap.gaps()
    node = snap.root
    while node >= 0:
        r = rows[node]
        steps.append(("splay_visit", f"visit entry {node}",
                      {"node": node, "start": int(r["start"]), "end": int(r["end"]),
                       "max_free": int(r["max_free"])}, 0))
        left = int(r["left"])
        if left >= 0 and int(rows[left]["max_free"]) < length:
            steps.append(("prune", f"skip subtree {left}",
                          {"node": left, "max_free": int(rows[left]["max_free"])}, 0))
            left = -1
        node = left if left >= 0 else int(r["right"])
    answer = snap.max - length + 1
    for gs, ge in gaps:
        if ge <= start:
            continue
        gs = max(gs, start)
        fits = ge - gs >= length
        steps.append(("gap_check", "test gap", {"start": gs, "end": ge, "size": ge - gs,
                                                "length": length, "fits": fits}, 0))
        if fits:
            answer = gs
            break
    steps.append(("return", "findspace returns", {"name": "vm_map_findspace", "rv": answer,
                                                  "value": answer}, 0))
    return trace_of(steps, [snap]), answer


def small_map() -> MapSnapshot:
    return snapshot([(0x2000, 0x4000, 3), (0x6000, 0x7000, 1), (0x8000, 0xA000, 5),
                     (0x10000, 0x11000, 3), (0x11000, 0x12000, 0), (0x20000, 0x28000, 7),
                     (0x30000, 0x31000, 3)], eflags=[0, 0, 0, 0, 0x10000, 0, 0])


def big_map(n: int, *, lo: int = 0x1000, hi: int = 1 << 47, seed: int = 1) -> MapSnapshot:
    """n entries scattered over a 47-bit space, sizes 1..64 pages, gaps 1..4096 pages."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 65, n) * PAGE
    gaps = rng.integers(1, 4097, n) * PAGE
    starts = lo + np.cumsum(gaps) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    prots = rng.choice([1, 3, 5, 0], n)
    ents = [(int(s), int(s + z), int(p)) for s, z, p in zip(starts, sizes, prots, strict=True)]
    objs = rng.choice([-1, 1, 2, 3], n).tolist()
    return snapshot(ents, lo, hi, objects=objs)

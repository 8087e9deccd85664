"""Reading trace steps for drawing: what a step points at, and the splay's context.

Views are pure functions of (trace, step). These helpers derive, from the steps up to ``i``,
what the current step is about: the entry, the gap, the splay path so far, the pruned
subtrees, the entry being inserted. They only read ``Step.kind`` and ``Step.data`` (documented
in `vmlab.core.trace.STEP_KINDS`) and the snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SplayContext", "arg", "entry_bounds", "pending_insert", "splay_context",
           "subtree_ids"]

#: Steps that start a new search/splay episode on the tree view.
_EPISODE_BREAK = {"call", "return", "splay_done", "error"}


def arg(data: Mapping[str, Any], *names: str) -> Any:
    """First of ``names`` found in ``data`` or in ``data['args']`` (a dict), else None."""
    for src in (data, data.get("args") if isinstance(data.get("args"), Mapping) else {}):
        for n in names:
            if n in src and src[n] is not None:
                return src[n]
    return None


def entry_bounds(snap: Any, entry_id: Any) -> tuple[int, int] | None:
    """[start, end) of entry ``entry_id`` in ``snap``, or None if it is not there."""
    if entry_id is None or snap is None:
        return None
    idx = np.nonzero(snap.entries["id"] == int(entry_id))[0]
    if not len(idx):
        return None
    row = snap.entries[idx[0]]
    return int(row["start"]), int(row["end"])


def subtree_ids(snap: Any, node: int) -> list[int]:
    """Entry ids of the subtree rooted at ``node`` (iterative: trees may be deep)."""
    ids = snap.entries["id"]
    pos = {int(k): j for j, k in enumerate(ids.tolist())}
    left, right = snap.entries["left"], snap.entries["right"]
    out, stack = [], [int(node)]
    while stack:
        k = stack.pop()
        j = pos.get(k)
        if j is None:
            continue
        out.append(k)
        for c in (int(left[j]), int(right[j])):
            if c >= 0:
                stack.append(c)
    return out


@dataclass
class SplayContext:
    """What the tree view shows at one step."""

    path: list[int] = field(default_factory=list)  # visited nodes, in order
    pruned: list[int] = field(default_factory=list)  # roots of subtrees skipped by max_free
    current: int | None = None  # node the step is about
    rotation: tuple[int, str] | None = None  # (node, 'left'/'right') at a rotate step
    root_done: int | None = None  # splay_done's new root
    gap: tuple[int, int, bool] | None = None  # gap_check (start, end, fits)


def splay_context(trace: Any, i: int) -> SplayContext:
    """Path, pruned subtrees and the focus at step ``i`` (from the episode's steps so far)."""
    ctx = SplayContext()
    steps = trace.steps
    j = i
    while j > 0 and steps[j - 1].kind not in _EPISODE_BREAK:
        j -= 1
    for st in steps[j : i + 1]:
        d = st.data
        if st.kind == "splay_visit":
            node = d.get("node")
            if node is not None:
                ctx.path.append(int(node))
                ctx.current = int(node)
        elif st.kind == "prune":
            node = d.get("node")
            if node is not None:
                ctx.pruned.append(int(node))
                ctx.current = int(node)
        elif st.kind == "rotate":
            node = d.get("node")
            if node is not None:
                ctx.current = int(node)
                ctx.rotation = (int(node), str(d.get("direction", "")))
        elif st.kind == "splay_done":
            root = d.get("root")
            ctx.root_done = int(root) if root is not None and int(root) >= 0 else None
            ctx.current = ctx.root_done
        elif st.kind == "gap_check":
            ctx.gap = (int(d.get("start", 0)), int(d.get("end", 0)), bool(d.get("fits")))
    cur = steps[i]
    if cur.kind != "rotate":
        ctx.rotation = None
    if cur.kind != "gap_check":
        ctx.gap = None
    return ctx


_INSERT_CALLS = {"vm_map_insert", "vm_map_fixed", "vm_map_find", "vm_map_find_min",
                 "vm_map_stack"}


def pending_insert(trace: Any) -> list[tuple[int, int] | None]:
    """For every step, the range of an entry being inserted that has not landed yet.

    It appears at the ``call`` of an inserting function once its range is known (insert/fixed:
    from the arguments; find: when findspace returns), and disappears at link, extend, error or
    return.
    """
    out: list[tuple[int, int] | None] = []
    cur: tuple[int, int] | None = None
    length: int | None = None
    for st in trace.steps:
        d = st.data
        name = d.get("name")
        if st.kind == "call" and name in _INSERT_CALLS:
            start = arg(d, "start", "addr")
            end = arg(d, "end")
            length = arg(d, "length", "len")
            if end is None and start is not None and length is not None:
                end = int(start) + int(length)
            cur = (int(start), int(end)) if name in ("vm_map_insert", "vm_map_fixed",
                                                    "vm_map_stack") and start is not None \
                and end is not None else None
        elif st.kind == "return" and name == "vm_map_findspace" and length is not None:
            val = d.get("value") if d.get("value") is not None else d.get("rv")
            if val is not None and cur is None:
                cur = (int(val), int(val) + int(length))
        elif st.kind in ("link", "extend", "error") or (
            st.kind == "return" and name in _INSERT_CALLS
        ):
            cur = None
            if st.kind != "link":
                length = None
        out.append(cur)
    return out

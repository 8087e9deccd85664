"""Helpers for the core tests: full state dumps and tree drawings."""

from __future__ import annotations

from vmlab.core import VmMap
from vmlab.core.entries import HEADER, NULL


def entry_rows(m: VmMap) -> list[tuple]:
    """Every entry's fields, in address order."""
    return [
        (
            e.id, e.start, e.end, e.offset, int(e.protection), int(e.max_protection),
            int(e.inheritance), int(e.eflags), id(e.object), e.wired_count, e.cred,
            e.next_read,
        )
        for e in m.entries()
    ]


def logical_state(m: VmMap) -> tuple:
    """Entries and counters (everything but the tree's shape and the timestamp)."""
    return (entry_rows(m), m.nentries, m.size, m.anon_loc, int(m.flags),
            m.min_offset, m.max_offset)


def full_state(m: VmMap) -> tuple:
    """Logical state plus the tree (root, real children, max_free) and the timestamp."""
    snap = m._trace_snapshot()
    return (logical_state(m), m.root, m.timestamp,
            snap.entries[["id", "left", "right", "max_free"]].tolist())


def shape(m: VmMap) -> str:
    """The tree as FreeBSD's harness prints it: (start end max_free offset left right)."""
    t = m._t
    if m.root == NULL:
        return "empty"
    out: list[str] = []
    stack: list[object] = [(m.root, HEADER, HEADER)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        n, lb, ub = item  # type: ignore[misc]
        out.append(f"({t.start[n]:x} {t.end[n]:x} {t.max_free[n]:x} {t.offset[n]:x} ")
        stack.append(")")
        stack.append((t.right[n], n, ub) if t.right[n] != ub else "-")
        stack.append(" ")
        stack.append((t.left[n], lb, n) if t.left[n] != lb else "-")
    return "".join(out)

"""Traces: what the model did, step by step, for the views to replay.

The model records; views only read (Python Tutor's trace-then-render split). A trace is a list
of `Step`s. Each step has a ``kind`` (see `STEP_KINDS`), a one-line explanation for students,
kind-specific ``data`` (plain ints, strings, tuples: JSON-friendly), and ``state``: an index into
``trace.states``, the snapshot of the recorded object *after* the step. Snapshots are frozen
objects supplied by the recorded object's ``_trace_snapshot()``; a new one is taken only when the
object says its state changed since the last one, so a search that visits twenty nodes shares one
snapshot.

Recording is off unless asked for, so bulk use stays fast::

    with recording(m) as tr:
        vm_map_findspace(m, 0x1000, 0x2000)
    for step in tr.steps: print(step.kind, step.text)

The format is public and versioned (`TRACE_FORMAT_VERSION`); `Trace.to_dict()` gives the JSON
form documented in docs/trace-format.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "STEP_KINDS",
    "Step",
    "TRACE_FORMAT_VERSION",
    "Trace",
    "Traceable",
    "recording",
]

TRACE_FORMAT_VERSION = 1

#: Every step kind, with what its ``data`` holds. Subsystems add theirs here so the list is the
#: documentation.
STEP_KINDS: dict[str, str] = {
    # vm_map core
    "call": "a public function was entered: name, args",
    "return": "a public function returned: name, rv (KERN code or value), value",
    "lock": "lock state changed: op, holder, mode, timestamp",
    "timestamp": "map.timestamp changed: old, new",
    "splay_visit": "splay descent visited a node: node (entry id), start, end, max_free",
    "rotate": "a splay rotation: node, direction ('left'/'right')",
    "splay_done": "splay finished: root (entry id)",
    "gap_check": "findspace tested a gap: start, end, size, length, fits (bool)",
    "prune": "findspace skipped a subtree whose max_free < length: node, max_free",
    "clip": "an entry was split: entry, at, side ('start'/'end'), new_entry",
    "link": "an entry was linked into the map: entry, start, end",
    "unlink": "an entry was removed from the map: entry, start, end",
    "merge": "two entries merged: survivor, absorbed, start, end",
    "extend": "an entry grew in place (vm_map_insert extend path): entry, old_end, new_end",
    "modify": "an entry's fields changed: entry, field, old, new",
    "error": "an operation failed: rv, reason",
    "note": "free-form explanation with no state change",
    # x86 MMU / TLB (vmlab/core/x86/mmu.py); snapshot = ((entry_pa, raw), ...) last touched
    "walk_level": "the walk read one entry: level, table_pa, index, entry_pa, raw",
    "walk_fault": "the access faulted: va, vector (14 #PF / 13 #GP), error_code, cr2, reason",
    "walk_done": "the walk succeeded: va, pa, page_size, set_bits (entry_pa list where A/D set)",
    "tlb_hit": "the TLB answered: va, pa (None if the cached rights refused), page_size, ok",
    "tlb_miss": "the TLB had no usable entry, a walk follows: va, reason",
    "tlb_flush": "TLB entries dropped: reason ('invlpg', 'cr3', 'cr4', 'all'), va, dropped",
    # process layer (vm_fault.py, vm_stack.py, vmspace.py, vm_sync.py, pmap.py); recorded on a
    # Vmspace, state = ProcessSnapshot (docs/process.md)
    "fault": "vm_fault entered: va, fault_type (VM_PROT bits), fault_flags",
    "lookup": "vm_map_lookup result: va, rv, entry, object, pindex, prot, wired",
    "object_alloc": "an entry got its first (anonymous) object: entry, object, size (pages)",
    "shadow": "NEEDS_COPY resolved: entry, old_object, new_object (same id: not shadowed)",
    "chain_walk": "the fault looks in a backing object: object, pindex",
    "zero_fill": "a zero-filled page was put in the first object: object, pindex, pa",
    "pagein": "vnode pager read: object, pindex, behind, ahead, count, file",
    "cow_copy": "copy-on-write: from_object, from_pindex, to_object, to_pindex, old_pa, new_pa, "
    "rename (page moved, not copied)",
    "fault_path": "which way the fault went: path ('soft_fast'), object, pindex, pa",
    "fault_done": "vm_fault returned: va, rv, faultcount",
    "prefault_candidate": "one vm_fault_prefault candidate: i, va, addra, verdict ('mapped', "
    "'outside', 'already_mapped', 'no_ptp', 'invalid', 'stop'), pindex, object, pa",
    "pmap_enter": "a PTE was made: va, pa, prot (granted), wired, quick (pmap_enter_quick)",
    "pmap_remove": "PTEs were removed: sva, eva, count",
    "pmap_protect": "PTE rights were reduced: sva, eva, prot, count",
    "grow": "vm_map_growstack: addr, rv, grow (bytes), asked, start, end, guard, procstack, "
    "ssize (pages) — or rv and reason on failure",
    "fork_entry": "vmspace_fork handled one parent entry: entry, child_entry (-1 = hole), "
    "inheritance, start, end, object, mode ('cow'/'none'/'wired') or shadowed",
    "sync": "vm_map_sync: start, end, syncio, invalidate, rv",
    "madvise": "vm_map_madvise: start, end, behav",
    "wire": "vm_map_wire / vm_map_unwire: start, end, user, rv",
}


class Traceable(Protocol):
    """What an object must offer to be recorded."""

    _trace: Trace | None

    def _trace_snapshot(self) -> Any: ...


@dataclass(frozen=True)
class Step:
    """One recorded step. ``state`` indexes ``Trace.states`` (the state after this step)."""

    kind: str
    text: str
    data: Mapping[str, Any]
    state: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "data": dict(self.data), "state": self.state}


@dataclass
class Trace:
    """An append-only list of steps plus the snapshots they point to."""

    steps: list[Step] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)
    _dirty: set[int] = field(default_factory=set, repr=False)

    def record(self, obj: Traceable, kind: str, text: str, **data: Any) -> Step:
        """Append a step; snapshot ``obj`` if it changed since its last snapshot."""
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown trace step kind {kind!r}")
        key = id(obj)
        if not self.states or key in self._dirty:
            self.states.append(obj._trace_snapshot())
            self._dirty.discard(key)
        step = Step(kind, text, data, len(self.states) - 1)
        self.steps.append(step)
        return step

    def mark_dirty(self, obj: Any) -> None:
        """Tell the trace that ``obj``'s state changed; the next step takes a new snapshot."""
        self._dirty.add(id(obj))

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def state_at(self, i: int) -> Any:
        """The snapshot after step ``i``."""
        return self.states[self.steps[i].state]

    def kinds(self) -> list[str]:
        return [s.kind for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form. Snapshots serialise through their own ``to_dict()``."""
        return {
            "format": "vmlab-trace",
            "version": TRACE_FORMAT_VERSION,
            "steps": [s.to_dict() for s in self.steps],
            "states": [s.to_dict() if hasattr(s, "to_dict") else s for s in self.states],
        }


@contextmanager
def recording(*objs: Traceable, trace: Trace | None = None) -> Iterator[Trace]:
    """Record every step the given objects take inside the ``with`` block into one trace."""
    tr = trace if trace is not None else Trace()
    saved = [o._trace for o in objs]
    for o in objs:
        o._trace = tr
        tr.mark_dirty(o)
    try:
        yield tr
    finally:
        for o, s in zip(objs, saved, strict=True):
            o._trace = s

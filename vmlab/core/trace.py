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
    "state_from_dict",
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
    "map_field": "a field of struct vm_map changed: field ('anon_loc', 'flags'), old, new",
    # scenario replay (vmlab/io/scenario.py; docs/scenarios.md)
    "scenario_op": "a scenario step starts: index, proc, op, args (evaluated ints/strings)",
    "scenario_result": "a scenario step ended: index, proc, op, rv (errno, KERN code, 'ok' "
    "or a signal name), value, expect, ok (expectation met), saved",
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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        """Inverse of `to_dict` (JSON lists stay lists: tuples do not survive JSON)."""
        return cls(str(d["kind"]), str(d["text"]), dict(d["data"]), int(d["state"]))


@dataclass
class Trace:
    """An append-only list of steps plus the snapshots they point to."""

    steps: list[Step] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)
    #: optional JSON-ready facts about the whole trace (a replayed scenario's title, process
    #: names by pid); written by `to_dict` only when not empty
    meta: dict[str, Any] = field(default_factory=dict)
    _dirty: set[int] = field(default_factory=set, repr=False)
    _latest: dict[int, int] = field(default_factory=dict, repr=False)

    def record(self, obj: Traceable, kind: str, text: str, **data: Any) -> Step:
        """Append a step; snapshot ``obj`` if it changed since its last snapshot."""
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown trace step kind {kind!r}")
        key = id(obj)
        idx = self._latest.get(key)
        if idx is None or key in self._dirty:
            # Each object keeps its own latest snapshot, so a trace of several processes never
            # points a step at another object's state.
            self.states.append(obj._trace_snapshot())
            idx = self._latest[key] = len(self.states) - 1
            self._dirty.discard(key)
        step = Step(kind, text, data, idx)
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
        d = {
            "format": "vmlab-trace",
            "version": TRACE_FORMAT_VERSION,
            "steps": [s.to_dict() for s in self.steps],
            "states": [s.to_dict() if hasattr(s, "to_dict") else s for s in self.states],
        }
        if self.meta:
            d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trace:
        """Rebuild a trace from `to_dict`'s form (e.g. after ``json.load``), so that
        ``Trace.from_dict(d).to_dict() == d``. States with ``"type": "vm_map"`` become
        MapSnapshots, ``"process"`` ProcessSnapshots; any other state stays as it is.
        Raises ValueError for another format or a newer version."""
        if not isinstance(d, Mapping) or d.get("format") != "vmlab-trace":
            raise ValueError("not a vmlab trace: expected an object with "
                             '"format": "vmlab-trace"')
        version = d.get("version")
        if not isinstance(version, int) or not 1 <= version <= TRACE_FORMAT_VERSION:
            raise ValueError(f"trace format version {version!r} is not supported (this vmlab "
                             f"reads versions 1..{TRACE_FORMAT_VERSION})")
        states = [state_from_dict(s) for s in d["states"]]
        steps = [Step.from_dict(s) for s in d["steps"]]
        for i, st in enumerate(steps):
            if not 0 <= st.state < len(states):
                raise ValueError(f"steps[{i}].state = {st.state} but there are "
                                 f"{len(states)} states")
        return cls(steps=steps, states=states, meta=dict(d.get("meta") or {}))


class _Repr(str):
    """A page value read back from JSON: ``to_dict`` stores ``repr(value)``, so the decoded
    value's repr is that text again (keeps the JSON round trip exact)."""

    def __repr__(self) -> str:
        return str(self)


def state_from_dict(d: Any) -> Any:
    """Decode one entry of a trace's ``states`` list (see `Trace.from_dict`)."""
    if not isinstance(d, Mapping):
        return d
    kind = d.get("type")
    if kind == "vm_map":
        from .snapshot import MapSnapshot

        return MapSnapshot.from_dict(dict(d))
    if kind == "process":
        return _process_from_dict(d)
    return d


def _process_from_dict(d: Mapping[str, Any]) -> Any:
    import numpy as np

    from .process_snapshot import MAPPING_DTYPE, PAGE_DTYPE, ObjectSnapshot, ProcessSnapshot
    from .snapshot import MapSnapshot

    objects = {}
    for o in d["objects"]:
        pages = np.array([tuple(p[n] for n in PAGE_DTYPE.names) for p in o["pages"]],
                         dtype=PAGE_DTYPE)
        pages.setflags(write=False)
        fields = {k: o[k] for k in ("id", "type", "flags", "size", "ref_count", "shadow_count",
                                    "backing_object", "backing_object_offset", "handle")}
        objects[o["id"]] = ObjectSnapshot(
            pages=pages, values=tuple(_Repr(p["value"]) for p in o["pages"]), **fields)
    maps = np.array([tuple(m[n] for n in MAPPING_DTYPE.names) for m in d["mappings"]],
                    dtype=MAPPING_DTYPE)
    maps.setflags(write=False)
    scalars = {k: d[k] for k in ("pid", "name", "vm_ssize", "vm_tsize", "vm_dsize", "vm_taddr",
                                 "vm_daddr", "vm_maxsaddr", "vm_stacktop", "exited")}
    child = d.get("child")
    return ProcessSnapshot(map=MapSnapshot.from_dict(dict(d["map"])), objects=objects,
                           mappings=maps, child=None if child is None else
                           _process_from_dict(child), **scalars)


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

"""Frozen snapshots of a process for trace views (fork, fault and prefault animations).

A `ProcessSnapshot` holds the `MapSnapshot` of the process's map plus everything below it that
the views draw: the VM objects reachable from the entries (with their shadow chains and
resident pages) and the pmap's mappings. Steps recorded on a `Vmspace` point at these; steps the
map core records point at plain MapSnapshots (``trace.states`` holds both: tell them apart with
``isinstance`` or the ``"type"`` key of ``to_dict()``). During vmspace_fork the parent's snapshot
also carries the child's (``child``), so a fork view can draw both maps side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .snapshot import MapSnapshot

__all__ = ["MAPPING_DTYPE", "PAGE_DTYPE", "ObjectSnapshot", "ProcessSnapshot",
           "process_snapshot"]

#: One row per resident page of an object (``value`` is kept separately: any Python value).
PAGE_DTYPE = np.dtype([("pindex", np.int64), ("phys_addr", np.uint64), ("valid", bool),
                       ("dirty", bool), ("wire_count", np.int32)])
#: One row per pmap mapping; object / pindex say which page (-1 if unknown).
MAPPING_DTYPE = np.dtype([("va", np.uint64), ("pa", np.uint64), ("prot", np.uint8),
                          ("wired", bool), ("object", np.int64), ("pindex", np.int64)])


@dataclass(frozen=True)
class ObjectSnapshot:
    """One vm_object: identity, counters, its place in a shadow chain, its resident pages."""

    id: int
    type: str
    flags: int
    size: int
    ref_count: int
    shadow_count: int
    backing_object: int  # -1 for none
    backing_object_offset: int
    handle: str  # file name for vnode objects, "" otherwise
    pages: np.ndarray  # PAGE_DTYPE, pindex order
    values: tuple[Any, ...]  # page contents, same order as pages

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("id", "type", "flags", "size", "ref_count",
                                           "shadow_count", "backing_object",
                                           "backing_object_offset", "handle")}
        d["pages"] = [
            {**{n: (bool(r[n]) if n in ("valid", "dirty") else int(r[n]))
                for n in PAGE_DTYPE.names}, "value": repr(v)}
            for r, v in zip(self.pages, self.values, strict=True)
        ]
        return d


@dataclass(frozen=True)
class ProcessSnapshot:
    """A process at one instant: its map, objects (by id), pmap mappings and VM fields."""

    pid: int
    name: str
    map: MapSnapshot
    objects: dict[int, ObjectSnapshot]
    mappings: np.ndarray  # MAPPING_DTYPE, va order
    vm_ssize: int
    vm_tsize: int
    vm_dsize: int
    vm_taddr: int
    vm_daddr: int
    vm_maxsaddr: int
    vm_stacktop: int
    exited: bool
    child: ProcessSnapshot | None = None

    def chain(self, object_id: int) -> list[int]:
        """The shadow chain from ``object_id`` down to its last backing object."""
        out = []
        while object_id != -1 and object_id in self.objects:
            out.append(object_id)
            object_id = self.objects[object_id].backing_object
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "process",
            "pid": self.pid,
            "name": self.name,
            "map": self.map.to_dict(),
            "objects": [o.to_dict() for o in self.objects.values()],
            "mappings": [
                {"va": int(r["va"]), "pa": int(r["pa"]), "prot": int(r["prot"]),
                 "wired": bool(r["wired"]), "object": int(r["object"]),
                 "pindex": int(r["pindex"])} for r in self.mappings
            ],
            **{k: getattr(self, k) for k in ("vm_ssize", "vm_tsize", "vm_dsize", "vm_taddr",
                                             "vm_daddr", "vm_maxsaddr", "vm_stacktop",
                                             "exited")},
            "child": None if self.child is None else self.child.to_dict(),
        }


def _object_snapshot(o: Any) -> ObjectSnapshot:
    keys = sorted(o.memq)
    pages = np.zeros(len(keys), dtype=PAGE_DTYPE)
    vals = []
    for i, k in enumerate(keys):
        m = o.memq[k]
        pages[i] = (m.pindex, m.phys_addr, m.valid, m.dirty, m.wire_count)
        vals.append(m.value)
    pages.setflags(write=False)
    h = o.handle
    return ObjectSnapshot(
        id=o.id, type=o.type.name, flags=int(o.flags), size=int(o.size),
        ref_count=int(o.ref_count), shadow_count=int(o.shadow_count),
        backing_object=-1 if o.backing_object is None else o.backing_object.id,
        backing_object_offset=int(o.backing_object_offset),
        handle=getattr(h, "name", "") if h is not None and not hasattr(h, "memq") else "",
        pages=pages, values=tuple(vals),
    )


def process_snapshot(vm: Any, with_child: bool = True) -> ProcessSnapshot:
    """Freeze ``vm`` (a Vmspace) for a trace step."""
    objs: dict[int, ObjectSnapshot] = {}
    for e in vm.vm_map.entries():
        o = e.object
        while o is not None and o.id not in objs:
            objs[o.id] = _object_snapshot(o)
            o = o.backing_object
    pmap = vm.vm_pmap
    rows = []
    page_at = getattr(pmap, "page_at", None)
    for va, pa, prot, wired in pmap.mappings():
        m = page_at(va) if page_at is not None else None
        oid = m.object.id if m is not None and m.object is not None else -1
        rows.append((va, pa, int(prot), wired, oid, m.pindex if m is not None else -1))
    maps = np.array(rows, dtype=MAPPING_DTYPE)
    maps.setflags(write=False)
    child = vm._fork_child
    return ProcessSnapshot(
        pid=vm.pid, name=vm.name, map=vm.vm_map._trace_snapshot(), objects=objs,
        mappings=maps, vm_ssize=vm.vm_ssize, vm_tsize=vm.vm_tsize, vm_dsize=vm.vm_dsize,
        vm_taddr=vm.vm_taddr, vm_daddr=vm.vm_daddr, vm_maxsaddr=vm.vm_maxsaddr,
        vm_stacktop=vm.vm_stacktop, exited=vm.exited,
        child=process_snapshot(child, False) if with_child and child is not None else None,
    )

"""VM objects: the backing store an entry maps (sys/vm/vm_object.c, vm_object.h).

The CORE helper writes this minimal version: allocation, reference counting and the fields the
map code reads. The process layer extends it (pages, pagers, shadowing, collapse).

FreeBSD 14 has no OBJT_DEFAULT: anonymous memory is an OBJT_SWAP object with OBJ_ANON set, made
only by ``vm_object_allocate_anon``; ``vm_object_allocate(OBJT_SWAP, n)`` makes a *named* swap
object (e.g. for shm) without OBJ_ANON (vm_object.c: vm_object_allocate, vm_object_allocate_anon).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from .constants import OBJT

__all__ = [
    "OBJ_ANON",
    "OBJ_COLORED",
    "OBJ_DEAD",
    "OBJ_FICTITIOUS",
    "OBJ_ONEMAPPING",
    "OBJ_SWAP",
    "OBJ_UNMANAGED",
    "VmObject",
    "vm_object_allocate",
    "vm_object_allocate_anon",
    "vm_object_deallocate",
    "vm_object_reference",
]

# Object flags (sys/vm/vm_object.h, FreeBSD 14).
OBJ_FICTITIOUS = 0x0001
OBJ_UNMANAGED = 0x0002
OBJ_DEAD = 0x0008
OBJ_ANON = 0x0010
OBJ_SWAP = 0x0200
OBJ_COLORED = 0x1000
OBJ_ONEMAPPING = 0x2000

_next_object_id = itertools.count(1)


class VmObject:
    """struct vm_object, reduced to what the map layer needs.

    ``size`` is in pages. ``ref_count`` counts map entries and other holders.
    """

    def __init__(self, type: OBJT, size: int, flags: int = 0) -> None:
        self.id: int = next(_next_object_id)
        self.type: OBJT = OBJT(type)
        self.size: int = int(size)
        self.ref_count: int = 1
        self.flags: int = flags
        self.backing_object: VmObject | None = None
        self.backing_object_offset: int = 0
        self.shadow_count: int = 0
        self.charge: int = 0
        self.cred: Any = None
        self.handle: Any = None

    def resident_pages(self, pindex: int, npages: int) -> Iterator[Any]:
        """Valid resident pages with pindex in [pindex, pindex + npages), in pindex order.

        The process layer provides pages; a bare object has none.
        """
        return iter(())

    def __repr__(self) -> str:
        anon = " anon" if self.flags & OBJ_ANON else ""
        return f"<VmObject #{self.id} {self.type.name}{anon} size={self.size} ref={self.ref_count}>"


def vm_object_allocate(type: OBJT, size: int) -> VmObject:
    """vm_object_allocate(9): a new object of ``type`` with ``size`` pages, one reference.

    As in FreeBSD 14 this never makes an anonymous object (no OBJ_ANON); use
    `vm_object_allocate_anon`. OBJT.DEFAULT is vmlab's pre-14 teaching value (flags 0).
    """
    type = OBJT(type)
    if size < 0:
        raise ValueError(f"vm_object_allocate: negative size {size}")
    if type in (OBJT.DEAD, OBJT.INVALID):
        raise ValueError(f"vm_object_allocate: can't create {type.name} objects")
    flags = {
        OBJT.SWAP: OBJ_COLORED | OBJ_SWAP,
        OBJT.DEVICE: OBJ_FICTITIOUS | OBJ_UNMANAGED,
        OBJT.SG: OBJ_FICTITIOUS | OBJ_UNMANAGED,
        OBJT.MGTDEVICE: OBJ_FICTITIOUS,
        OBJT.PHYS: OBJ_UNMANAGED,
    }.get(type, 0)
    return VmObject(type, size, flags)


def vm_object_allocate_anon(
    size: int,
    backing_object: VmObject | None = None,
    cred: Any = None,
    charge: int = 0,
) -> VmObject:
    """vm_object_allocate_anon (vm_object.c): an anonymous OBJT_SWAP object.

    Flags OBJ_ANON | OBJ_ONEMAPPING | OBJ_SWAP; the charge is kept only with a cred, as FreeBSD
    does. ``backing_object`` only chooses the handle here; shadowing is the process layer's.
    """
    if size < 0:
        raise ValueError(f"vm_object_allocate_anon: negative size {size}")
    obj = VmObject(OBJT.SWAP, size, OBJ_ANON | OBJ_ONEMAPPING | OBJ_SWAP)
    if backing_object is not None:
        obj.handle = (
            backing_object if not backing_object.flags & OBJ_ANON else backing_object.handle
        )
    obj.cred = cred
    obj.charge = charge if cred is not None else 0
    return obj


def vm_object_reference(obj: VmObject | None) -> None:
    """vm_object_reference(9): take one more reference (a None object is ignored)."""
    if obj is None:
        return
    if obj.flags & OBJ_DEAD:
        raise RuntimeError(f"vm_object_reference: object #{obj.id} is already dead")
    obj.ref_count += 1


def vm_object_deallocate(obj: VmObject | None) -> None:
    """vm_object_deallocate(9): drop a reference; the last one kills the object and then
    releases its reference on the backing object (the loop in vm_object.c)."""
    while obj is not None:
        if obj.ref_count <= 0:
            raise RuntimeError(f"vm_object_deallocate: object #{obj.id} has no references")
        obj.ref_count -= 1
        if obj.ref_count > 0:
            return
        obj.flags |= OBJ_DEAD
        backing = obj.backing_object
        if backing is not None:
            backing.shadow_count -= 1
        obj = backing

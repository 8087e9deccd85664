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
    `vm_object_allocate_anon`.
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


# =============================================================================================
# Process layer (PROCESS helper): resident pages, shadowing, termination.
# sys/vm/vm_object.c: vm_object_shadow, vm_object_deallocate, vm_object_terminate,
# vm_object_page_clean, vm_object_page_remove. Pages are VmPage objects (vm_page.py) kept in
# ``obj.memq`` (dict pindex -> page); ``page_arrays()`` gives numpy columns for the views.
# =============================================================================================

import numpy as _np  # noqa: E402

_core_vm_object_init = VmObject.__init__


def _vm_object_init(self: VmObject, type: OBJT, size: int, flags: int = 0) -> None:
    _core_vm_object_init(self, type, size, flags)
    self.memq: dict[int, Any] = {}
    self.resident_page_count: int = 0
    self.machine: Any = None


def _resident_pages(self: VmObject, pindex: int, npages: int) -> Iterator[Any]:
    """Valid resident pages with pindex in [pindex, pindex + npages), in pindex order (what
    vm_map_pmap_enter walks with vm_page_find_least / TAILQ_NEXT)."""
    memq = self.memq
    if npages <= len(memq):
        for pi in range(pindex, pindex + npages):
            m = memq.get(pi)
            if m is not None and m.valid:
                yield m
    else:
        for pi in sorted(p for p in memq if pindex <= p < pindex + npages):
            m = memq[pi]
            if m.valid:
                yield m


def _page_arrays(self: VmObject) -> dict[str, _np.ndarray]:
    """The resident pages as numpy columns in pindex order: pindex, phys_addr, valid, dirty,
    wire_count, and ``value`` (an object array of the page contents)."""
    pages = [self.memq[p] for p in sorted(self.memq)]
    return {
        "pindex": _np.array([m.pindex for m in pages], dtype=_np.int64),
        "phys_addr": _np.array([m.phys_addr for m in pages], dtype=_np.uint64),
        "valid": _np.array([m.valid for m in pages], dtype=bool),
        "dirty": _np.array([m.dirty for m in pages], dtype=bool),
        "wire_count": _np.array([m.wire_count for m in pages], dtype=_np.int32),
        "value": _np.array([m.value for m in pages] + [None], dtype=object)[:-1],
    }


VmObject.__init__ = _vm_object_init  # type: ignore[method-assign]
VmObject.resident_pages = _resident_pages  # type: ignore[method-assign]
VmObject.page_arrays = _page_arrays  # type: ignore[attr-defined]

__all__ += [
    "vm_object_page_clean",
    "vm_object_page_remove",
    "vm_object_shadow",
    "vm_object_terminate",
    "vnode_destroy_vobject",
]


def vm_object_shadow(
    source: VmObject | None, offset: int, length: int, cred: Any = None, shared: bool = False
) -> tuple[VmObject | None, int]:
    """vm_object_shadow (vm_object.c): put a new anonymous object in front of ``source``.

    Returns (object, offset) for the entry, as FreeBSD updates ``*object`` and ``*offset``.
    As in FreeBSD 14, nothing is created when ``source`` is anonymous and has a single
    reference (nobody else can see its pages). The entry's reference on ``source`` is handed
    to the new shadow (no new reference); ``source.shadow_count`` goes up by one.
    ``offset`` is in bytes; ``length`` in bytes. With ``shared`` (vmspace_fork of a SHARE
    entry) the shadow starts with two references and without OBJ_ONEMAPPING.
    """
    if source is not None and source.ref_count == 1 and source.flags & OBJ_ANON:
        return source, offset
    result = vm_object_allocate_anon(length >> 12, source, cred, length)
    result.backing_object = source
    result.backing_object_offset = offset
    if source is not None:
        source.shadow_count += 1
        result.machine = source.machine
    if shared:
        # Forking a shared entry: the caller's second entry references the shadow too.
        result.ref_count += 1
        result.flags &= ~OBJ_ONEMAPPING
    return result, 0


def vm_object_page_clean(obj: VmObject, start: int = 0, end: int = 0, sync: bool = True) -> bool:
    """vm_object_page_clean (vm_object.c): write the dirty valid pages with pindex in
    [start, end) (end 0 = to the end) of a vnode object back to its file, one pager transfer
    per run of consecutive dirty pages (the clustering vm_object_page_collect_flush does).
    Returns False when a run could not be written (the pager's ``fail_putpages`` or the file's
    ``fail_writes``: FreeBSD's ``eio``); the pages of that run stay dirty and the remaining runs
    are still tried, as FreeBSD's loop goes on after an error. True otherwise."""
    if obj.type != OBJT.VNODE or not obj.memq:
        return True
    from .vm_page import _machine_of

    stop = end if end else max(obj.memq) + 1
    run: list[Any] = []
    pager = _machine_of(obj).pager
    res = True
    for pi in sorted(p for p in obj.memq if start <= p < stop):
        m = obj.memq[pi]
        _sync_pmap_dirty(m)
        if m.valid and m.dirty and (not run or run[-1].pindex == pi - 1):
            run.append(m)
            continue
        if run and pager.putpages(obj, run) is False:
            res = False
        run = [m] if m.valid and m.dirty else []
    if run and pager.putpages(obj, run) is False:
        res = False
    return res


def _sync_pmap_dirty(m: Any) -> None:
    """pmap_is_modified + clear: gather the hardware modified bits into the page (what
    vm_page_test_dirty does before a write-back) and write-protect it (pmap_remove_write), so
    a later store marks it dirty again."""
    for pmap, va in list(m.pv):
        if hasattr(pmap, "is_modified") and pmap.is_modified(va):
            m.dirty = True
        pmap.protect(va, va + 4096, int(pmap.prot(va)) & ~0x2)


def vm_object_page_remove(obj: VmObject, start: int = 0, end: int = 0) -> None:
    """vm_object_page_remove (vm_object.c): unmap and free the pages in [start, end)
    (end 0 = to the end). Wired pages are kept, as FreeBSD skips them."""
    from .vm_page import vm_page_free

    stop = end if end else (max(obj.memq) + 1 if obj.memq else 0)
    for pi in sorted(p for p in obj.memq if start <= p < stop):
        m = obj.memq[pi]
        if not m.wire_count:
            vm_page_free(m)


def vm_object_terminate(obj: VmObject) -> None:
    """vm_object_terminate (vm_object.c): a dead object's pages are freed (a vnode object's
    dirty pages are written back first), and the object is marked OBJ_DEAD."""
    from .vm_page import vm_page_free

    if obj.type == OBJT.VNODE:
        vm_object_page_clean(obj)
    for pi in sorted(obj.memq):
        m = obj.memq[pi]
        m.wire_count = 0
        vm_page_free(m)
    obj.flags |= OBJ_DEAD


def vnode_destroy_vobject(f: Any) -> None:
    """vnode_destroy_vobject (vnode_pager.c): when the vnode is recycled its object (pages
    cached after the last unmap) is cleaned and freed. Refuses while mappings remain."""
    obj = f.object
    if obj is None:
        return
    if obj.ref_count:
        raise RuntimeError(f"file {f.name!r}: its object still has {obj.ref_count} references")
    vm_object_terminate(obj)
    f.object = None


def vm_object_deallocate(obj: VmObject | None) -> None:  # noqa: F811 - replaces the core's
    """vm_object_deallocate(9) (vm_object.c): drop a reference.

    - A vnode object only loses the reference: its pages stay cached with the vnode
      (vm_object_vndeallocate) until `vnode_destroy_vobject`.
    - Any other object whose last reference goes is terminated (its pages freed), then its
      reference on the backing object is released, walking down the chain.
    - vmlab does not collapse shadow chains (FreeBSD calls vm_object_collapse when an anonymous
      object is left with one reference and one shadow); chains are only freed.
    """
    while obj is not None:
        if obj.ref_count <= 0:
            raise RuntimeError(f"vm_object_deallocate: object #{obj.id} has no references")
        obj.ref_count -= 1
        if obj.ref_count > 0 or obj.type == OBJT.VNODE:
            return
        backing = obj.backing_object
        vm_object_terminate(obj)
        if backing is not None:
            backing.shadow_count -= 1
        obj = backing


__all__ += ["vm_object_sync", "vm_object_unwire"]


def vm_object_unwire(obj: VmObject, offset: int, length: int, queue: int = 0) -> None:
    """vm_object_unwire (vm_object.c): unwire the page that backs each page of [offset,
    offset + length) — the first one found walking down the shadow chain."""
    from .vm_page import vm_page_unwire

    for i in range(length >> 12):
        o, pi = obj, (offset >> 12) + i
        m = o.memq.get(pi)
        while m is None and o.backing_object is not None:
            pi += o.backing_object_offset >> 12
            o = o.backing_object
            m = o.memq.get(pi)
        if m is not None and m.wire_count > 0:
            vm_page_unwire(m)


def vm_object_sync(
    obj: VmObject | None, offset: int, size: int, syncio: bool, invalidate: bool
) -> bool:
    """vm_object_sync (vm_object.c): msync's work on one object range. It descends to the
    bottom of the shadow chain (offsets adjusted), writes back the dirty pages of a vnode
    object there (vm_object_page_clean) and, with ``invalidate``, frees that object's clean
    pages in the range (vm_object_page_remove with OBJPR_CLEANONLY; every mapping of them goes,
    and pages that failed to write stay, being dirty). Returns False if the write-back failed
    (a pager error: see vmlab.core.pager), which vm_map_sync turns into KERN_FAILURE."""
    if obj is None:
        return True
    while obj.backing_object is not None:
        offset += obj.backing_object_offset
        obj = obj.backing_object
        if obj.size < (offset + size) >> 12:
            size = (obj.size << 12) - offset
    res = True
    start, end = offset >> 12, (offset + size + 0xFFF) >> 12
    if obj.type == OBJT.VNODE and end > start:
        res = vm_object_page_clean(obj, start, end, syncio or invalidate)
        if invalidate:
            from .vm_page import vm_page_free

            for pi in sorted(p for p in obj.memq if start <= p < end):
                m = obj.memq[pi]
                if not m.dirty and not m.wire_count:
                    vm_page_free(m)
    return res

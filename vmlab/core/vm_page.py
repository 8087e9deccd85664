"""Resident pages: struct vm_page reduced to what the fault path and the pmap see.

FreeBSD counterparts: sys/vm/vm_page.c (vm_page_alloc, vm_page_lookup, vm_page_free,
vm_page_rename, vm_page_valid, vm_page_dirty, vm_page_wire, vm_page_unwire) and
sys/vm/vm_page.h (struct vm_page). Each page owns one "data" frame of the machine's
`PhysicalMemory` (``phys_addr``; frame 0 is never handed out, so a physical address of 0 always
means "no page"). The visible content of a page is modelled by ``value`` (one Python value per
page: 0 for a zero-filled page, a file's per-page content for a vnode page), not by frame bytes.

An object's resident pages live in ``object.memq`` (a dict pindex -> VmPage; FreeBSD keeps a
radix trie plus a list). ``object.page_arrays()`` gives the same data as numpy arrays for views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .x86.physmem import OutOfFrames

if TYPE_CHECKING:
    from .vm_object import VmObject

__all__ = [
    "PG_FICTITIOUS",
    "VM_ALLOC_NORMAL",
    "VM_ALLOC_ZERO",
    "VmPage",
    "pmap_remove_all",
    "vm_page_alloc",
    "vm_page_dirty",
    "vm_page_free",
    "vm_page_lookup",
    "vm_page_rename",
    "vm_page_undirty",
    "vm_page_unwire",
    "vm_page_valid",
    "vm_page_wire",
]

# vm_page.h allocation requests (only the ones the model distinguishes).
VM_ALLOC_NORMAL = 0
VM_ALLOC_ZERO = 0x0040
# m->flags
PG_FICTITIOUS = 0x0004


class VmPage:
    """struct vm_page: one resident page of ``object`` at ``pindex``.

    ``pv`` is the set of (pmap, va) pairs mapping this page (amd64's pv list), maintained by the
    pmap implementations so `pmap_remove_all` and leak checks can find every mapping.
    """

    __slots__ = (
        "dirty",
        "flags",
        "object",
        "phys_addr",
        "pindex",
        "pv",
        "referenced",
        "valid",
        "value",
        "wire_count",
    )

    def __init__(self, obj: VmObject, pindex: int, phys_addr: int) -> None:
        self.object: VmObject | None = obj
        self.pindex: int = pindex
        self.phys_addr: int = phys_addr
        self.valid: bool = False
        self.dirty: bool = False
        self.referenced: bool = False
        self.wire_count: int = 0
        self.flags: int = 0
        self.value: Any = 0
        self.pv: set[tuple[Any, int]] = set()

    def __repr__(self) -> str:
        oid = self.object.id if self.object is not None else None
        st = ("V" if self.valid else "-") + ("D" if self.dirty else "-")
        pa = self.phys_addr
        return f"<vm_page obj#{oid}[{self.pindex}] pa={pa:#x} {st} value={self.value!r}>"


def _machine_of(obj: VmObject) -> Any:
    from .machine import default_machine

    m = getattr(obj, "machine", None)
    if m is None:
        m = default_machine()
        obj.machine = m
    return m


def vm_page_alloc(obj: VmObject, pindex: int, req: int = VM_ALLOC_NORMAL) -> VmPage | None:
    """vm_page_alloc(9) (vm_page.c): a new page of ``obj`` at ``pindex``, **not yet valid**.

    Returns None when physical memory is exhausted, as FreeBSD returns NULL (the caller then
    waits or fails). Allocating a pindex that is already resident is a KASSERT in FreeBSD and a
    ValueError here. VM_ALLOC_ZERO gives a zeroed page; every fresh page holds 0 in this model.
    """
    if pindex < 0:
        raise ValueError(f"vm_page_alloc: negative pindex {pindex}")
    if pindex in obj.memq:
        raise ValueError(f"vm_page_alloc: object #{obj.id} already has a page at pindex {pindex}")
    machine = _machine_of(obj)
    m = VmPage(obj, pindex, 0)
    try:
        m.phys_addr = machine.physmem.alloc_frame("data", owner=m)
    except OutOfFrames:
        return None
    obj.memq[pindex] = m
    obj.resident_page_count += 1
    return m


def vm_page_lookup(obj: VmObject, pindex: int) -> VmPage | None:
    """vm_page_lookup(9): the resident page of ``obj`` at ``pindex``, or None."""
    return obj.memq.get(pindex)


def vm_page_valid(m: VmPage) -> None:
    """vm_page_valid (vm_page.c): mark the whole page valid."""
    m.valid = True


def vm_page_dirty(m: VmPage) -> None:
    """vm_page_dirty(9): the page's content differs from its backing store."""
    if not m.valid:
        raise ValueError(f"vm_page_dirty: {m!r} is not valid (FreeBSD asserts valid pages)")
    m.dirty = True


def vm_page_undirty(m: VmPage) -> None:
    """vm_page_undirty (vm_page.h): the page was written back."""
    m.dirty = False


def vm_page_wire(m: VmPage) -> None:
    """vm_page_wire(9)."""
    m.wire_count += 1


def vm_page_unwire(m: VmPage) -> None:
    """vm_page_unwire(9); unwiring an unwired page is a panic in FreeBSD (RuntimeError)."""
    if m.wire_count <= 0:
        raise RuntimeError(f"vm_page_unwire: {m!r} is not wired")
    m.wire_count -= 1


def pmap_remove_all(m: VmPage) -> None:
    """pmap_remove_all(9) (amd64 pmap.c): remove every mapping of ``m`` from every pmap."""
    for pmap, va in list(m.pv):
        pmap.remove(va, va + 4096)


def vm_page_free(m: VmPage) -> None:
    """vm_page_free(9): take the page out of its object and give its frame back.

    A still-mapped page would be a bug (FreeBSD asserts ``!pmap_page_is_mapped``), so its
    mappings are removed first, as vm_object_terminate's callers guarantee.
    """
    if m.wire_count:
        raise RuntimeError(f"vm_page_free: {m!r} is wired")
    pmap_remove_all(m)
    obj = m.object
    if obj is not None:
        if obj.memq.get(m.pindex) is m:
            del obj.memq[m.pindex]
            obj.resident_page_count -= 1
        machine = _machine_of(obj)
        machine.physmem.free_frame(m.phys_addr)
    m.object = None
    m.valid = False


def vm_page_rename(m: VmPage, new_object: VmObject, new_pindex: int) -> None:
    """vm_page_rename (vm_page.c): move ``m`` to ``new_object`` at ``new_pindex`` (used by the
    COW fault when the backing object has no other user: vm_fault_cow's rename case). The
    page is dirtied, as FreeBSD does, since it no longer matches any backing store."""
    if new_pindex in new_object.memq:
        raise ValueError(f"vm_page_rename: pindex {new_pindex} of #{new_object.id} is taken")
    old = m.object
    if old is not None and old.memq.get(m.pindex) is m:
        del old.memq[m.pindex]
        old.resident_page_count -= 1
    if getattr(new_object, "machine", None) is None and old is not None:
        new_object.machine = getattr(old, "machine", None)
    m.object = new_object
    m.pindex = new_pindex
    new_object.memq[new_pindex] = m
    new_object.resident_page_count += 1
    if m.valid:
        m.dirty = True

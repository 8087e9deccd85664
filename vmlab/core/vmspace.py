"""Address spaces of processes: struct vmspace, vmspace_alloc / vmspace_fork / vmspace_free,
and the per-process resource limits (sys/vm/vm_map.c: vmspace_alloc, vmspace_fork,
vm_map_copy_entry, vmspace_map_entry_forked, vmspace_exit; sys/sys/resource.h; the amd64
defaults of sys/amd64/include/vmparam.h and kern/kern_proc.c proc0 limits).

There is no separate "current process": a fault or a syscall on a vmspace acts as that
process. Process fields are plain attributes: ``vm_ssize`` / ``vm_tsize`` / ``vm_dsize`` (in
pages), ``vm_taddr``, ``vm_daddr``, ``vm_maxsaddr``, ``vm_stacktop``; ``p_textvp`` (the running
program; None makes growstack refuse as FreeBSD does for a process without one);
``stkgap_disable`` (P2_STKGAP_DISABLE); ``fd_table``.
"""

from __future__ import annotations

import itertools
from typing import Any

from .constants import (
    DFLDSIZ,
    DFLSSIZ,
    KERN,
    MAP_ENTRY,
    MAXDSIZ,
    MAXSSIZ,
    PAGE_SHIFT,
    VM_INHERIT,
    VM_MAP_FLAGS,
    VM_MAXUSER_ADDRESS_LA48,
    VM_MIN_ADDRESS,
    VM_PROT,
)
from .lock import vm_map_lock, vm_map_unlock

__all__ = [
    "RLIMIT_AS",
    "RLIMIT_DATA",
    "RLIMIT_MEMLOCK",
    "RLIMIT_STACK",
    "RLIMIT_VMEM",
    "RLIM_INFINITY",
    "Vmspace",
    "getrlimit",
    "setrlimit",
    "vmspace_alloc",
    "vmspace_fork",
    "vmspace_free",
    "vmspace_pmap",
]

# sys/sys/resource.h
RLIMIT_DATA = 2
RLIMIT_STACK = 3
RLIMIT_MEMLOCK = 6
RLIMIT_VMEM = 10
RLIMIT_AS = RLIMIT_VMEM
RLIM_INFINITY = (1 << 63) - 1
_RLIMIT_NAMES = {
    "RLIMIT_DATA": RLIMIT_DATA,
    "RLIMIT_STACK": RLIMIT_STACK,
    "RLIMIT_MEMLOCK": RLIMIT_MEMLOCK,
    "RLIMIT_VMEM": RLIMIT_VMEM,
    "RLIMIT_AS": RLIMIT_VMEM,
}

_pids = itertools.count(100)


class Vmspace:
    """struct vmspace plus the process fields the VM code reads. Build with `vmspace_alloc`."""

    def __init__(self, machine: Any, min: int, max: int) -> None:
        from .vm_map import vm_map_create

        self.machine = machine
        # pmap_pinit_type (sys/amd64/amd64/pmap.c): a map reaching above
        # VM_MAXUSER_ADDRESS_LA48 belongs to an LA57 process (exec_new_vmspace takes max from
        # the sysentvec's sv_maxuser), so its pmap gets a PML5 root and 5-level paging.
        la57 = max > VM_MAXUSER_ADDRESS_LA48
        self.vm_pmap = machine.new_pmap(la57=True) if la57 else machine.new_pmap()
        self.vm_pmap.owner = self
        self.vm_map = vm_map_create(self.vm_pmap, min, max)
        self.vm_map.vmspace = self
        self.vm_refcnt = 1
        self.vm_ssize = 0
        self.vm_tsize = 0
        self.vm_dsize = 0
        self.vm_taddr = 0
        self.vm_daddr = 0
        self.vm_maxsaddr = 0
        self.vm_stacktop = 0
        self.pid = next(_pids)
        self.name = f"proc{self.pid}"
        self.p_textvp: Any = "a.out"
        self.stkgap_disable = False
        self.exited = False
        self.fd_table: dict[int, Any] = {}
        # (soft, hard) per resource; FreeBSD amd64 defaults. MEMLOCK: proc0 gets the pageable
        # memory (here: all of the machine's memory); login.conf may lower it.
        mem = machine.physmem.size
        self.rlimits: dict[int, list[int]] = {
            RLIMIT_DATA: [DFLDSIZ, MAXDSIZ],
            RLIMIT_STACK: [DFLSSIZ, MAXSSIZ],
            RLIMIT_MEMLOCK: [mem, mem],
            RLIMIT_VMEM: [RLIM_INFINITY, RLIM_INFINITY],
        }
        self._trace_: Any = None
        self._fork_child: Vmspace | None = None

    # ---- tracing: recording a vmspace also records its map -----------------------------------
    @property
    def _trace(self) -> Any:
        return self._trace_

    @_trace.setter
    def _trace(self, tr: Any) -> None:
        self._trace_ = tr
        self.vm_map._trace = tr
        if tr is not None:
            tr.mark_dirty(self.vm_map)

    def _trace_snapshot(self) -> Any:
        from .process_snapshot import process_snapshot

        return process_snapshot(self)

    def rlimit(self, name: str) -> int:
        """lim_cur by name ("RLIMIT_VMEM", ...), as the map core asks for it."""
        return getrlimit(self, _RLIMIT_NAMES[name])

    @property
    def pmap(self) -> Any:
        return self.vm_pmap

    def __repr__(self) -> str:
        st = " exited" if self.exited else ""
        return (f"<vmspace pid {self.pid}{st}: {self.vm_map.nentries} entries, "
                f"{self.vm_pmap.resident_count} resident>")


def vmspace_pmap(vm: Vmspace) -> Any:
    """vmspace_pmap(9)."""
    return vm.vm_pmap


def getrlimit(vm: Vmspace, which: int, hard: bool = False) -> int:
    """getrlimit(2) for the modelled resources: the soft limit (or the hard one)."""
    if which not in vm.rlimits:
        raise ValueError(f"resource {which} is not modelled (use RLIMIT_DATA, RLIMIT_STACK, "
                         "RLIMIT_MEMLOCK, RLIMIT_VMEM)")
    return vm.rlimits[which][1 if hard else 0]


def setrlimit(vm: Vmspace, which: int, value: int, hard: int | None = None) -> int:
    """setrlimit(2): set the soft limit (and the hard one if given). Returns an errno:
    EINVAL (22) if soft > hard, EPERM (1) when raising the hard limit (no privilege)."""
    if which not in vm.rlimits:
        raise ValueError(f"resource {which} is not modelled")
    cur, mx = vm.rlimits[which]
    new_max = mx if hard is None else int(hard)
    value = min(int(value), RLIM_INFINITY)
    if value < 0 or new_max < 0 or value > new_max:
        return 22
    if new_max > mx:
        return 1
    vm.rlimits[which] = [value, new_max]
    return 0


def vmspace_alloc(
    min: int = VM_MIN_ADDRESS, max: int = VM_MAXUSER_ADDRESS_LA48, machine: Any = None
) -> Vmspace:
    """vmspace_alloc(9): a new address space [min, max) with an empty map and pmap, on
    ``machine`` (default: the 64 MiB default machine). ``vm.vm_map.pmap is vm.vm_pmap``."""
    from .machine import default_machine

    return Vmspace(machine if machine is not None else default_machine(), min, max)


def vmspace_free(vm: Vmspace) -> None:
    """vmspace_free / vmspace_exit: the process exits. Every mapping is removed from the pmap
    (pmap_remove_pages), every entry deleted (object references dropped, pages freed with the
    last one), the pmap released and the descriptors closed."""
    from .pmap import pmap_release, pmap_remove_pages
    from .vm_map import vm_map_max, vm_map_min, vm_map_remove

    if vm.exited:
        raise RuntimeError(f"process {vm.pid} has already exited")
    vm.vm_refcnt -= 1
    if vm.vm_refcnt > 0:
        return
    pmap_remove_pages(vm.vm_pmap)
    vm_map_remove(vm.vm_map, vm_map_min(vm.vm_map), vm_map_max(vm.vm_map))
    pmap_release(vm.vm_pmap)
    vm.fd_table.clear()
    vm.exited = True


def _rec(vm: Vmspace, kind: str, text: str, **data: Any) -> None:
    tr = vm._trace
    if tr is not None:
        tr.mark_dirty(vm)
        tr.record(vm, kind, text, **data)


def _link_clone(old_map: Any, old: int, new_map: Any) -> int:
    """``new_entry = vm_map_entry_create(); *new_entry = *old_entry`` across maps, then
    vm_map_entry_link (no merging)."""
    from .entries import _COLUMNS

    ot, nt = old_map._t, new_map._t
    new = nt.alloc()
    for name in _COLUMNS:
        getattr(nt, name)[new] = getattr(ot, name)[old]
    nt.objects[new] = ot.objects[old]
    nt.creds[new] = ot.creds[old]
    return new


def _forked(vm1: Vmspace, vm2: Vmspace, e: int) -> None:
    """vmspace_map_entry_forked: the child's size and its text/data/stack sizes."""
    t = vm2.vm_map._t
    ef = t.eflags[e]
    if ef & MAP_ENTRY.GUARD:
        return
    s, en = t.start[e], t.end[e]
    size = en - s
    vm2.vm_map.size += size
    if ef & MAP_ENTRY.GROWS_DOWN:
        vm2.vm_ssize += size >> PAGE_SHIFT
    elif vm1.vm_daddr <= s < vm1.vm_daddr + (vm1.vm_dsize << PAGE_SHIFT):
        newend = min(en, vm1.vm_daddr + (vm1.vm_dsize << PAGE_SHIFT))
        vm2.vm_dsize += (newend - s) >> PAGE_SHIFT
    elif vm1.vm_taddr <= s < vm1.vm_taddr + (vm1.vm_tsize << PAGE_SHIFT):
        newend = min(en, vm1.vm_taddr + (vm1.vm_tsize << PAGE_SHIFT))
        vm2.vm_tsize += (newend - s) >> PAGE_SHIFT


def vmspace_fork(vm1: Vmspace) -> Vmspace:
    """vmspace_fork (vm_map.c): the child's address space, entry by entry by inheritance.

    - NONE: nothing (a hole in the child).
    - SHARE: the entry gets an object if it has none; if NEEDS_COPY it is shadowed **now, in
      the parent** and NEEDS_COPY cleared (so both share the new object); the child's entry is
      a clone (USER_WIRED / IN_TRANSITION cleared, unwired) referencing the same object, and
      pmap_copy copies the parent's mappings as a hint.
    - COPY (guards with any inheritance but NONE are copied too): vm_map_copy_entry — a
      writable, not yet NEEDS_COPY source is write-protected in the parent's pmap; with an
      object both entries become COW|NEEDS_COPY on it (one more reference); without one the
      child has none and no COW flags. A wired writable source is copied eagerly instead
      (vm_fault_copy_entry). Then pmap_copy.
    - ZERO: a fresh demand-zero entry (no object) with the same range and protections.
    The child gets min/max, taddr/daddr/maxsaddr/stacktop, anon_loc, the ASLR/WXORX flags and
    sizes counted by vmspace_map_entry_forked. It shares the parent's machine.
    vmlab does not split ONEMAPPING objects (vm_object_split) or collapse chains.
    """
    from .lock import vm_map_trylock
    from .splay import entry_link
    from .vm_fault import vm_fault_copy_entry
    from .vm_map import _entry_back, vm_map_max, vm_map_min
    from .vm_object import (
        OBJ_ONEMAPPING,
        vm_object_deallocate,
        vm_object_reference,
        vm_object_shadow,
    )

    if vm1.exited:
        raise RuntimeError(f"process {vm1.pid} has exited")
    old_map = vm1.vm_map
    vm2 = Vmspace(vm1.machine, vm_map_min(old_map), vm_map_max(old_map))
    for f in ("vm_taddr", "vm_daddr", "vm_maxsaddr", "vm_stacktop", "p_textvp",
              "stkgap_disable"):
        setattr(vm2, f, getattr(vm1, f))
    vm2.rlimits = {k: list(v) for k, v in vm1.rlimits.items()}
    vm2.name = f"{vm1.name}>{vm2.pid}"
    vm2.fd_table = dict(vm1.fd_table)
    vm_map_lock(old_map)
    new_map = vm2.vm_map
    vm_map_trylock(new_map)
    vm1._fork_child = vm2
    try:
        new_map.anon_loc = old_map.anon_loc
        new_map.flags |= old_map.flags & (VM_MAP_FLAGS.ASLR | VM_MAP_FLAGS.ASLR_IGNSTART
                                          | VM_MAP_FLAGS.ASLR_STACK | VM_MAP_FLAGS.WXORX)
        ot, nt = old_map._t, new_map._t
        ppmap, cpmap = vm1.vm_pmap, vm2.vm_pmap
        for old_entry in old_map.entries():
            o = old_entry.id
            ef = ot.eflags[o]
            if ef & MAP_ENTRY.IS_SUB_MAP:
                raise RuntimeError("vm_map_fork: encountered a submap")
            inh = ot.inheritance[o]
            if ef & MAP_ENTRY.GUARD and inh != VM_INHERIT.NONE:
                inh = VM_INHERIT.COPY
            s, en = ot.start[o], ot.end[o]
            what = VM_INHERIT(inh).name
            if inh == VM_INHERIT.NONE:
                _rec(vm1, "fork_entry", f"[{s:#x}, {en:#x}) has inheritance NONE: the child "
                     "gets a hole.", entry=o, child_entry=-1, inheritance=what, start=s, end=en)
                continue
            if inh == VM_INHERIT.SHARE:
                obj = ot.objects[o]
                if obj is None:
                    _entry_back(old_map, o)
                    obj = ot.objects[o]
                    obj.machine = vm1.machine
                vm_object_reference(obj)
                shadowed = False
                if ot.eflags[o] & MAP_ENTRY.NEEDS_COPY:
                    new, off = vm_object_shadow(obj, ot.offset[o], en - s, ot.creds[o], True)
                    ot.set_object(o, new)
                    ot.offset[o] = off
                    ot.eflags[o] &= ~int(MAP_ENTRY.NEEDS_COPY)
                    ot.creds[o] = None
                    vm_object_deallocate(obj)
                    obj = new
                    shadowed = True
                else:
                    obj.flags &= ~OBJ_ONEMAPPING
                    if ot.creds[o] is not None:
                        obj.cred = ot.creds[o]
                        obj.charge = en - s
                        ot.creds[o] = None
                n = _link_clone(old_map, o, new_map)
                nt.eflags[n] &= ~int(MAP_ENTRY.USER_WIRED | MAP_ENTRY.IN_TRANSITION)
                nt.wired_count[n] = 0
                entry_link(new_map, n)
                _forked(vm1, vm2, n)
                cpmap.copy(ppmap, s, en - s, s)
                _rec(vm1, "fork_entry", f"[{s:#x}, {en:#x}) is SHARED: parent and child map "
                     f"the same object #{obj.id}"
                     f"{' (shadowed first, since it was NEEDS_COPY)' if shadowed else ''}.",
                     entry=o, child_entry=n, inheritance=what, start=s, end=en, object=obj.id,
                     shadowed=shadowed)
            elif inh == VM_INHERIT.COPY:
                n = _link_clone(old_map, o, new_map)
                nt.eflags[n] &= ~int(MAP_ENTRY.USER_WIRED | MAP_ENTRY.IN_TRANSITION
                                     | MAP_ENTRY.WRITECNT)
                nt.wired_count[n] = 0
                nt.set_object(n, None)
                nt.creds[n] = None
                entry_link(new_map, n)
                _forked(vm1, vm2, n)
                # vm_map_copy_entry write-protects the parent's pages only for a writable
                # source that is not NEEDS_COPY already (the others have no writable PTEs).
                wp = ("; the parent's pages are write-protected." if not ef & MAP_ENTRY.NEEDS_COPY
                      and ot.protection[o] & VM_PROT.WRITE else
                      " (already NEEDS_COPY: its PTEs are read-only already)."
                      if ef & MAP_ENTRY.NEEDS_COPY else " (read-only: no PTE to change).")
                mode = _copy_entry(vm1, vm2, o, n)
                if mode == "wired":
                    from .entries import VmMapEntry

                    vm_fault_copy_entry(new_map, old_map, VmMapEntry(new_map, n),
                                        VmMapEntry(old_map, o), [0])
                obj = nt.objects[n]
                _rec(vm1, "fork_entry",
                     f"[{s:#x}, {en:#x}) is COPIED: "
                     + {"cow": "both entries become COW|NEEDS_COPY on object "
                        f"#{obj.id if obj else -1}{wp}",
                        "none": "it has no object yet, so the child simply gets its own empty entry (no COW).",  # noqa: E501
                        "wired": "it is wired and writable, so its pages are copied right now."}[mode],  # noqa: E501
                     entry=o, child_entry=n, inheritance=what, start=s, end=en,
                     object=-1 if obj is None else obj.id, mode=mode)
            else:  # ZERO
                n = nt.alloc()
                nt.start[n], nt.end[n] = s, en
                nt.eflags[n] = ot.eflags[o] & ~int(
                    MAP_ENTRY.USER_WIRED | MAP_ENTRY.IN_TRANSITION | MAP_ENTRY.WRITECNT
                    | MAP_ENTRY.VN_EXEC | MAP_ENTRY.SPLIT_BOUNDARY_MASK)
                nt.protection[n] = ot.protection[o]
                nt.max_protection[n] = ot.max_protection[o]
                nt.inheritance[n] = int(VM_INHERIT.ZERO)
                nt.next_read[n] = s
                from .lock import curthread

                nt.creds[n] = curthread().td_ucred
                entry_link(new_map, n)
                _forked(vm1, vm2, n)
                _rec(vm1, "fork_entry", f"[{s:#x}, {en:#x}) has inheritance ZERO: the child "
                     "gets fresh zero-filled memory there.", entry=o, child_entry=n,
                     inheritance=what, start=s, end=en)
    finally:
        vm1._fork_child = None
        vm_map_unlock(new_map)
        vm_map_unlock(old_map)
    return vm2


def _copy_entry(vm1: Vmspace, vm2: Vmspace, o: int, n: int) -> str:
    """vm_map_copy_entry (vm_map.c): COW setup for one COPY entry. Returns "cow", "none" or
    "wired" (the caller then copies the pages with vm_fault_copy_entry)."""
    from .lock import curthread
    from .vm_object import OBJ_ONEMAPPING, vm_object_reference

    ot, nt = vm1.vm_map._t, vm2.vm_map._t
    s, en = ot.start[o], ot.end[o]
    prot = ot.protection[o]
    if ot.wired_count[o] != 0 and prot & VM_PROT.WRITE:
        return "wired"
    if not ot.eflags[o] & MAP_ENTRY.NEEDS_COPY and prot & VM_PROT.WRITE:
        vm1.vm_pmap.protect(s, en, prot & ~int(VM_PROT.WRITE))
    obj = ot.objects[o]
    size = en - s
    if obj is not None:
        vm_object_reference(obj)
        obj.flags &= ~OBJ_ONEMAPPING
        if ot.creds[o] is not None and not ot.eflags[o] & MAP_ENTRY.NEEDS_COPY:
            obj.cred = ot.creds[o]
            obj.charge = size
        nt.set_object(n, obj)
        nt.creds[n] = curthread().td_ucred
        if not ot.eflags[o] & MAP_ENTRY.NEEDS_COPY:
            ot.creds[o] = curthread().td_ucred
        cow = int(MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY)
        ot.eflags[o] |= cow
        nt.eflags[n] |= cow
        nt.offset[n] = ot.offset[o]
        mode = "cow"
    else:
        nt.set_object(n, None)
        if not ot.eflags[o] & MAP_ENTRY.GUARD:
            nt.offset[n] = 0
        if ot.creds[o] is not None:
            nt.creds[n] = curthread().td_ucred
        mode = "none"
    vm2.vm_pmap.copy(vm1.vm_pmap, s, en - s, s)
    vm1.vm_map._changed()
    return mode


_ = KERN

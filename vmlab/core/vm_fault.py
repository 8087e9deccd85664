"""Page faults: vm_map_lookup, vm_fault and the prefault clustering (vm_fault_prefault).

Sources: sys/vm/vm_map.c (vm_map_lookup, vm_map_lookup_done), sys/vm/vm_fault.c of FreeBSD
13/14 (vm_fault, vm_fault_soft_fast, vm_fault_readahead, vm_fault_getpages, vm_fault_cow,
vm_fault_can_cow_rename, vm_fault_dirty, vm_fault_prefault), sys/vm/vm_object.c
(vm_object_shadow). The vm_fault_prefault(9) man page still shows the old (pmap, addra, entry)
signature; this follows the source (fs, addra, backward, forward, obj_locked).

What vmlab leaves out: busy/sleep/retry paths (single thread), superpages (psind is always 0),
swap paging of anonymous memory (there is no page daemon), and the read-behind page
deactivation of sequential access (vm_fault_dontneed).

Helpers for lessons and tests: `vm_read(vm, va)` and `vm_write(vm, va, value)` act like a user
load/store: they go through the pmap (MMU) and take a page fault through `vm_fault` when the
mapping is missing or too weak; `VmAccessError` is the SIGSEGV/SIGBUS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .constants import (
    KERN,
    MAP_ENTRY,
    OBJT,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PFBAK,
    PFFOR,
    VM_FAULT,
    VM_PROT,
    trunc_page,
)
from .entries import prot_str
from .lock import (
    curthread,
    vm_map_lock_downgrade,
    vm_map_lock_read,
    vm_map_lock_upgrade,
    vm_map_unlock,
    vm_map_unlock_read,
)
from .pmap import PMAP_ENTER_NOSLEEP, PMAP_ENTER_WIRED
from .vm_object import (
    OBJ_ANON,
    OBJ_DEAD,
    OBJ_ONEMAPPING,
    vm_object_allocate_anon,
    vm_object_shadow,
)
from .vm_page import (
    PG_FICTITIOUS,
    VM_ALLOC_ZERO,
    pmap_remove_all,
    vm_page_alloc,
    vm_page_dirty,
    vm_page_rename,
    vm_page_valid,
    vm_page_wire,
)

if TYPE_CHECKING:
    from .vm_map import VmMap

__all__ = [
    "PrefaultCandidate",
    "VM_FAULT_READ_AHEAD_MAX",
    "VM_FAULT_READ_AHEAD_MIN",
    "VM_FAULT_READ_DEFAULT",
    "VmAccessError",
    "vm_fault",
    "vm_fault_copy_entry",
    "vm_fault_prefault",
    "vm_map_lookup",
    "vm_map_lookup_done",
    "vm_read",
    "vm_write",
]

VM_FAULT_READ_AHEAD_MIN = 7
VM_FAULT_READ_AHEAD_INIT = 15
VM_FAULT_READ_AHEAD_MAX = 255  # min(atop(maxphys) - 1, UINT8_MAX) with maxphys = 1 MiB
VM_FAULT_READ_DEFAULT = 1 + VM_FAULT_READ_AHEAD_INIT

_RWX = int(VM_PROT.ALL)
_W = int(VM_PROT.WRITE)
_COPY = int(VM_PROT.COPY)
_FAULT_LOOKUP = int(VM_PROT.FAULT_LOOKUP)
_E_GUARD = int(MAP_ENTRY.GUARD)
_E_GAPS = int(MAP_ENTRY.STACK_GAP_DN | MAP_ENTRY.STACK_GAP_UP)
_E_SUBMAP = int(MAP_ENTRY.IS_SUB_MAP)
_E_NEEDS_COPY = int(MAP_ENTRY.NEEDS_COPY)
_E_COW = int(MAP_ENTRY.COW)
_E_NOFAULT = int(MAP_ENTRY.NOFAULT)


#: Steps after which the process looks different (a new snapshot is taken for them).
_CHANGING = frozenset({"lookup", "shadow", "object_alloc", "zero_fill", "pagein", "cow_copy",
                       "fault_path", "fault_done"})


def _rec(map: VmMap, kind: str, text: str, **data: Any) -> None:
    """Record a process-layer step on the map's vmspace (or on the map for a bare map)."""
    owner = map.vmspace if map.vmspace is not None else map
    tr = owner._trace
    if tr is not None:
        if kind in _CHANGING:
            tr.mark_dirty(owner)
        tr.record(owner, kind, text, **data)


def _tracing(map: VmMap) -> bool:
    owner = map.vmspace if map.vmspace is not None else map
    return owner._trace is not None


# ------------------------------------------------------------------------------------------
# vm_map_lookup


def vm_map_lookup(
    map: VmMap, vaddr: int, fault_typea: int
) -> tuple[KERN, Any, Any, int, VM_PROT, bool]:
    """vm_map_lookup (vm_map.c): find what backs ``vaddr`` for a fault of ``fault_typea``.

    Returns ``(KERN, entry, object, pindex, prot, wired)``. On success the map is left
    **read-locked** (release it with `vm_map_lookup_done`); on every failure it is unlocked.
    In order: unmapped → KERN_INVALID_ADDRESS; a stack gap with VM_PROT_FAULT_LOOKUP set goes to
    vm_map_growstack and is looked up again if that succeeds; an access outside the entry's
    protection (or prot NONE) → KERN_PROTECTION_FAILURE; VM_PROT_COPY on an entry that can
    never be written and is not COW → KERN_PROTECTION_FAILURE; a wired entry faults with its
    whole protection; NEEDS_COPY with a write (or COPY) fault → vm_object_shadow and clear
    NEEDS_COPY (COW stays); NEEDS_COPY with a read fault → W removed from the returned prot;
    no object → a new anonymous object the size of the entry (offset 0).
    """
    from .vm_map import vm_map_lookup_entry
    from .vm_stack import _vm_map_growstack

    vaddr = int(vaddr)
    while True:  # RetryLookup
        vm_map_lock_read(map)
        while True:  # RetryLookupLocked
            found, entry = vm_map_lookup_entry(map, vaddr)
            if not found:
                vm_map_unlock_read(map)
                if _tracing(map):
                    _rec(map, "lookup", f"vm_map_lookup {vaddr:#x}: no entry maps it "
                         "(KERN_INVALID_ADDRESS)", va=vaddr, rv=int(KERN.INVALID_ADDRESS), entry=-1)
                return KERN.INVALID_ADDRESS, None, None, 0, VM_PROT.NONE, False
            t = map._t
            ef = t.eflags[entry.id]
            if ef & _E_SUBMAP:
                vm_map_unlock_read(map)
                raise NotImplementedError("vmlab models user maps only: no submaps")
            prot = t.protection[entry.id]
            if fault_typea & _FAULT_LOOKUP:
                fault_typea &= ~_FAULT_LOOKUP
                if (
                    prot == 0
                    and ef & _E_GUARD
                    and ef & _E_GAPS
                    and _vm_map_growstack(map, vaddr, entry) == KERN.SUCCESS
                ):
                    continue  # the stack grew: look the address up again
            break
        fault_type = fault_typea & _RWX
        if (fault_type & prot) != fault_type or prot == 0:
            vm_map_unlock_read(map)
            if _tracing(map):
                _rec(map, "lookup", f"vm_map_lookup {vaddr:#x}: {prot_str(fault_type)} access is "
                     f"not allowed by the entry's protection {prot_str(prot)} "
                     "(KERN_PROTECTION_FAILURE)", va=vaddr, rv=int(KERN.PROTECTION_FAILURE),
                     entry=entry.id)
            return KERN.PROTECTION_FAILURE, None, None, 0, VM_PROT.NONE, False
        if (
            fault_typea & _COPY
            and not t.max_protection[entry.id] & _W
            and not t.eflags[entry.id] & _E_COW
        ):
            vm_map_unlock_read(map)
            if _tracing(map):
                _rec(map, "lookup", f"vm_map_lookup {vaddr:#x}: a private copy was asked of a "
                     "mapping that can never be written (KERN_PROTECTION_FAILURE)",
                     va=vaddr, rv=int(KERN.PROTECTION_FAILURE), entry=entry.id)
            return KERN.PROTECTION_FAILURE, None, None, 0, VM_PROT.NONE, False
        wired = t.wired_count[entry.id] != 0
        if wired:
            fault_type = prot
        if t.eflags[entry.id] & _E_NEEDS_COPY:
            size = entry.end - entry.start
            if fault_type & _W or fault_typea & _COPY:
                _upgrade(map)
                old = entry.object
                if entry.cred is None:
                    entry.cred = curthread().td_ucred  # swap_reserve_by_cred never fails here
                new, newoff = vm_object_shadow(old, entry.offset, size, entry.cred)
                if new is not old:
                    entry.object = new
                    entry.offset = newoff
                entry.cred = None
                entry.eflags = entry.eflags & ~MAP_ENTRY.NEEDS_COPY
                # Recorded before the downgrade: vm_map_lookup shadows while it holds the map
                # exclusively (between vm_map_lock_upgrade and vm_map_lock_downgrade).
                if new is not old:
                    if _tracing(map):
                        _rec(map, "shadow", "Write fault on a NEEDS_COPY entry: new anonymous "
                             f"object #{new.id} now shadows object #{old.id}; NEEDS_COPY is "
                             "cleared, COW stays.", entry=entry.id, old_object=old.id,
                             new_object=new.id,
                             offset=new.backing_object_offset)
                else:
                    if _tracing(map):
                        _rec(map, "shadow", f"Write fault on a NEEDS_COPY entry: object #{old.id} "
                             "has no other user, so it is not shadowed; NEEDS_COPY is cleared.",
                             entry=entry.id, old_object=old.id, new_object=old.id,
                             offset=entry.offset)
                vm_map_lock_downgrade(map)
            else:
                prot &= ~_W
        if entry.object is None:
            size = entry.end - entry.start
            _upgrade(map)
            obj = vm_object_allocate_anon(size >> PAGE_SHIFT, None, entry.cred, size)
            obj.machine = _machine(map)
            entry.object = obj
            entry.offset = 0
            entry.cred = None
            # Recorded before the downgrade: vm_map_lookup allocates the object while it holds
            # the map exclusively (between vm_map_lock_upgrade and vm_map_lock_downgrade).
            if _tracing(map):
                _rec(map, "object_alloc", f"First touch of entry #{entry.id}: it gets anonymous "
                     f"object #{obj.id} ({obj.size} pages).", entry=entry.id, object=obj.id,
                     size=obj.size)
            vm_map_lock_downgrade(map)
        eid = entry.id
        pindex = ((vaddr - t.start[eid]) + t.offset[eid]) >> PAGE_SHIFT
        obj = t.objects[eid]
        if _tracing(map):
            _rec(map, "lookup", f"vm_map_lookup {vaddr:#x}: entry #{entry.id}, object #{obj.id} "
                 f"pindex {pindex}, prot {prot_str(prot)}{', wired' if wired else ''}",
                 va=vaddr, rv=0, entry=entry.id, object=obj.id, pindex=pindex, prot=prot,
                 wired=wired)
        return KERN.SUCCESS, entry, obj, pindex, prot, wired


def _upgrade(map: VmMap) -> None:
    """vm_map_lock_upgrade, or LockWouldBlock: with other readers FreeBSD would drop the lock,
    sleep and retry; single-threaded vmlab cannot wait for them (the map is left unlocked)."""
    if vm_map_lock_upgrade(map):
        from .lock import LockWouldBlock

        raise LockWouldBlock("vm_map_lookup: the read lock cannot be upgraded while other "
                             "threads share it; the faulting thread would sleep")


def vm_map_lookup_done(map: VmMap, entry: Any) -> None:
    """vm_map_lookup_done (vm_map.c): release the read lock vm_map_lookup left."""
    vm_map_unlock_read(map)


def _adopt(obj: Any, machine: Any) -> None:
    """Objects the map core creates (clips, entry backing) do not know their machine yet: the
    first fault on them binds the chain to the faulting process's machine."""
    while obj is not None and obj.machine is None:
        obj.machine = machine
        obj = obj.backing_object


def _machine(map: VmMap) -> Any:
    from .machine import default_machine

    vm = map.vmspace
    return vm.machine if vm is not None else default_machine()


# ------------------------------------------------------------------------------------------
# vm_fault_prefault


class PrefaultCandidate(NamedTuple):
    """One candidate address of vm_fault_prefault and what happened to it.

    ``verdict``: "mapped" (pmap_enter_quick, read-only), "outside" (beyond the window or the
    entry), "already_mapped" / "no_ptp" (pmap_is_prefaultable said no), "invalid" (resident but
    not fully valid, or fictitious), "stop" (resident nowhere in the chain: the loop ends here).
    """

    i: int
    va: int
    verdict: str
    pindex: int = -1
    object: int = -1
    pa: int = 0

    def to_dict(self) -> dict[str, int | str]:
        return {"i": self.i, "va": self.va, "verdict": self.verdict, "pindex": self.pindex,
                "object": self.object, "pa": self.pa}


_VERDICT_TEXT = {
    "mapped": "entered read-only with pmap_enter_quick",
    "outside": "outside the prefault window or the entry: skipped",
    "already_mapped": "already mapped: skipped",
    "no_ptp": "no page-table page covers it: skipped",
    "invalid": "resident but not valid: skipped",
    "stop": "resident nowhere in the shadow chain: the prefault loop stops",
}


def _descend(obj: Any) -> bool:
    """Prefault may look in the backing object only through anonymous objects (FreeBSD 13's
    ``lobject->type == OBJT_DEFAULT``; FreeBSD 14 anonymous objects are OBJT_SWAP|OBJ_ANON)."""
    return bool(obj.flags & OBJ_ANON)


def vm_fault_prefault(
    map: VmMap,
    addra: int,
    backward: int = PFBAK,
    forward: int = PFFOR,
    entry: Any = None,
) -> list[PrefaultCandidate]:
    """vm_fault_prefault (vm_fault.c, static in FreeBSD): map resident neighbours of ``addra``.

    Candidates spiral outwards: addra − 1 page, + 1, − 2, + 2, … for
    ``2 * max(backward, forward)`` steps. A candidate above addra + forward pages or below the
    window start (max(entry.start, addra − backward pages)), or at/after entry.end, is skipped;
    so is one `pmap_is_prefaultable` refuses (already mapped / no page-table page). Otherwise
    the page is looked up in the entry's object, descending the shadow chain only through
    anonymous objects: **not found → the whole loop stops**; found, valid and not fictitious →
    ``pmap_enter_quick(pmap, addr, m, entry.protection)``, which never grants write.

    Returns every examined candidate with its verdict (also recorded as "prefault_candidate"
    steps). ``entry`` defaults to the entry containing ``addra``; the map is read-locked for the
    call unless the current thread already holds its lock. Nothing happens for a map without a
    process (FreeBSD: the pmap must be the current process's).
    """
    from .vm_map import vm_map_lookup_entry

    pmap = map.pmap
    if pmap is None or map.vmspace is None:
        return []
    addra = trunc_page(int(addra))
    locked_here = not map.lock.held_by(curthread().name)
    if locked_here:
        vm_map_lock_read(map)
    try:
        if entry is None:
            found, entry = vm_map_lookup_entry(map, addra)
            if not found:
                return []
        obj0 = entry.object
        if obj0 is None:
            return []
        e_start, e_end, e_off = entry.start, entry.end, entry.offset
        eprot = int(entry.protection)
        starta = e_start if addra < backward * PAGE_SIZE else max(addra - backward * PAGE_SIZE,
                                                                  e_start)
        tracing = _tracing(map)
        verdict_of = getattr(pmap, "prefault_verdict", None)
        out: list[PrefaultCandidate] = []
        for i in range(2 * max(backward, forward)):
            addr = addra + ((i >> 1) + 1) * (-PAGE_SIZE if i & 1 == 0 else PAGE_SIZE)
            addr_eff = 0 if addr > addra + forward * PAGE_SIZE else addr
            if addr_eff < starta or addr_eff >= e_end:
                c = PrefaultCandidate(i, addr, "outside")
            elif not pmap.is_prefaultable(addr):
                why = verdict_of(addr) if verdict_of is not None else "mapped"
                c = PrefaultCandidate(i, addr, "no_ptp" if why == "no_ptp" else "already_mapped")
            else:
                pindex = ((addr - e_start) + e_off) >> PAGE_SHIFT
                lobject = obj0
                m = lobject.memq.get(pindex)
                while m is None and _descend(lobject) and lobject.backing_object is not None:
                    pindex += lobject.backing_object_offset >> PAGE_SHIFT
                    lobject = lobject.backing_object
                    m = lobject.memq.get(pindex)
                if m is None:
                    c = PrefaultCandidate(i, addr, "stop", pindex, lobject.id)
                elif m.valid and not m.flags & PG_FICTITIOUS:
                    pmap.enter_quick(addr, m, eprot)
                    c = PrefaultCandidate(i, addr, "mapped", pindex, lobject.id, m.phys_addr)
                else:
                    c = PrefaultCandidate(i, addr, "invalid", pindex, lobject.id)
            out.append(c)
            if tracing:
                _rec(map, "prefault_candidate",
                     f"prefault candidate {i} at {addr:#x} ({'+' if addr > addra else '-'}"
                     f"{abs(addr - addra) >> PAGE_SHIFT}): {_VERDICT_TEXT[c.verdict]}",
                     **c.to_dict(), addra=addra)
            if c.verdict == "stop":
                break
        return out
    finally:
        if locked_here:
            vm_map_unlock_read(map)


# ------------------------------------------------------------------------------------------
# vm_fault


def _readahead(entry: Any, vaddr: int) -> int:
    """vm_fault_readahead: the sequential read-ahead count, updating entry.read_ahead."""
    era = entry.read_ahead
    behavior = entry.eflags & MAP_ENTRY.BEHAV_MASK
    if behavior == MAP_ENTRY.BEHAV_RANDOM:
        nera = 0
    elif behavior == MAP_ENTRY.BEHAV_SEQUENTIAL:
        nera = VM_FAULT_READ_AHEAD_MAX
    elif vaddr == entry.next_read:
        nera = VM_FAULT_READ_AHEAD_MIN
        if era > 0:
            nera = min(nera + era + 1, VM_FAULT_READ_AHEAD_MAX)
    else:
        nera = 0
    if era != nera:
        entry.read_ahead = nera
    return nera


def _getpages(map: VmMap, entry: Any, obj: Any, pindex: int, vaddr: int) -> tuple[Any, int, int]:
    """vm_fault_getpages + vnode_pager_getpages: read the page and a cluster around it.

    Sequential faults read ``nera`` pages ahead; others read an aligned cluster of
    VM_FAULT_READ_DEFAULT (16) pages (behind = pindex % 16, ahead = 15 − that), clipped to the
    entry, to the object, and by pages already resident. Returns (page, behind, ahead) with
    the counts actually read."""
    nera = _readahead(entry, vaddr)
    behavior = entry.eflags & MAP_ENTRY.BEHAV_MASK
    e_start, e_end = entry.start, entry.end
    if behavior == MAP_ENTRY.BEHAV_RANDOM:
        behind = ahead = 0
    else:
        if nera > 0:
            behind, ahead = 0, nera
        else:
            cluster_offset = pindex % VM_FAULT_READ_DEFAULT
            behind = min(cluster_offset, (vaddr - e_start) >> PAGE_SHIFT)
            ahead = VM_FAULT_READ_DEFAULT - 1 - cluster_offset
        ahead = min(ahead, ((e_end - vaddr) >> PAGE_SHIFT) - 1)
    # The pager trims the request at resident pages and at the end of the object.
    memq = obj.memq
    rb = 0
    while rb < behind and pindex - rb - 1 >= 0 and (pindex - rb - 1) not in memq:
        rb += 1
    ra = 0
    while ra < ahead and pindex + ra + 1 < obj.size and (pindex + ra + 1) not in memq:
        ra += 1
    pages = []
    for pi in range(pindex - rb, pindex + ra + 1):
        m = vm_page_alloc(obj, pi)
        if m is None:
            for p in pages:
                from .vm_page import vm_page_free

                vm_page_free(p)
            return None, 0, 0
        pages.append(m)
    _machine(map).pager.getpages(obj, pages, pindex)
    if _tracing(map):
        _rec(map, "pagein", f"Page-in from {obj.handle.name!r}: pages {pindex - rb}..{pindex + ra} "
             f"of object #{obj.id} ({rb} behind, {ra} ahead of pindex {pindex}).",
             object=obj.id, pindex=pindex, behind=rb, ahead=ra, count=rb + ra + 1,
             file=obj.handle.name)
    return memq[pindex], rb, ra


def _can_cow_rename(obj: Any, first_object: Any) -> bool:
    """vm_fault_can_cow_rename: the backing object has no other user and nothing else can
    find it, and it is the first object's direct backing object."""
    return (
        obj.shadow_count == 1
        and obj.ref_count == 1
        and obj.handle is None
        and bool(obj.flags & OBJ_ANON)
        and first_object.backing_object is obj
    )


def vm_fault(map: VmMap, vaddr: int, fault_type: int, fault_flags: int = VM_FAULT.NORMAL) -> KERN:
    """vm_fault(9) (vm_fault.c): resolve a fault on ``vaddr`` of ``fault_type``.

    1. `vm_map_lookup` (with VM_PROT_FAULT_LOOKUP, so stack gaps grow the stack); its
       failure code is returned as is.
    2. Soft fast path (vm_fault_soft_fast): a valid page in the first object → pmap_enter, then
       prefault PFBAK/PFFOR (unless wired).
    3. Otherwise walk the shadow chain: a valid page found → faultcount 0; a vnode object →
       page-in with read-behind/ahead (faultcount = pages read; beyond the object's end →
       KERN_OUT_OF_BOUNDS); the end of the chain → zero-fill a page in the first object
       (faultcount 1).
    4. A page found below the first object: a write (or COPY) fault copies it into the first
       object (or, when the backing object has no other user, moves it: vm_fault_cow's rename),
       faultcount becomes 1 if it was 0 (a soft COW copy); a copy into a first object that is
       not OBJ_ONEMAPPING removes the old page from every pmap (pmap_remove_all); a read
       fault maps the backing page without W.
    5. ``pmap_enter(pmap, vaddr, m, prot, fault_type | wired)``; a write dirties the page;
       VM_FAULT_WIRE wires it. After a hard fault ``entry.next_read`` = vaddr + ahead + 1 page.
    6. Prefault unless faultcount == 1, VM_FAULT_WIRE, or a wired entry: with the read
       behind/ahead counts after a page-in, PFBAK/PFFOR after a resident hit.
    """
    vaddr = trunc_page(int(vaddr))
    fault_type = int(fault_type)
    fault_flags = int(fault_flags)
    if _tracing(map):
        _rec(map, "fault", f"Page fault: {prot_str(fault_type & _RWX)} access at {vaddr:#x}",
             va=vaddr, fault_type=fault_type, fault_flags=fault_flags)
    rv, entry, first_object, first_pindex, prot, wired = vm_map_lookup(
        map, vaddr, fault_type | int(VM_PROT.FAULT_LOOKUP)
    )
    if rv != KERN.SUCCESS:
        if _tracing(map):
            _rec(map, "fault_done", f"The fault fails: {rv.name}", va=vaddr, rv=int(rv),
                 faultcount=0)
        return rv
    try:
        if map._t.eflags[entry.id] & _E_NOFAULT:
            raise RuntimeError(f"vm_fault: fault on nofault entry, addr: {vaddr:#x}")
        if wired:
            fault_type = prot | (fault_type & _COPY)
        pmap = map.pmap
        if first_object.machine is None:
            _adopt(first_object, _machine(map))
        wflag = PMAP_ENTER_WIRED if wired else 0

        m = first_object.memq.get(first_pindex)
        if (
            m is not None
            and m.valid
            and not fault_flags & (VM_FAULT.WIRE | VM_FAULT.DIRTY)
            and not first_object.flags & OBJ_DEAD
        ):
            # vm_fault_soft_fast
            if fault_type & _W:
                vm_page_dirty(m)
            pmap.enter(vaddr, m, prot, (fault_type & _RWX) | PMAP_ENTER_NOSLEEP | wflag, 0)
            if _tracing(map):
                _rec(map, "fault_path", f"Soft fault: page {first_pindex} of object "
                     f"#{first_object.id} is resident; it is just mapped.", path="soft_fast",
                     object=first_object.id, pindex=first_pindex, pa=m.phys_addr)
            if not wired:
                vm_fault_prefault(map, vaddr, PFBAK, PFFOR, entry)
            if _tracing(map):
                _rec(map, "fault_done", "The fault is resolved (soft).", va=vaddr, rv=0,
                     faultcount=0)
            return KERN.SUCCESS

        obj, pindex = first_object, first_pindex
        faultcount = 0
        behind = ahead = 0
        hardfault = False
        while True:
            if obj.flags & OBJ_DEAD:
                if _tracing(map):
                    _rec(map, "fault_done", "The object is dead.", va=vaddr,
                         rv=int(KERN.PROTECTION_FAILURE), faultcount=0)
                return KERN.PROTECTION_FAILURE
            m = obj.memq.get(pindex)
            if m is not None and m.valid:
                break
            if obj.type == OBJT.VNODE:
                if pindex >= obj.size:
                    if _tracing(map):
                        _rec(map, "fault_done", f"pindex {pindex} is beyond the end of the file "
                             "(SIGBUS).", va=vaddr, rv=int(KERN.OUT_OF_BOUNDS), faultcount=0)
                    return KERN.OUT_OF_BOUNDS
                m, behind, ahead = _getpages(map, entry, obj, pindex, vaddr)
                if m is None:
                    return KERN.RESOURCE_SHORTAGE
                faultcount = behind + ahead + 1
                hardfault = True
                break
            if obj.backing_object is None:
                # vm_fault_zerofill: a new zeroed page in the first object.
                m = first_object.memq.get(first_pindex)
                if m is None:
                    m = vm_page_alloc(first_object, first_pindex, VM_ALLOC_ZERO)
                    if m is None:
                        if _tracing(map):
                            _rec(map, "fault_done", "No free physical page.", va=vaddr,
                                 rv=int(KERN.RESOURCE_SHORTAGE), faultcount=0)
                        return KERN.RESOURCE_SHORTAGE
                m.value = 0
                vm_page_valid(m)
                obj, pindex = first_object, first_pindex
                faultcount = 1
                if _tracing(map):
                    _rec(map, "zero_fill", f"Nothing backs pindex {first_pindex}: a zero-filled "
                         f"page (pa {m.phys_addr:#x}) is put in object #{first_object.id}.",
                         object=first_object.id, pindex=first_pindex, pa=m.phys_addr)
                break
            pindex += obj.backing_object_offset >> PAGE_SHIFT
            obj = obj.backing_object
            if _tracing(map):
                _rec(map, "chain_walk", f"Not in this object: look in backing object #{obj.id} at "
                     f"pindex {pindex}.", object=obj.id, pindex=pindex)

        if obj is not first_object:
            if fault_type & (_W | int(VM_PROT.COPY)):
                old = m
                if _can_cow_rename(obj, first_object):
                    vm_page_rename(m, first_object, first_pindex)
                    renamed = True
                else:
                    new = vm_page_alloc(first_object, first_pindex)
                    if new is None:
                        return KERN.RESOURCE_SHORTAGE
                    new.value = m.value
                    vm_page_valid(new)
                    m = new
                    renamed = False
                    # vm_fault_cow: a shadow shared read/write between address spaces (a SHARE
                    # entry over a COW chain) must not leave others on the old page.
                    if not first_object.flags & OBJ_ONEMAPPING:
                        pmap_remove_all(old)
                if _tracing(map):
                    _rec(map, "cow_copy",
                         (f"Copy-on-write: page {pindex} of object #{obj.id} is moved into "
                          f"object #{first_object.id} (nobody else uses it)." if renamed else
                          f"Copy-on-write: page {pindex} of object #{obj.id} (pa "
                          f"{old.phys_addr:#x}) is copied to a new page (pa {m.phys_addr:#x}) of "
                          f"object #{first_object.id}; other mappings keep the old one."),
                         from_object=obj.id, from_pindex=pindex, to_object=first_object.id,
                         to_pindex=first_pindex, old_pa=old.phys_addr, new_pa=m.phys_addr,
                         rename=renamed)
                obj = first_object
                if faultcount == 0:
                    faultcount = 1
            else:
                prot &= ~_W
        # vm_fault_dirty
        if (fault_type & _W and not fault_flags & VM_FAULT.WIRE) or fault_flags & VM_FAULT.DIRTY:
            vm_page_dirty(m)
        pmap.enter(vaddr, m, prot, (fault_type & _RWX & prot) | PMAP_ENTER_NOSLEEP | wflag, 0)
        if fault_flags & VM_FAULT.WIRE:
            vm_page_wire(m)
        if hardfault:
            entry.next_read = vaddr + (ahead << PAGE_SHIFT) + PAGE_SIZE
        if faultcount != 1 and not fault_flags & VM_FAULT.WIRE and not wired:
            if faultcount > 0:
                vm_fault_prefault(map, vaddr, behind, ahead, entry)
            else:
                vm_fault_prefault(map, vaddr, PFBAK, PFFOR, entry)
        if _tracing(map):
            _rec(map, "fault_done", f"The fault is resolved (faultcount {faultcount}"
                 f"{', no prefault' if faultcount == 1 else ''}).", va=vaddr, rv=0,
                 faultcount=faultcount)
        return KERN.SUCCESS
    finally:
        if map.lock.held_by(curthread().name):
            vm_map_lookup_done(map, entry)


# ------------------------------------------------------------------------------------------
# vm_fault_copy_entry


def vm_fault_copy_entry(
    dst_map: VmMap, src_map: VmMap, dst_entry: Any, src_entry: Any, fork_charge: Any
) -> None:
    """vm_fault_copy_entry (vm_fault.c): give ``dst_entry`` a private copy of every page of
    the wired ``src_entry``. With src_entry == dst_entry (an upgrade: a user-wired COW entry
    gains write access in vm_map_protect) the pages move into the entry's own object (a new
    anonymous one if it was NEEDS_COPY) and are mapped writable and wired, and COW|NEEDS_COPY
    are cleared; at fork the child's entry gets a new anonymous object whose pages are copies,
    entered with the entry's protection but a read access (so not marked modified)."""
    from .vm_object import vm_object_deallocate, vm_object_reference
    from .vm_page import vm_page_unwire

    upgrade = src_entry == dst_entry
    prot = int(dst_entry.protection)
    access = prot
    src_object = src_entry.object
    src_pindex = src_entry.offset >> PAGE_SHIFT
    if upgrade and not dst_entry.eflags & MAP_ENTRY.NEEDS_COPY:
        dst_object = src_object
        vm_object_reference(dst_object)
    else:
        size = dst_entry.end - dst_entry.start
        dst_object = vm_object_allocate_anon(size >> PAGE_SHIFT, None, None, 0)
        dst_object.machine = _machine(dst_map)
        dst_object.charge = size
    if src_object is not dst_object:
        dst_entry.object = dst_object
        dst_entry.offset = 0
        dst_entry.eflags = dst_entry.eflags & ~MAP_ENTRY.VN_EXEC
    if not upgrade:
        access &= ~_W
    for k, vaddr in enumerate(range(dst_entry.start, dst_entry.end, PAGE_SIZE)):
        obj, pindex = src_object, src_pindex + k
        src_m = obj.memq.get(pindex) if obj is not None else None
        while src_m is None and obj is not None and obj.backing_object is not None:
            pindex += obj.backing_object_offset >> PAGE_SHIFT
            obj = obj.backing_object
            src_m = obj.memq.get(pindex)
        if src_m is None:
            raise RuntimeError("vm_fault_copy_entry: page missing (the source must be wired)")
        if obj is not dst_object:
            dpi = (src_pindex if src_object is dst_object else 0) + k
            dst_m = vm_page_alloc(dst_object, dpi)
            if dst_m is None:
                raise MemoryError("vm_fault_copy_entry: out of physical pages")
            dst_m.value = src_m.value
            dst_m.valid = src_m.valid
            dst_m.dirty = src_m.valid
        else:
            dst_m = src_m
        if dst_m.valid:
            dst_map.pmap.enter(vaddr, dst_m, prot,
                               (access & _RWX) | (PMAP_ENTER_WIRED if upgrade else 0), 0)
        if upgrade and src_m is not dst_m:
            if src_m.wire_count:
                vm_page_unwire(src_m)
            vm_page_wire(dst_m)
    if upgrade:
        dst_entry.eflags = dst_entry.eflags & ~(MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY)
        vm_object_deallocate(src_object)
    _rec(dst_map, "cow_copy", f"vm_fault_copy_entry: the pages of [{dst_entry.start:#x}, "
         f"{dst_entry.end:#x}) are copied into object #{dst_object.id} now.",
         from_object=-1 if src_object is None else src_object.id, from_pindex=src_pindex,
         to_object=dst_object.id, to_pindex=0, old_pa=0, new_pa=0, rename=False)


# ------------------------------------------------------------------------------------------
# user accesses


class VmAccessError(RuntimeError):
    """A user access that the kernel refuses: SIGSEGV (or SIGBUS for KERN_OUT_OF_BOUNDS).
    ``rv`` is vm_fault's KERN code, ``va`` the address."""

    def __init__(self, rv: KERN, va: int, access: str) -> None:
        sig = "SIGBUS" if rv == KERN.OUT_OF_BOUNDS else "SIGSEGV"
        super().__init__(f"{access} at {va:#x}: vm_fault returned {KERN(rv).name} ({sig})")
        self.rv = KERN(rv)
        self.va = va
        self.signal = sig


def _mmu(pmap: Any, va: int, access: int) -> int:
    touch = getattr(pmap, "touch", None)
    if touch is not None:
        return touch(va, access)
    if access & ~int(pmap.prot(va)) & _RWX:
        return 0
    return pmap.extract(va)


def _access(vm: Any, va: int, access: int) -> Any:
    map = vm.vm_map
    pa = _mmu(map.pmap, va, access)
    if not pa:
        rv = vm_fault(map, trunc_page(va), access, VM_FAULT.NORMAL)
        if rv != KERN.SUCCESS:
            raise VmAccessError(rv, va, "write" if access & _W else "read")
        pa = _mmu(map.pmap, va, access)
        if not pa:
            raise RuntimeError(f"vm_fault succeeded but {va:#x} is still not accessible")
    m = vm.machine.physmem.frame_owner(pa & ~PAGE_MASK)
    if m is None:
        raise RuntimeError(f"no vm_page owns physical address {pa:#x}")
    return m


def vm_read(vm: Any, va: int) -> Any:
    """A user load from ``va`` of process ``vm``: returns the page's content (``value``),
    faulting it in first if the MMU refuses. Raises VmAccessError on SIGSEGV/SIGBUS."""
    return _access(vm, int(va), int(VM_PROT.READ)).value


def vm_write(vm: Any, va: int, value: Any) -> None:
    """A user store of ``value`` to the page at ``va`` (the whole page's content), faulting
    (and breaking copy-on-write) first if the MMU refuses. The MMU sets the PTE's modified bit.
    Raises VmAccessError on SIGSEGV/SIGBUS."""
    m = _access(vm, int(va), int(VM_PROT.WRITE))
    m.value = value
    if not hasattr(vm.vm_map.pmap, "touch"):
        vm_page_dirty(m)


_ = vm_map_unlock  # imported for callers that release an exclusive lock after growstack

"""msync, madvise and wiring on a map: vm_map_sync (= vm_map_clean), vm_map_madvise,
vm_map_wire / vm_map_unwire (sys/vm/vm_map.c, FreeBSD 14; vm_object_sync in vm_object.c).

vm_map_clean is the 4.4BSD/H96 name of vm_map_sync; both names are exported and behave as
FreeBSD 14's vm_map_sync.

start and end must be page-aligned, as kern_msync / kern_madvise / kern_mlock make them;
anything else raises `VmMapUnaligned` before the map is locked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import KERN, MAP, MAP_ENTRY, PAGE_SIZE, VM_FAULT, VM_PROT
from .lock import vm_map_lock, vm_map_lock_read, vm_map_unlock, vm_map_unlock_read

if TYPE_CHECKING:
    from .vm_map import VmMap

__all__ = [
    "VM_MAP_WIRE_HOLESOK",
    "VM_MAP_WIRE_NOHOLES",
    "VM_MAP_WIRE_SYSTEM",
    "VM_MAP_WIRE_USER",
    "VM_MAP_WIRE_WRITE",
    "vm_map_clean",
    "vm_map_madvise",
    "vm_map_sync",
    "vm_map_unwire",
    "vm_map_wire",
    "vm_map_wire_locked",
]

VM_MAP_WIRE_SYSTEM = 0
VM_MAP_WIRE_USER = 1
VM_MAP_WIRE_NOHOLES = 0
VM_MAP_WIRE_HOLESOK = 2
VM_MAP_WIRE_WRITE = 4

# madvise behaviours (sys/sys/mman.h)
_MADV_NORMAL, _MADV_RANDOM, _MADV_SEQUENTIAL, _MADV_WILLNEED = 0, 1, 2, 3
_MADV_DONTNEED, _MADV_FREE, _MADV_NOSYNC, _MADV_AUTOSYNC = 4, 5, 6, 7
_MADV_NOCORE, _MADV_CORE = 8, 9
_EINVAL = 22


def _tracing(map: VmMap) -> bool:
    owner = map.vmspace if map.vmspace is not None else map
    return owner._trace is not None


def _rec(map: VmMap, kind: str, text: str, **data: Any) -> None:
    owner = map.vmspace if map.vmspace is not None else map
    tr = owner._trace
    if tr is not None:
        tr.mark_dirty(owner)
        tr.record(owner, kind, text, **data)


def _range_args(fname: str, start: Any, end: Any) -> tuple[int, int]:
    """start and end as vm_offset_t values, page-aligned (VmMapUnaligned otherwise)."""
    from .vm_map import _aligned, _u64

    s = _u64("start", start)
    e = _u64("end", end)
    _aligned(fname, "start", s)
    _aligned(fname, "end", e)
    return s, e


def vm_map_sync(map: VmMap, start: int, end: int, syncio: bool, invalidate: bool) -> KERN:
    """vm_map_sync (vm_map.c): msync's work. Read-locks the map and clamps the range.

    ``start`` unmapped → KERN_INVALID_ADDRESS; start == end means the whole entry holding
    start. First pass: with ``invalidate`` a USER_WIRED entry → KERN_INVALID_ARGUMENT; a hole
    → KERN_INVALID_ADDRESS. Then ``invalidate`` removes the whole range from the pmap, and each
    piece goes to vm_object_sync (vnode dirty pages are written to the pager, recorded in
    ``machine.pager.log``); a failed write-back there (``machine.pager.fail_putpages`` or the
    file's ``fail_writes``, see vmlab.core.pager) → KERN_FAILURE, after every piece was tried,
    as FreeBSD's loop goes on (msync turns it into EIO).
    """
    from .vm_map import _range_check, vm_map_entry_succ, vm_map_lookup_entry
    from .vm_object import vm_object_deallocate, vm_object_reference, vm_object_sync

    start, end = _range_args("vm_map_sync", start, end)
    vm_map_lock_read(map)
    try:
        start, end = _range_check(map, start, end)
        found, first = vm_map_lookup_entry(map, start)
        if not found:
            return KERN.INVALID_ADDRESS
        if start == end:
            start, end = first.start, first.end
        entry = first
        while entry.start < end and not entry.is_header:
            if invalidate and entry.eflags & MAP_ENTRY.USER_WIRED:
                return KERN.INVALID_ARGUMENT
            nxt = vm_map_entry_succ(entry)
            if end > entry.end and entry.end != nxt.start:
                return KERN.INVALID_ADDRESS
            entry = nxt
        if invalidate and map.pmap is not None:
            map.pmap.remove(start, end)
        failed = False
        entry = first
        pieces = []
        while entry.start < end and not entry.is_header:
            s = max(start, entry.start)
            e = min(end, entry.end)
            pieces.append((entry.object, entry.offset + (s - entry.start), e - s))
            entry = vm_map_entry_succ(entry)
    finally:
        vm_map_unlock_read(map)
    for obj, offset, size in pieces:
        vm_object_reference(obj)
        if not vm_object_sync(obj, offset, size, syncio, invalidate):
            failed = True
        vm_object_deallocate(obj)
    if _tracing(map):
        done = ("writing dirty file pages back FAILED (pager error, EIO): they stay dirty"
                if failed else "dirty file pages written back")
        _rec(map, "sync", f"msync [{start:#x}, {end:#x}): {done}"
         f"{', pages invalidated' if invalidate else ''}.", start=start, end=end,
         syncio=bool(syncio), invalidate=bool(invalidate), rv=int(KERN.FAILURE if failed else 0))
    return KERN.FAILURE if failed else KERN.SUCCESS


vm_map_clean = vm_map_sync


def vm_map_madvise(map: VmMap, start: int, end: int, behav: int) -> int:
    """vm_map_madvise (vm_map.c): returns an errno (0, or EINVAL for an unknown ``behav``).

    NORMAL/SEQUENTIAL/RANDOM/NOSYNC/AUTOSYNC/NOCORE/CORE clip the entries and change their
    eflags (then try to merge). WILLNEED/DONTNEED/FREE act on the objects without clipping:
    WILLNEED pre-enters resident pages read-only (vm_map_pmap_enter, MAP_PREFAULT_MADVISE, not
    on wired entries); DONTNEED and FREE first call pmap_advise (PTEs lose A, and M with the
    page dirtied for DONTNEED; RW stays) when the pmap has it; DONTNEED then only ages pages
    (no visible change here); FREE marks the pages of OBJ_ANON|OBJ_ONEMAPPING, unshadowed
    objects clean (vm_object_advice_applies) so they could be reclaimed without being written
    — the page daemon that would discard them is not modelled.
    """
    from .syscalls import vm_mmap_to_errno
    from .vm_map import (
        _range_check,
        vm_map_clip_end,
        vm_map_clip_start,
        vm_map_entry_pred,
        vm_map_entry_succ,
        vm_map_lookup_entry,
        vm_map_pmap_enter,
        vm_map_try_merge_entries,
    )

    start, end = _range_args("vm_map_madvise", start, end)
    if behav in (_MADV_NORMAL, _MADV_SEQUENTIAL, _MADV_RANDOM, _MADV_NOSYNC, _MADV_AUTOSYNC,
                 _MADV_NOCORE, _MADV_CORE):
        if start == end:
            return 0
        vm_map_lock(map)
        try:
            start, end = _range_check(map, start, end)
            found, entry = vm_map_lookup_entry(map, start)
            if found:
                rv = vm_map_clip_start(map, entry, start)
                if rv != KERN.SUCCESS:
                    return vm_mmap_to_errno(rv)
                prev = vm_map_entry_pred(entry)
            else:
                prev = entry
                entry = vm_map_entry_succ(entry)
            while not entry.is_header and entry.start < end:
                rv = vm_map_clip_end(map, entry, end)
                if rv != KERN.SUCCESS:
                    return vm_mmap_to_errno(rv)
                ef = entry.eflags
                if behav in (_MADV_NORMAL, _MADV_SEQUENTIAL, _MADV_RANDOM):
                    bits = {_MADV_NORMAL: MAP_ENTRY.BEHAV_NORMAL,
                            _MADV_SEQUENTIAL: MAP_ENTRY.BEHAV_SEQUENTIAL,
                            _MADV_RANDOM: MAP_ENTRY.BEHAV_RANDOM}[behav]
                    ef = (ef & ~MAP_ENTRY.BEHAV_MASK) | bits
                elif behav == _MADV_NOSYNC:
                    ef |= MAP_ENTRY.NOSYNC
                elif behav == _MADV_AUTOSYNC:
                    ef &= ~MAP_ENTRY.NOSYNC
                elif behav == _MADV_NOCORE:
                    ef |= MAP_ENTRY.NOCOREDUMP
                else:
                    ef &= ~MAP_ENTRY.NOCOREDUMP
                entry.eflags = ef
                vm_map_try_merge_entries(map, prev, entry)
                prev = entry
                entry = vm_map_entry_succ(entry)
            vm_map_try_merge_entries(map, prev, entry)
        finally:
            vm_map_unlock(map)
        if _tracing(map):
            _rec(map, "madvise", f"madvise({behav}) on [{start:#x}, {end:#x}): entry flags set.",
             start=start, end=end, behav=behav)
        return 0
    if behav not in (_MADV_WILLNEED, _MADV_DONTNEED, _MADV_FREE):
        return _EINVAL
    if start == end:
        return 0
    vm_map_lock_read(map)
    try:
        start, end = _range_check(map, start, end)
        found, entry = vm_map_lookup_entry(map, start)
        if not found:
            entry = vm_map_entry_succ(entry)
        while not entry.is_header and entry.start < end:
            obj = entry.object
            if entry.eflags & (MAP_ENTRY.IS_SUB_MAP | MAP_ENTRY.GUARD) or (
                behav == _MADV_FREE and obj is not None and obj.backing_object is not None
            ):
                entry = vm_map_entry_succ(entry)
                continue
            pstart = entry.offset >> 12
            pend = pstart + ((entry.end - entry.start) >> 12)
            use_start, use_end = entry.start, entry.end
            if entry.start < start:
                pstart += (start - entry.start) >> 12
                use_start = start
            if entry.end > end:
                pend -= (entry.end - end) >> 12
                use_end = end
            # pmap_advise comes first (vm_map_madvise), for DONTNEED and FREE: a pmap that has
            # it (Amd64Pmap) clears A and M in the PTEs and keeps RW, as amd64's does.
            advise = getattr(map.pmap, "advise", None) if map.pmap is not None else None
            if pstart < pend and advise is not None and behav in (_MADV_DONTNEED, _MADV_FREE):
                advise(use_start, use_end, behav)
            if pstart < pend and obj is not None:
                # vm_object_advice_applies: MADV_FREE only for OBJ_ANON|OBJ_ONEMAPPING objects.
                if behav == _MADV_FREE and obj.flags & 0x2010 == 0x2010:
                    for va in range(use_start, use_end, PAGE_SIZE):
                        m = obj.memq.get(pstart + ((va - use_start) >> 12))
                        if m is not None and not m.wire_count:
                            if map.pmap is not None and advise is None:
                                # pmaps without pmap_advise: write-protect instead, so the
                                # next store marks the page dirty again.
                                map.pmap.protect(va, va + PAGE_SIZE,
                                                 int(map.pmap.prot(va)) & ~int(VM_PROT.WRITE))
                            m.dirty = False
                if behav == _MADV_WILLNEED and entry.wired_count == 0:
                    vm_map_pmap_enter(map, use_start, int(entry.protection), obj, pstart,
                                      (pend - pstart) << 12, int(MAP.PREFAULT_MADVISE))
            entry = vm_map_entry_succ(entry)
    finally:
        vm_map_unlock_read(map)
    if _tracing(map):
        _rec(map, "madvise", f"madvise({behav}) on [{start:#x}, {end:#x}).", start=start, end=end,
         behav=behav)
    return 0


def vm_map_wire(map: VmMap, start: int, end: int, flags: int) -> KERN:
    """vm_map_wire(9): lock the map and `vm_map_wire_locked`."""
    _range_args("vm_map_wire", start, end)
    vm_map_lock(map)
    try:
        return vm_map_wire_locked(map, start, end, flags)
    finally:
        vm_map_unlock(map)


def _wire_entry_failure(map: VmMap, entry: Any, failed_addr: int) -> None:
    """vm_map_wire_entry_failure: unwire the pages wired before the failure."""
    from .vm_object import vm_object_unwire

    if failed_addr > entry.start:
        unwire = getattr(map.pmap, "unwire", None)
        if unwire is not None:
            unwire(entry.start, failed_addr)
        if entry.object is not None:
            vm_object_unwire(entry.object, entry.offset, failed_addr - entry.start)
    entry.wired_count = -1


def vm_map_wire_locked(map: VmMap, start: int, end: int, flags: int) -> KERN:
    """vm_map_wire_locked (vm_map.c): wire [start, end) (the map is locked exclusively).

    start == end → KERN_SUCCESS at once. Each entry is clipped; one without READ/EXECUTE (or
    without WRITE under VM_MAP_WIRE_WRITE) is skipped with HOLESOK, else →
    KERN_INVALID_ADDRESS; an unwired entry gets wired_count 1
    and every page is faulted in with VM_FAULT_WIRE (the map unlocked meanwhile, as FreeBSD
    does; COW is broken because a wired fault asks for the entry's whole protection); a user
    wire of an already user-wired entry changes nothing. A hole without HOLESOK →
    KERN_INVALID_ADDRESS. On failure everything this call wired is unwired again. Success sets
    USER_WIRED for user wiring.
    """
    from .vm_fault import vm_fault
    from .vm_map import (
        _range_check,
        vm_map_clip_end,
        vm_map_clip_start,
        vm_map_entry_pred,
        vm_map_entry_succ,
        vm_map_lookup_entry,
        vm_map_try_merge_entries,
    )

    holes_ok = bool(flags & VM_MAP_WIRE_HOLESOK)
    user_wire = bool(flags & VM_MAP_WIRE_USER)
    prot = int(VM_PROT.WRITE) if flags & VM_MAP_WIRE_WRITE else 0
    start, end = _range_args("vm_map_wire", start, end)
    if start == end:  # before the range check, as FreeBSD (an empty mlock clips nothing)
        return KERN.SUCCESS
    start, end = _range_check(map, start, end)
    found, first = vm_map_lookup_entry(map, start)
    if not found:
        if not holes_ok:
            return KERN.INVALID_ADDRESS
        first = vm_map_entry_succ(first)
    rv = KERN.SUCCESS
    marked: list[Any] = []
    skipped: set[int] = set()
    entry = first
    while not entry.is_header and entry.start < end:
        rv = vm_map_clip_start(map, entry, start)
        if rv != KERN.SUCCESS:
            break
        rv = vm_map_clip_end(map, entry, end)
        if rv != KERN.SUCCESS:
            break
        marked.append(entry)
        eprot = int(entry.protection)
        if not eprot & int(VM_PROT.READ | VM_PROT.EXECUTE) or (eprot & prot) != prot:
            skipped.add(entry.id)
            if not holes_ok:
                rv = KERN.INVALID_ADDRESS
                break
        elif entry.wired_count == 0:
            entry.wired_count = 1
            s, e = entry.start, entry.end
            vm_map_unlock(map)
            faddr = s
            try:
                while faddr < e:
                    rv = vm_fault(map, faddr, int(VM_PROT.NONE), int(VM_FAULT.WIRE))
                    if rv != KERN.SUCCESS:
                        break
                    faddr += PAGE_SIZE
            finally:
                vm_map_lock(map)
            if rv != KERN.SUCCESS:
                _wire_entry_failure(map, entry, faddr)
                break
        elif not user_wire or not entry.eflags & MAP_ENTRY.USER_WIRED:
            entry.wired_count += 1
        nxt = vm_map_entry_succ(entry)
        if not holes_ok and entry.end < end and nxt.start > entry.end:
            rv = KERN.INVALID_ADDRESS
            break
        entry = nxt
    from .vm_map import _entry_unwire

    for entry in marked:
        if entry.id in skipped:
            pass
        elif rv == KERN.SUCCESS:
            if user_wire:
                entry.eflags = entry.eflags | MAP_ENTRY.USER_WIRED
        elif entry.wired_count == -1:
            entry.wired_count = 0
        elif not user_wire or not entry.eflags & MAP_ENTRY.USER_WIRED:
            if entry.wired_count == 1:
                _entry_unwire(map, entry.id)
            else:
                entry.wired_count -= 1
    for entry in marked:
        vm_map_try_merge_entries(map, vm_map_entry_pred(entry), entry)
    if marked:
        vm_map_try_merge_entries(map, marked[-1], vm_map_entry_succ(marked[-1]))
    if _tracing(map):
        _rec(map, "wire", f"vm_map_wire [{start:#x}, {end:#x}) → {KERN(rv).name}", start=start,
         end=end, user=user_wire, rv=int(rv))
    return KERN(rv)


def vm_map_unwire(map: VmMap, start: int, end: int, flags: int) -> KERN:
    """vm_map_unwire(9): undo wiring of [start, end). A hole without HOLESOK →
    KERN_INVALID_ADDRESS; a system unwire of an entry that is not system-wired →
    KERN_INVALID_ARGUMENT; then (only if everything checked out) each entry loses one wiring
    (a user unwire only from USER_WIRED entries) and becomes pageable at 0."""
    from .vm_map import (
        _entry_unwire,
        _range_check,
        vm_map_clip_end,
        vm_map_clip_start,
        vm_map_entry_pred,
        vm_map_entry_succ,
        vm_map_lookup_entry,
        vm_map_try_merge_entries,
    )

    holes_ok = bool(flags & VM_MAP_WIRE_HOLESOK)
    user_unwire = bool(flags & VM_MAP_WIRE_USER)
    start, end = _range_args("vm_map_unwire", start, end)
    if start == end:  # before taking the lock, as FreeBSD
        return KERN.SUCCESS
    vm_map_lock(map)
    try:
        start, end = _range_check(map, start, end)
        found, first = vm_map_lookup_entry(map, start)
        if not found:
            if not holes_ok:
                return KERN.INVALID_ADDRESS
            first = vm_map_entry_succ(first)
        rv = KERN.SUCCESS
        marked: list[Any] = []
        entry = first
        while not entry.is_header and entry.start < end:
            rv = vm_map_clip_start(map, entry, start)
            if rv != KERN.SUCCESS:
                break
            rv = vm_map_clip_end(map, entry, end)
            if rv != KERN.SUCCESS:
                break
            marked.append(entry)
            nxt = vm_map_entry_succ(entry)
            if not holes_ok and entry.end < end and nxt.start > entry.end:
                rv = KERN.INVALID_ADDRESS
                break
            sys_wired = entry.wired_count - (1 if entry.eflags & MAP_ENTRY.USER_WIRED else 0)
            if not user_unwire and sys_wired == 0:
                rv = KERN.INVALID_ARGUMENT
                break
            entry = nxt
        for entry in marked:
            if rv == KERN.SUCCESS and (
                not user_unwire or entry.eflags & MAP_ENTRY.USER_WIRED
            ):
                if entry.wired_count == 1:
                    _entry_unwire(map, entry.id)
                else:
                    entry.wired_count -= 1
                if user_unwire:
                    entry.eflags = entry.eflags & ~MAP_ENTRY.USER_WIRED
        for entry in marked:
            vm_map_try_merge_entries(map, vm_map_entry_pred(entry), entry)
        if marked:
            vm_map_try_merge_entries(map, marked[-1], vm_map_entry_succ(marked[-1]))
    finally:
        vm_map_unlock(map)
    if _tracing(map):
        _rec(map, "wire", f"vm_map_unwire [{start:#x}, {end:#x}) → {KERN(rv).name}", start=start,
         end=end, user=user_unwire, rv=int(rv))
    return KERN(rv)

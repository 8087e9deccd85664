"""vm_map_protect(9) and vm_map_inherit(9) (sys/vm/vm_map.c, FreeBSD 14).

Both take the map lock themselves, clip the range out of the entries it covers, change them and
merge what became mergeable. vm_map_protect validates the whole range before changing anything.
start and end must be page-aligned (`VmMapUnaligned` otherwise, before the lock is taken), as
kern_mprotect / kern_minherit make them.
"""

from __future__ import annotations

from .constants import KERN, VM_INHERIT, VM_MAP_PROTECT, VM_PROT
from .entries import HEADER, prot_str
from .lock import LockWouldBlock, curthread, vm_map_lock, vm_map_unlock, vm_map_wait_busy
from .splay import vm_map_entry_pred_id, vm_map_entry_succ_id
from .vm_map import (
    ME,
    MF,
    PR,
    VmMap,
    _aligned,
    _call,
    _clip_end,
    _clip_start,
    _clip_would_fail,
    _entry_charged,
    _er,
    _int,
    _lookup,
    _lookup_clip_start,
    _quiet_search,
    _range_check,
    _rec,
    _ret,
    _swap_reserve,
    _try_merge,
    _u64,
)
from .vm_object import OBJ_SWAP

__all__ = ["vm_map_inherit", "vm_map_protect"]


def vm_map_protect(
    map: VmMap, start: int, end: int, new_prot: int, new_maxprot: int, flags: int
) -> KERN:
    """vm_map_protect(9) (FreeBSD 13+ form): set the protection (VM_MAP_PROTECT_SET_PROT) and/or
    the maximum protection (VM_MAP_PROTECT_SET_MAXPROT) of [start, end). Takes the lock.

    1. start == end -> KERN_SUCCESS.
    2. Both flags and new_prot not within new_maxprot -> KERN_OUT_OF_BOUNDS.
    3. SET_PROT with W|X on a MAP_WXORX map -> KERN_PROTECTION_FAILURE.
    4. Validation pass over every entry in the range (guards and holes skipped): a submap ->
       KERN_INVALID_ARGUMENT; a new prot or max (unset ones default to the entry's own) not
       within the entry's current max -> KERN_PROTECTION_FAILURE. Nothing has changed yet.
    5. Clip, charge entries gaining write access, then apply: SET_MAXPROT sets max and
       prot &= max; SET_PROT sets prot. Narrowing calls pmap_protect (COW entries never get W
       in the pmap). Neighbours that now match are merged.

    The timestamp moves by 2: vm_map_lock, then vm_map_wait_busy. The M11 form
    (start, end, prot, set_max) is not provided.
    """
    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_protect", "start", start)
    _aligned("vm_map_protect", "end", end)
    new_prot = _int("new_prot", new_prot, 8)
    new_maxprot = _int("new_maxprot", new_maxprot, 8)
    flags = _int("flags", flags, 32)
    if flags & ~0x7:  # SET_PROT | SET_MAXPROT | GROWSDOWN
        raise ValueError(f"vm_map_protect: unknown flag bits {flags:#x}")
    _call(map, "vm_map_protect", start=start, end=end, new_prot=new_prot,
          new_maxprot=new_maxprot, flags=flags)
    name = "vm_map_protect"
    if start == end:
        return _ret(map, name, KERN.SUCCESS)
    both = VM_MAP_PROTECT.SET_PROT | VM_MAP_PROTECT.SET_MAXPROT
    if flags & both == both and new_prot & new_maxprot != new_prot:
        return _ret(map, name, KERN.OUT_OF_BOUNDS,
                    why="the new protection is not within the new maximum")
    vm_map_lock(map)
    try:
        return _protect_locked(map, start, end, new_prot, new_maxprot, flags)
    finally:
        vm_map_unlock(map)


def _protect_locked(
    map: VmMap, start: int, end: int, new_prot: int, new_maxprot: int, flags: int
) -> KERN:
    name = "vm_map_protect"
    t = map._t
    tr = map._trace
    if (
        map.flags & MF.WXORX
        and flags & VM_MAP_PROTECT.SET_PROT
        and new_prot & (PR.WRITE | PR.EXECUTE) == PR.WRITE | PR.EXECUTE
    ):
        return _ret(map, name, KERN.PROTECTION_FAILURE,
                    why="this map forbids writable and executable at once")
    if map.busy:
        raise LockWouldBlock("vm_map_protect: the map is busy wiring; the thread would sleep")
    vm_map_wait_busy(map)
    start, end = _range_check(map, start, end)
    found, first = _lookup(map, start)
    if not found:
        first = vm_map_entry_succ_id(map, first)
    # First pass: check for protection violations, before changing anything.
    e = first
    in_tran = -1
    while t.start[e] < end and e != HEADER:
        if t.eflags[e] & ME.GUARD:
            e = vm_map_entry_succ_id(map, e)
            continue
        if t.eflags[e] & ME.IS_SUB_MAP:
            return _ret(map, name, KERN.INVALID_ARGUMENT, why=f"{_er(t, e)} is a submap")
        np_ = new_prot if flags & VM_MAP_PROTECT.SET_PROT else t.protection[e]
        nm = new_maxprot if flags & VM_MAP_PROTECT.SET_MAXPROT else t.max_protection[e]
        if np_ & t.max_protection[e] != np_ or nm & t.max_protection[e] != nm:
            return _ret(map, name, KERN.PROTECTION_FAILURE,
                        why=f"{_er(t, e)} allows at most {prot_str(t.max_protection[e])}")
        if t.eflags[e] & ME.IN_TRANSITION:
            in_tran = e
        e = vm_map_entry_succ_id(map, e)
    if in_tran != -1:
        raise LockWouldBlock(
            f"vm_map_protect: {_er(t, in_tran)} is being wired; the thread would sleep "
            f"(nothing was changed)"
        )
    if tr is not None:
        tr.record(map, "note", "Every entry in the range allows the change: now apply it.")
    # FreeBSD may clip at start and then fail at end; vmlab checks both first.
    if _clip_would_fail(map, start) or _clip_would_fail(map, end):
        return _ret(map, name, KERN.INVALID_ARGUMENT,
                    why="the range splits a largepage mapping at an unaligned address")
    # Clip, and reserve swap for private mappings gaining write access.
    rv = _clip_start(map, first, start)
    if rv != KERN.SUCCESS:
        return _ret(map, name, rv, why="the start is not aligned to a largepage boundary")
    e = first
    while t.start[e] < end and e != HEADER:
        rv = _clip_end(map, e, end)
        if rv != KERN.SUCCESS:
            return _ret(map, name, rv, why="the end is not aligned to a largepage boundary")
        if (
            not flags & VM_MAP_PROTECT.SET_PROT
            or not (new_prot & ~t.protection[e]) & PR.WRITE
            or _entry_charged(t, e)
            or t.eflags[e] & ME.GUARD
        ):
            e = vm_map_entry_succ_id(map, e)
            continue
        cred = curthread().td_ucred
        obj = t.objects[e]
        if obj is None or t.eflags[e] & ME.NEEDS_COPY:
            if not _swap_reserve(t.end[e] - t.start[e]):
                rv = KERN.RESOURCE_SHORTAGE
                end = t.end[e]
                break
            t.creds[e] = cred
            e = vm_map_entry_succ_id(map, e)
            continue
        # FreeBSD 14: only swap-backed objects are charged ((obj->flags & OBJ_SWAP) == 0 ->
        # skip); 13 also tested OBJT_DEFAULT, which 14 removed.
        if not obj.flags & OBJ_SWAP:
            e = vm_map_entry_succ_id(map, e)
            continue
        # Charge for the whole object now.
        if not _swap_reserve(obj.size << 12):
            rv = KERN.RESOURCE_SHORTAGE
            end = t.end[e]
            break
        obj.cred = cred
        obj.charge = obj.size << 12
        e = vm_map_entry_succ_id(map, e)
    # Apply (or, after a failed reservation, only merge).
    prev = vm_map_entry_pred_id(map, first)
    e = first
    while t.start[e] < end and e != HEADER:
        if rv == KERN.SUCCESS and not t.eflags[e] & ME.GUARD:
            old_prot = t.protection[e]
            old_max = t.max_protection[e]
            if flags & VM_MAP_PROTECT.SET_MAXPROT:
                t.max_protection[e] = new_maxprot
                t.protection[e] = new_maxprot & old_prot
            if flags & VM_MAP_PROTECT.SET_PROT:
                t.protection[e] = new_prot
            if tr is not None:
                _rec(map, "modify",
                     f"{_er(t, e)}: protection {prot_str(old_prot)} -> "
                     f"{prot_str(t.protection[e])}, max {prot_str(old_max)} -> "
                     f"{prot_str(t.max_protection[e])}.",
                     entry=e, field="protection", old=old_prot, new=t.protection[e],
                     old_max=old_max, new_max=t.max_protection[e])
            if (
                t.eflags[e] & ME.USER_WIRED
                and t.protection[e] & PR.WRITE
                and not old_prot & PR.WRITE
            ):
                _fault_copy_entry(map, e)
            if old_prot & ~t.protection[e] and map.pmap is not None:
                mask = ~int(PR.WRITE) if t.eflags[e] & ME.COW else int(PR.ALL)
                p = VM_PROT(t.protection[e] & mask & PR.ALL)
                map.pmap.protect(t.start[e], t.end[e], p)
                if tr is not None:
                    tr.record(map, "note",
                              f"pmap_protect({t.start[e]:#x}, {t.end[e]:#x}, {prot_str(p)}): "
                              f"access was taken away, so existing page-table entries are "
                              f"narrowed too.")
        nxt = vm_map_entry_succ_id(map, e)
        _try_merge(map, prev, e)
        prev = e
        e = nxt
    _try_merge(map, prev, e)
    return _ret(map, name, rv, why="swap space could not be reserved")


def _fault_copy_entry(map: VmMap, e: int) -> None:
    """vm_fault_copy_entry for a user-wired entry gaining write access: the process layer's
    (``vmlab.core.vm_fault.vm_fault_copy_entry(dst_map, src_map, dst_entry, src_entry,
    fork_charge)``) when present."""
    # Imported here: vm_fault.py imports this module's functions at load time.
    from .entries import VmMapEntry
    from .vm_fault import vm_fault_copy_entry

    vm_fault_copy_entry(map, map, VmMapEntry(map, e), VmMapEntry(map, e), None)


def vm_map_inherit(map: VmMap, start: int, end: int, new_inheritance: int) -> KERN:
    """vm_map_inherit(9): set what fork does with [start, end): VM_INHERIT_SHARE, COPY, NONE
    or ZERO (any other value -> KERN_INVALID_ARGUMENT before anything else). Takes the lock,
    clips at start and at end (when end - 1 is mapped), refuses COPY over a split-boundary
    (largepage) entry with KERN_INVALID_ARGUMENT, sets every entry except that a guard never
    becomes ZERO, and merges. Holes are ignored."""
    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_inherit", "start", start)
    _aligned("vm_map_inherit", "end", end)
    if isinstance(new_inheritance, bool):
        raise TypeError("new_inheritance must be an integer")
    try:
        inh = int(new_inheritance)
    except (TypeError, ValueError):
        raise TypeError(
            f"new_inheritance must be an integer, not {type(new_inheritance).__name__}"
        ) from None
    name = "vm_map_inherit"
    _call(map, name, start=start, end=end, new_inheritance=inh)
    if inh not in (VM_INHERIT.NONE, VM_INHERIT.COPY, VM_INHERIT.SHARE, VM_INHERIT.ZERO):
        return _ret(map, name, KERN.INVALID_ARGUMENT, why=f"{inh} is not an inheritance value")
    if start == end:
        return _ret(map, name, KERN.SUCCESS)
    vm_map_lock(map)
    try:
        return _inherit_locked(map, start, end, inh)
    finally:
        vm_map_unlock(map)


def _largepage_in_range(map: VmMap, start: int, end: int) -> bool:
    t = map._t
    found, e = _quiet_search(map, start)
    if not found:
        e = vm_map_entry_succ_id(map, e)
    while e != HEADER and t.start[e] < end:
        if t.eflags[e] & ME.SPLIT_BOUNDARY_MASK:
            return True
        e = vm_map_entry_succ_id(map, e)
    return False


def _inherit_locked(map: VmMap, start: int, end: int, inh: int) -> KERN:
    name = "vm_map_inherit"
    t = map._t
    start, end = _range_check(map, start, end)
    # FreeBSD may clip first and fail afterwards (same code); vmlab checks before any change.
    if _clip_would_fail(map, start) or _clip_would_fail(map, end):
        return _ret(map, name, KERN.INVALID_ARGUMENT,
                    why="the range splits a largepage mapping at an unaligned address")
    if inh == VM_INHERIT.COPY and _largepage_in_range(map, start, end):
        return _ret(map, name, KERN.INVALID_ARGUMENT,
                    why="a largepage mapping in the range cannot be inherited by copy")
    rv, start_entry, prev = _lookup_clip_start(map, start)
    if rv != KERN.SUCCESS:
        return _ret(map, name, rv, why="the start is not aligned to a largepage boundary")
    if end > 0:
        found, lentry = _lookup(map, end - 1)
        if found:
            rv = _clip_end(map, lentry, end)
            if rv != KERN.SUCCESS:
                return _ret(map, name, rv, why="the end is not aligned to a largepage boundary")
    if inh == VM_INHERIT.COPY:
        e = start_entry
        while t.start[e] < end and e != HEADER:
            if t.eflags[e] & ME.SPLIT_BOUNDARY_MASK:
                return _ret(map, name, KERN.INVALID_ARGUMENT,
                            why=f"{_er(t, e)} is a largepage mapping, which cannot be copied")
            e = vm_map_entry_succ_id(map, e)
    e = start_entry
    while t.start[e] < end and e != HEADER:
        if not t.eflags[e] & ME.GUARD or inh != VM_INHERIT.ZERO:
            old = t.inheritance[e]
            t.inheritance[e] = inh
            if map._trace is not None and old != inh:
                _rec(map, "modify",
                     f"{_er(t, e)}: inheritance {VM_INHERIT(old).name} -> "
                     f"{VM_INHERIT(inh).name}.", entry=e, field="inheritance", old=old, new=inh)
        nxt = vm_map_entry_succ_id(map, e)
        _try_merge(map, prev, e)
        prev = e
        e = nxt
    _try_merge(map, prev, e)
    return _ret(map, name, KERN.SUCCESS)

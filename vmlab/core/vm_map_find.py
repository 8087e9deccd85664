"""Placing new mappings: vm_map_find, vm_map_find_min, vm_map_fixed, vm_map_find_aligned and
the stack builders vm_map_stack / vm_map_stack_locked (sys/vm/vm_map.c, FreeBSD 14).

These take and release the map lock themselves (vm_map_stack_locked excepted). Results that C
writes through ``*addr`` come back as ``(kern_return, addr)``; on failure ``addr`` carries no
meaning (it is whatever the search left there, as in C).

Addresses, lengths and (with an object) offsets must be page-aligned, as FreeBSD's callers
(vm_mmap_object, exec) make them: anything else raises `VmMapUnaligned` before the map is
locked. ``max_addr`` is only a bound and may be any value.
"""

from __future__ import annotations

from typing import Any

from .constants import (
    KERN,
    MAP_32BIT_MAX_ADDR,
    NBPDR,
    PAGE_SIZE,
)
from .lock import vm_map_assert_locked, vm_map_lock, vm_map_unlock
from .splay import vm_map_entry_pred_id, vm_map_entry_succ_id
from .sysctl import sysctl
from .vm_map import (
    FS,
    M64,
    MAXPAGESIZES,
    MC,
    MF,
    PR,
    VmMap,
    _aligned,
    _call,
    _check_prot_max,
    _cow,
    _delete,
    _findspace,
    _insert,
    _int,
    _lookup,
    _prot,
    _range_check,
    _rec,
    _ret,
    _u64,
    pagesizes,
    vm_map_max,
    vm_map_min,
    vm_map_range_valid,
)
from .vm_object import OBJ_COLORED

__all__ = [
    "pmap_align_superpage",
    "vm_map_find",
    "vm_map_find_aligned",
    "vm_map_find_min",
    "vm_map_fixed",
    "vm_map_stack",
    "vm_map_stack_locked",
]

PDRMASK = NBPDR - 1
#: ASLR gap in pages {normal, superpage} (vm_map.c aslr_pages_rnd_64 / _32).
aslr_pages_rnd_64 = (0x1000, 0x10)
aslr_pages_rnd_32 = (0x100, 0x4)
_STACK = MC.STACK_GROWS_DOWN | MC.STACK_GROWS_UP


def pmap_align_superpage(object: Any, offset: int, addr: int, size: int) -> int:
    """pmap_align_superpage (sys/amd64/amd64/pmap.c): move addr up so that it and the object
    offset agree modulo 2 MiB, if the mapping is big enough to hold a superpage. Returns the
    new addr."""
    if size < NBPDR:
        return addr
    if object is not None and object.flags & OBJ_COLORED:
        offset += getattr(object, "pg_color", 0) * PAGE_SIZE
    superpage_offset = offset & PDRMASK
    if (size - ((NBPDR - superpage_offset) & PDRMASK)) & M64 < NBPDR or (
        addr & PDRMASK
    ) == superpage_offset:
        return addr
    if addr & PDRMASK < superpage_offset:
        return (addr & ~PDRMASK) + superpage_offset
    return (((addr + PDRMASK) & ~PDRMASK) + superpage_offset) & M64


def _alignspace(
    map: VmMap,
    object: Any,
    offset: int,
    addr: int,
    length: int,
    max_addr: int,
    alignment: int,
) -> tuple[KERN, int]:
    """vm_map_alignspace: align addr (to ``alignment``, or for superpages when it is 0), then
    search again from there until the aligned address itself is free."""
    free_addr = addr
    tr = map._trace
    while True:
        if alignment == 0:
            addr = pmap_align_superpage(object, offset, addr, length)
        else:
            addr = ((addr + alignment - 1) & ~(alignment - 1)) & M64
        aligned_addr = addr
        if aligned_addr == free_addr:
            return KERN.SUCCESS, addr
        if tr is not None:
            tr.record(
                map, "note",
                f"Alignment moves the candidate from {free_addr:#x} up to {aligned_addr:#x}; "
                f"search again from there.",
            )
        if aligned_addr < free_addr:
            return KERN.NO_SPACE, addr  # wrapped
        addr = _findspace(map, aligned_addr, length)
        if (addr + length) > vm_map_max(map) or (max_addr != 0 and addr + length > max_addr):
            return KERN.NO_SPACE, addr
        free_addr = addr
        if free_addr == aligned_addr:
            return KERN.SUCCESS, addr


def vm_map_find_aligned(
    map: VmMap, addr: int, length: int, max_addr: int, alignment: int
) -> tuple[KERN, int]:
    """vm_map_find_aligned: first fit at or above addr, aligned to ``alignment`` (a power of
    two), below max_addr when nonzero. The map must be locked. Returns (KERN, addr)."""
    vm_map_assert_locked(map, "vm_map_find_aligned")
    addr = _u64("addr", addr)
    length = _u64("length", length)
    max_addr = _u64("max_addr", max_addr)
    alignment = _u64("alignment", alignment)
    _aligned("vm_map_find_aligned", "addr", addr)
    _aligned("vm_map_find_aligned", "length", length)
    if alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment:#x} is not a power of two")
    _call(map, "vm_map_find_aligned", addr=addr, length=length, max_addr=max_addr,
          alignment=alignment)
    addr = _findspace(map, addr, length)
    if addr + length > vm_map_max(map) or (max_addr != 0 and addr + length > max_addr):
        return _ret(map, "vm_map_find_aligned", KERN.NO_SPACE, why="no gap fits"), addr
    rv, addr = _alignspace(map, None, 0, addr, length, max_addr, alignment)
    return _ret(map, "vm_map_find_aligned", rv, addr, why="no aligned gap fits"), addr


def _clustering_anon_allowed(addr: int, cow: int) -> bool:
    """clustering_anon_allowed (FreeBSD 14): vm.cluster_anon 0 = never, 1 = only without a
    hint (addr == 0, or MAP_NO_HINT), 2 = always."""
    mode = sysctl("vm.cluster_anon")
    if mode == 0:
        return False
    if mode == 1:
        return addr == 0 or bool(cow & MC.NO_HINT)
    return True


def vm_map_find(
    map: VmMap,
    object: Any,
    offset: int,
    addr: int,
    length: int,
    max_addr: int,
    find_space: int,
    prot: int,
    max: int,
    cow: int,
) -> tuple[KERN, int]:
    """vm_map_find(9): find room for ``length`` bytes at or above ``addr`` (the hint) and map
    ``object`` there; with VMFS_NO_SPACE map exactly at addr. Takes the map lock itself.
    Returns (KERN, addr).

    find_space: VMFS_ANY_SPACE (first fit), VMFS_OPTIMAL_SPACE (superpage-friendly when the
    object is coloured, else ANY; falls back to ANY when the aligned search fails),
    VMFS_SUPER_SPACE (superpage alignment), VMFS_ALIGNED_SPACE(n) (2**n alignment). max_addr != 0
    bounds the end. Anonymous mappings without a hint cluster after ``map.anon_loc``
    (vm.cluster_anon) and move it past themselves. With MAP_ASLR in map.flags the first try
    searches for length plus a random gap and shifts by a random number of pages from
    ``map.aslr_rng`` (seeded; see vm_map_aslr_seed). MAP_REMAP with VMFS_NO_SPACE first deletes
    what is there. Stack cow bits go to vm_map_stack_locked.
    """
    offset = _u64("offset", offset)
    addr = _u64("addr", addr)
    length = _u64("length", length)
    max_addr = _u64("max_addr", max_addr)
    _aligned("vm_map_find", "addr", addr)
    _aligned("vm_map_find", "length", length)
    if object is not None:
        _aligned("vm_map_find", "offset", offset)
    find_space = _int("find_space", find_space, 32)
    prot = _prot("prot", prot)
    max = _prot("max", max)
    cow = _cow(cow)
    _check_prot_max("vm_map_find", prot, max)
    if cow & _STACK and object is not None:
        raise ValueError("vm_map_find: a stack cannot have a backing object")
    if cow & MC.REMAP and (find_space != FS.NO_SPACE or cow & _STACK):
        raise ValueError("vm_map_find: MAP_REMAP needs VMFS_NO_SPACE and no stack bits")
    if find_space >> 8:
        if find_space & 0xFF:
            raise ValueError(f"vm_map_find: bad VMFS flags {find_space:#x}")
        if find_space >> 8 >= 64:
            raise ValueError(f"vm_map_find: alignment 2**{find_space >> 8} is too large")
    elif find_space not in (FS.NO_SPACE, FS.ANY_SPACE, FS.OPTIMAL_SPACE,
                            FS.SUPER_SPACE):
        raise ValueError(f"vm_map_find: unexpected VMFS value {find_space}")
    _call(map, "vm_map_find", object=None if object is None else f"#{object.id}",
          offset=offset, addr=addr, length=length, max_addr=max_addr, find_space=find_space,
          prot=prot, max=max, cow=cow)
    rv, addr = _find(map, object, offset, addr, length, max_addr, find_space, prot, max, cow)
    return _ret(map, "vm_map_find", rv, addr, why="no suitable free range"), addr


def _find(
    map: VmMap,
    object: Any,
    offset: int,
    addr: int,
    length: int,
    max_addr: int,
    find_space: int,
    prot: int,
    max: int,
    cow: int,
) -> tuple[KERN, int]:
    if find_space == FS.OPTIMAL_SPACE and (object is None or not object.flags & OBJ_COLORED):
        find_space = FS.ANY_SPACE
    alignment = 1 << (find_space >> 8) if find_space >> 8 else 0
    en_aslr = bool(map.flags & MF.ASLR)
    cluster = (
        _clustering_anon_allowed(addr, cow)
        and not map.flags & MF.IS_SUB_MAP
        and max_addr == 0
        and find_space != FS.NO_SPACE
        and object is None
        and not cow & (MC.INHERIT_SHARE | _STACK)
        and prot != PR.NONE
    )
    update_anon = cluster
    curr_min_addr = min_addr = addr
    if (
        en_aslr
        and min_addr == 0
        and not cluster
        and find_space != FS.NO_SPACE
        and map.flags & MF.ASLR_IGNSTART
    ):
        curr_min_addr = min_addr = vm_map_min(map)
    try_ = 0
    vm_map_lock(map)
    try:
        tr = map._trace
        if cluster:
            curr_min_addr = map.anon_loc
            if curr_min_addr == 0:
                cluster = False
            elif tr is not None:
                tr.record(map, "note",
                          f"Anonymous mapping without a hint: cluster it after earlier ones, "
                          f"searching from anon_loc = {curr_min_addr:#x}.")
        if find_space != FS.NO_SPACE:
            while True:  # again:
                try_ += 1
                if try_ == 2:
                    # Second try: randomisation or clustering failed; plain first fit.
                    curr_min_addr = (
                        vm_map_min(map) if map.flags & MF.ASLR_IGNSTART else min_addr
                    )
                    sysctl("vm.aslr_restarts", sysctl("vm.aslr_restarts") + 1)
                    if tr is not None:
                        tr.record(map, "note",
                                  f"First try failed: search again, first fit from "
                                  f"{curr_min_addr:#x}.")
                if try_ == 1 and en_aslr and not cluster:
                    pidx = (
                        1
                        if MAXPAGESIZES > 1
                        and find_space in (FS.SUPER_SPACE, FS.OPTIMAL_SPACE)
                        else 0
                    )
                    gap = (
                        aslr_pages_rnd_64[pidx]
                        if vm_map_max(map) > MAP_32BIT_MAX_ADDR
                        and (max_addr == 0 or max_addr > MAP_32BIT_MAX_ADDR)
                        else aslr_pages_rnd_32[pidx]
                    )
                    span = length + gap * pagesizes[pidx]
                    addr = _findspace(map, curr_min_addr, span & M64)
                    if addr + span > vm_map_max(map):
                        continue
                    rnd = map.aslr_rng.getrandbits(32) % gap
                    addr += rnd * pagesizes[pidx]
                    if tr is not None:
                        tr.record(map, "note",
                                  f"ASLR: shift the start by {rnd} page(s) of "
                                  f"{pagesizes[pidx]:#x} bytes, to {addr:#x}.")
                    if max_addr != 0 and addr + length > max_addr:
                        continue
                else:
                    addr = _findspace(map, curr_min_addr, length)
                    if addr + length > vm_map_max(map) or (
                        max_addr != 0 and addr + length > max_addr
                    ):
                        if cluster:
                            cluster = False
                            continue
                        return KERN.NO_SPACE, addr
                if find_space != FS.ANY_SPACE:
                    rv, addr = _alignspace(map, object, offset, addr, length, max_addr,
                                           alignment)
                    if rv != KERN.SUCCESS:
                        if find_space == FS.OPTIMAL_SPACE:
                            find_space = FS.ANY_SPACE
                            curr_min_addr = min_addr
                            cluster = update_anon
                            try_ = 0
                            if tr is not None:
                                tr.record(map, "note",
                                          "No superpage-aligned room: fall back to any space.")
                            continue
                        return rv, addr
                break
        elif cow & MC.REMAP:
            if not vm_map_range_valid(map, addr, addr + length):
                return KERN.INVALID_ADDRESS, addr
            rv = _delete(map, addr, addr + length)
            if rv != KERN.SUCCESS:
                return rv, addr
        if cow & _STACK:
            rv = _stack_locked(map, addr, length, sysctl("kern.sgrowsiz"), prot, max, cow)
        else:
            rv = _insert(map, object, offset, addr, (addr + length) & M64, prot, max, cow)
        if rv == KERN.SUCCESS and update_anon:
            old = map.anon_loc
            map.anon_loc = (addr + length) & M64
            if tr is not None:
                _rec(map, "map_field",
                     f"anon_loc moves from {old:#x} to {map.anon_loc:#x}: the next anonymous "
                     f"mapping will be placed after this one.",
                     field="anon_loc", old=old, new=map.anon_loc)
        return rv, addr
    finally:
        vm_map_unlock(map)


def vm_map_find_min(
    map: VmMap,
    object: Any,
    offset: int,
    addr: int,
    length: int,
    min_addr: int,
    max_addr: int,
    find_space: int,
    prot: int,
    max: int,
    cow: int,
) -> tuple[KERN, int]:
    """vm_map_find_min: vm_map_find with ``addr`` as a hint only: if nothing fits above the
    hint and min_addr is below it, try again from min_addr. Returns (KERN, addr)."""
    hint = _u64("addr", addr)
    min_addr = _u64("min_addr", min_addr)
    # Checked here too: a min_addr only used on the retry must not fail after a first try.
    _aligned("vm_map_find_min", "addr", hint)
    _aligned("vm_map_find_min", "min_addr", min_addr)
    _aligned("vm_map_find_min", "length", _u64("length", length))
    addr = hint
    while True:
        rv, addr = vm_map_find(map, object, offset, addr, length, max_addr, find_space, prot,
                               max, cow)
        if rv == KERN.SUCCESS or min_addr >= hint:
            return rv, addr
        addr = hint = min_addr


def vm_map_fixed(
    map: VmMap,
    object: Any,
    offset: int,
    start: int,
    length: int,
    prot: int,
    max: int,
    cow: int,
) -> KERN:
    """vm_map_fixed: map at exactly [start, start + length). Takes the lock, clamps the range
    into the map, deletes what is there unless MAP_CHECK_EXCL (returning the delete's error),
    then inserts (or builds a stack for the stack cow bits)."""
    offset = _u64("offset", offset)
    start = _u64("start", start)
    length = _u64("length", length)
    _aligned("vm_map_fixed", "start", start)
    _aligned("vm_map_fixed", "length", length)
    if object is not None:
        _aligned("vm_map_fixed", "offset", offset)
    prot = _prot("prot", prot)
    max = _prot("max", max)
    cow = _cow(cow)
    _check_prot_max("vm_map_fixed", prot, max)
    if cow & _STACK and object is not None:
        raise ValueError("vm_map_fixed: a stack cannot have a backing object")
    _call(map, "vm_map_fixed", object=None if object is None else f"#{object.id}",
          offset=offset, start=start, length=length, prot=prot, max=max, cow=cow)
    end = (start + length) & M64
    vm_map_lock(map)
    try:
        start, end = _range_check(map, start, end)
        if not cow & MC.CHECK_EXCL:
            rv = _delete(map, start, end)
            if rv != KERN.SUCCESS:
                return _ret(map, "vm_map_fixed", rv, why="deleting the old mappings failed")
        if cow & _STACK:
            rv = _stack_locked(map, start, length, sysctl("kern.sgrowsiz"), prot, max, cow)
        else:
            rv = _insert(map, object, offset, start, end, prot, max, cow)
    finally:
        vm_map_unlock(map)
    return _ret(map, "vm_map_fixed", rv, why="the range cannot be mapped")


# ---------------------------------------------------------------------------------------------
# stacks


#: sys/sys/mman.h: PROT_MAX(prot) is prot << 16; PROT_EXTRACT takes the low byte.
PROT_MAX_SHIFT = 16


def _stack_guard(map: VmMap) -> int:
    """sgp: security.bsd.stack_guard_page pages, or 0 when the process disabled stack gaps
    (P2_STKGAP_DISABLE / NT_FREEBSD_FCTL_STKGAP_DISABLE: vmspace.stkgap_disable)."""
    vs = map.vmspace
    if vs is not None and getattr(vs, "stkgap_disable", False):
        return 0
    return sysctl("security.bsd.stack_guard_page") * PAGE_SIZE


def _stack_locked(
    map: VmMap, addrbos: int, max_ssize: int, growsize: int, prot: int, max: int, cow: int
) -> KERN:
    orient = cow & _STACK
    if orient == 0:
        raise ValueError("vm_map_stack_locked: no stack grow direction in cow")
    if orient == _STACK:
        raise ValueError("vm_map_stack_locked: a stack cannot grow both down and up")
    t = map._t
    tr = map._trace
    if max_ssize == 0 or not vm_map_range_valid(map, addrbos, addrbos + max_ssize):
        return KERN.INVALID_ADDRESS
    sgp = _stack_guard(map)
    if sgp >= max_ssize:
        return KERN.INVALID_ARGUMENT
    init_ssize = growsize
    if max_ssize < init_ssize + sgp:
        init_ssize = max_ssize - sgp
    found, prev = _lookup(map, addrbos)
    if found:
        return KERN.NO_SPACE
    if t.start[vm_map_entry_succ_id(map, prev)] < addrbos + max_ssize:
        return KERN.NO_SPACE
    if orient == MC.STACK_GROWS_DOWN:
        bot = addrbos + max_ssize - init_ssize
        top = bot + init_ssize
        gap_bot, gap_top = addrbos, bot
    else:
        bot = addrbos
        top = bot + init_ssize
        gap_bot, gap_top = top, addrbos + max_ssize
    if tr is not None:
        tr.record(map, "note",
                  f"Stack of up to {max_ssize:#x} bytes: map only [{bot:#x}, {top:#x}) now; "
                  f"[{gap_bot:#x}, {gap_top:#x}) stays reserved as a guard gap to grow into.")
    rv = _insert(map, None, 0, bot, top, prot, max, cow)
    if rv != KERN.SUCCESS:
        return rv
    new_entry = vm_map_entry_succ_id(map, prev)
    if gap_bot == gap_top:
        return KERN.SUCCESS
    rv = _insert(
        map, None, 0, gap_bot, gap_top, PR.NONE, PR.NONE,
        MC.CREATE_GUARD
        | (MC.CREATE_STACK_GAP_DN if orient == MC.STACK_GROWS_DOWN else MC.CREATE_STACK_GAP_UP),
    )
    if rv == KERN.SUCCESS:
        # The gap never handles a fault, so its next_read holds the guard size instead.
        gap = (
            vm_map_entry_pred_id(map, new_entry)
            if orient == MC.STACK_GROWS_DOWN
            else vm_map_entry_succ_id(map, new_entry)
        )
        t.next_read[gap] = sgp
        # Likewise a gap never has an object, so its offset keeps the stack's protections
        # (prot | PROT_MAX(max)); vm_map_growstack gives new stack pieces these.
        t.offset[gap] = prot | (max << PROT_MAX_SHIFT)
        if tr is not None:
            _rec(map, "modify",
                 f"The gap entry #{gap} remembers the guard size {sgp:#x} in its next_read "
                 f"and the stack's protections in its offset.",
                 entry=gap, field="next_read", old=gap_bot, new=sgp)
    else:
        _delete(map, bot, top)
    return rv


def vm_map_stack_locked(
    map: VmMap,
    addrbos: int,
    max_ssize: int,
    growsize: int,
    prot: int,
    max: int,
    cow: int,
) -> KERN:
    """vm_map_stack_locked (static in vm_map.c): reserve [addrbos, addrbos + max_ssize) for a
    stack that grows down (MAP_STACK_GROWS_DOWN) or up. Only ``growsize`` (less the guard when
    the stack is small) is mapped, at the top (down) or bottom (up); the rest becomes a guard
    gap entry (prot NONE, MAP_ENTRY_GUARD | STACK_GAP_DN/UP) whose next_read holds the guard
    size security.bsd.stack_guard_page * PAGE_SIZE. The map must be locked.

    Errors: max_ssize 0 or an invalid range -> KERN_INVALID_ADDRESS; guard >= max_ssize ->
    KERN_INVALID_ARGUMENT; addrbos mapped or the next entry inside the range -> KERN_NO_SPACE;
    insert errors as vm_map_insert's (a failed gap insert deletes the stack again).
    """
    vm_map_assert_locked(map, "vm_map_stack_locked")
    addrbos = _u64("addrbos", addrbos)
    max_ssize = _u64("max_ssize", max_ssize)
    growsize = _u64("growsize", growsize)
    _aligned("vm_map_stack_locked", "addrbos", addrbos)
    _aligned("vm_map_stack_locked", "max_ssize", max_ssize)
    _aligned("vm_map_stack_locked", "growsize", growsize)
    prot = _prot("prot", prot)
    max = _prot("max", max)
    cow = _cow(cow)
    _check_prot_max("vm_map_stack_locked", prot, max)
    _call(map, "vm_map_stack_locked", addrbos=addrbos, max_ssize=max_ssize, growsize=growsize,
          prot=prot, max=max, cow=cow)
    rv = _stack_locked(map, addrbos, max_ssize, growsize, prot, max, cow)
    return _ret(map, "vm_map_stack_locked", rv, why="the stack range cannot be reserved")


def _vmemlim(map: VmMap) -> int:
    """lim_cur(RLIMIT_VMEM) of the map's process: ``vmspace.rlimit("RLIMIT_VMEM")`` when the
    process layer provides it, else unlimited."""
    vs = map.vmspace
    f = getattr(vs, "rlimit", None) if vs is not None else None
    return M64 if f is None else int(f("RLIMIT_VMEM"))


def vm_map_stack(
    map: VmMap, addrbos: int, max_ssize: int, prot: int, max: int, cow: int
) -> KERN:
    """vm_map_stack: the exec-time stack. Locks the map; KERN_NO_SPACE when size + the initial
    stack would exceed RLIMIT_VMEM; else vm_map_stack_locked with growsize = kern.sgrowsiz."""
    addrbos = _u64("addrbos", addrbos)
    max_ssize = _u64("max_ssize", max_ssize)
    _aligned("vm_map_stack", "addrbos", addrbos)
    _aligned("vm_map_stack", "max_ssize", max_ssize)
    prot = _prot("prot", prot)
    max = _prot("max", max)
    cow = _cow(cow)
    _check_prot_max("vm_map_stack", prot, max)
    if map.flags & MF.WIREFUTURE:
        raise ValueError("vm_map_stack: the map must not have MAP_WIREFUTURE")
    _call(map, "vm_map_stack", addrbos=addrbos, max_ssize=max_ssize, prot=prot, max=max,
          cow=cow)
    growsize = sysctl("kern.sgrowsiz")
    init_ssize = max_ssize if max_ssize < growsize else growsize
    vm_map_lock(map)
    try:
        if map.size + init_ssize > _vmemlim(map):
            rv = KERN.NO_SPACE
        else:
            rv = _stack_locked(map, addrbos, max_ssize, growsize, prot, max, cow)
    finally:
        vm_map_unlock(map)
    return _ret(map, "vm_map_stack", rv, why="the stack cannot be created")


"""Stack growth: vm_map_growstack (sys/vm/vm_map.c, FreeBSD 14).

A stack made by vm_map_stack / MAP_STACK is a small GROWS_DOWN entry above a guard gap entry
(prot NONE, GUARD | STACK_GAP_DN, ``next_read`` = guard size). A fault in the gap reaches
`vm_map_growstack` through vm_map_lookup; the stack grows by a **new, separate entry** carved
from the top of the gap (GROWS_DOWN entries never merge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import KERN, MAP, MAP_ENTRY, PAGE_SHIFT, VM_MAP_FLAGS, VM_PROT, round_page
from .lock import (
    curthread,
    vm_map_lock_downgrade,
    vm_map_lock_read,
    vm_map_lock_upgrade,
    vm_map_unlock_read,
)

if TYPE_CHECKING:
    from .vm_map import VmMap

__all__ = ["vm_map_growstack"]

_M64 = (1 << 64) - 1


def _tracing(map: VmMap) -> bool:
    owner = map.vmspace if map.vmspace is not None else map
    return owner._trace is not None


def _rec(map: VmMap, kind: str, text: str, **data: Any) -> None:
    owner = map.vmspace if map.vmspace is not None else map
    tr = owner._trace
    if tr is not None:
        tr.mark_dirty(owner)
        tr.record(owner, kind, text, **data)


def _fail(map: VmMap, rv: KERN, why: str, addr: int) -> KERN:
    if _tracing(map):
        _rec(map, "grow", f"The stack does not grow for {addr:#x}: {why} ({rv.name}).",
             addr=addr, rv=int(rv), grow=0, reason=why)
    return rv


def vm_map_growstack(map: VmMap, addr: int) -> KERN:
    """vm_map_growstack (vm_map.c, static in FreeBSD; exported for lessons): grow the stack
    whose gap contains ``addr``. Takes the map lock itself and returns with the map unlocked.

    Rules (FreeBSD 14): only the process's own map (with a text vnode); ``addr`` not mapped →
    KERN_FAILURE; not a guard → KERN_SUCCESS (nothing to do); the stack entry must be the gap's
    adjacent GROWS_DOWN successor (or GROWS_UP predecessor). grow = round_page(stack.start −
    addr); guard = gap.next_read (0 with stack gaps disabled); max_grow = gap size − guard;
    guard > gap size or grow > max_grow → KERN_NO_SPACE (a fault in the guard fails); the main
    stack ([vm_maxsaddr, vm_stacktop)) also checks ctob(vm_ssize) + grow > RLIMIT_STACK →
    KERN_NO_SPACE. Then grow = roundup(grow, sgrowsiz) capped at max_grow (and for the main
    stack at trunc_page(RLIMIT_STACK) − ctob(vm_ssize)); MAP_WIREFUTURE: wired + grow >
    RLIMIT_MEMLOCK → KERN_NO_SPACE; size + grow > RLIMIT_VMEM → KERN_NO_SPACE. Growing down
    deletes a fully used gap or shrinks it from the top and inserts the new entry (gap restored
    if that fails); vm_ssize grows for the main stack; WIREFUTURE wires the new range.
    """
    addr = int(addr)
    if not 0 <= addr <= _M64:
        raise ValueError(f"address {addr:#x} is not a 64-bit address")
    vm_map_lock_read(map)
    try:
        return _vm_map_growstack(map, addr, None)
    finally:
        if map.lock.held_by(curthread().name):
            vm_map_unlock_read(map)


def _vm_map_growstack(map: VmMap, addr: int, gap_entry: Any) -> KERN:
    """The body, called with the map read-locked (from vm_map_lookup); returns read-locked."""
    from .sysctl import sysctl
    from .vm_map import (
        _insert,
        vm_map_entry_pred,
        vm_map_entry_resize,
        vm_map_entry_succ,
        vm_map_lookup_entry,
    )

    vm = map.vmspace
    if vm is None or getattr(vm, "p_textvp", None) is None:
        return _fail(map, KERN.FAILURE, "the map is not a running process's own map", addr)
    from .vmspace import RLIMIT_MEMLOCK, RLIMIT_STACK, RLIMIT_VMEM, getrlimit

    lmemlim = getrlimit(vm, RLIMIT_MEMLOCK)
    stacklim = getrlimit(vm, RLIMIT_STACK)
    vmemlim = getrlimit(vm, RLIMIT_VMEM)
    if gap_entry is None:
        found, gap_entry = vm_map_lookup_entry(map, addr)
        if not found:
            return _fail(map, KERN.FAILURE, "the address is not in a stack gap", addr)
    if not gap_entry.eflags & MAP_ENTRY.GUARD:
        return KERN.SUCCESS
    if gap_entry.eflags & MAP_ENTRY.STACK_GAP_DN:
        stack_entry = vm_map_entry_succ(gap_entry)
        if (not stack_entry.eflags & MAP_ENTRY.GROWS_DOWN
                or stack_entry.start != gap_entry.end):
            return _fail(map, KERN.FAILURE, "no GROWS_DOWN stack right above the gap", addr)
        grow_amount = round_page(stack_entry.start - addr)
        grow_down = True
    elif gap_entry.eflags & MAP_ENTRY.STACK_GAP_UP:
        stack_entry = vm_map_entry_pred(gap_entry)
        if not stack_entry.eflags & MAP_ENTRY.GROWS_UP or stack_entry.end != gap_entry.start:
            return _fail(map, KERN.FAILURE, "no GROWS_UP stack right below the gap", addr)
        grow_amount = round_page(addr + 1 - stack_entry.end)
        grow_down = False
    else:
        return _fail(map, KERN.FAILURE, "the guard is not a stack gap", addr)
    guard = 0 if getattr(vm, "stkgap_disable", False) else gap_entry.next_read
    max_grow = gap_entry.end - gap_entry.start
    if guard > max_grow:
        return _fail(map, KERN.NO_SPACE, "the gap is smaller than the guard", addr)
    max_grow -= guard
    if grow_amount > max_grow:
        return _fail(map, KERN.NO_SPACE,
                     f"growing by {grow_amount:#x} would eat into the {guard:#x}-byte guard "
                     f"(at most {max_grow:#x} can be used)", addr)
    is_procstack = vm.vm_maxsaddr <= addr < vm.vm_stacktop
    ssize = vm.vm_ssize << PAGE_SHIFT
    if is_procstack and ssize + grow_amount > stacklim:
        return _fail(map, KERN.NO_SPACE,
                     f"the main stack would exceed RLIMIT_STACK ({stacklim:#x})", addr)
    sgrowsiz = sysctl("kern.sgrowsiz")
    asked = grow_amount
    grow_amount = -(-grow_amount // sgrowsiz) * sgrowsiz
    if grow_amount > max_grow:
        grow_amount = max_grow
    if is_procstack and ssize + grow_amount > stacklim:
        grow_amount = (stacklim & ~0xFFF) - ssize
    if map.flags & VM_MAP_FLAGS.WIREFUTURE and (
        (map.pmap.wired_count << PAGE_SHIFT) + grow_amount > lmemlim
    ):
        return _fail(map, KERN.NO_SPACE, "RLIMIT_MEMLOCK", addr)
    if map.size + grow_amount > vmemlim:
        return _fail(map, KERN.NO_SPACE, f"the map would exceed RLIMIT_VMEM ({vmemlim:#x})",
                     addr)
    if vm_map_lock_upgrade(map):
        from .lock import LockWouldBlock

        vm_map_lock_read(map)
        raise LockWouldBlock("vm_map_growstack: other threads share the map lock; the "
                             "faulting thread would sleep")
    # The gap's offset holds the stack's protections (prot | PROT_MAX(max), set by
    # vm_map_stack_locked); a gap made some other way falls back to the stack entry's.
    gap_prot = int(gap_entry.offset)
    if gap_prot:
        prot, maxp = gap_prot & 0xFF, (gap_prot >> 16) & 0xFF
    else:
        prot, maxp = int(stack_entry.protection), int(stack_entry.max_protection)
    sgp = gap_entry.next_read
    gap_start, gap_end = gap_entry.start, gap_entry.end
    if grow_down:
        grow_start = gap_end - grow_amount
        if gap_start + grow_amount == gap_end:
            _delete_gap(map, gap_entry)
            gap_deleted = True
        else:
            vm_map_entry_resize(map, gap_entry, -grow_amount)
            gap_deleted = False
        rv = _insert(map, None, 0, grow_start, grow_start + grow_amount, prot, maxp,
                     int(MAP.STACK_GROWS_DOWN))
        if rv != KERN.SUCCESS:
            if gap_deleted:
                _insert(map, None, 0, gap_start, gap_end, int(VM_PROT.NONE), int(VM_PROT.NONE),
                        int(MAP.CREATE_GUARD | MAP.CREATE_STACK_GAP_DN))
                found, g = vm_map_lookup_entry(map, gap_start)
                g.next_read = sgp
                g.offset = gap_prot
            else:
                vm_map_entry_resize(map, gap_entry, grow_amount)
    else:
        grow_start = stack_entry.end
        from .vm_map import _try_merge  # noqa: F401  (UP stacks extend in place)

        if gap_entry.start + grow_amount == gap_entry.end:
            _delete_gap(map, gap_entry)
        else:
            _shrink_gap_from_bottom(map, gap_entry, grow_amount)
        vm_map_entry_resize(map, stack_entry, grow_amount)
        map.size += grow_amount
        rv = KERN.SUCCESS
    if rv == KERN.SUCCESS and is_procstack:
        vm.vm_ssize += grow_amount >> PAGE_SHIFT
    if rv == KERN.SUCCESS:
        if _tracing(map):
            _rec(map, "grow",
                 f"The stack grows by {grow_amount:#x} bytes ({asked:#x} needed, rounded up to "
                 f"sgrowsiz {sgrowsiz:#x}): new entry [{grow_start:#x}, "
                 f"{grow_start + grow_amount:#x}); the gap "
             f"{'is used up' if grow_down and gap_start + grow_amount == gap_end else 'shrinks'}.",
             addr=addr, rv=0, grow=grow_amount, asked=asked, start=grow_start,
             end=grow_start + grow_amount, guard=guard, procstack=is_procstack,
             ssize=vm.vm_ssize)
        if map.flags & VM_MAP_FLAGS.WIREFUTURE:
            from .vm_sync import VM_MAP_WIRE_NOHOLES, VM_MAP_WIRE_USER, vm_map_wire_locked

            rv = vm_map_wire_locked(map, grow_start, grow_start + grow_amount,
                                    VM_MAP_WIRE_USER | VM_MAP_WIRE_NOHOLES)
    else:
        if _tracing(map):
            _rec(map, "grow", f"Inserting the new stack entry failed ({KERN(rv).name}); the gap "
                 "is restored.", addr=addr, rv=int(rv), grow=0, reason="insert failed")
    vm_map_lock_downgrade(map)
    return KERN(rv)


def _delete_gap(map: VmMap, gap_entry: Any) -> None:
    """vm_map_entry_delete of the gap (a guard: no object, not counted in size)."""
    from .vm_map import _delete

    _delete(map, gap_entry.start, gap_entry.end)


def _shrink_gap_from_bottom(map: VmMap, gap_entry: Any, amount: int) -> None:
    """GROWS_UP: the gap loses ``amount`` at its bottom (FreeBSD moves gap.start up)."""
    from .vm_map import _clip_start, _delete

    start = gap_entry.start
    _clip_start(map, gap_entry.id, start + amount)
    _delete(map, start, start + amount)

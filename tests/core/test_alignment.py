"""Unaligned addresses and sizes: every vm_map_* entry point that turns them into entry
boundaries raises VmMapUnaligned (a ValueError) naming the function and the argument, before it
changes anything — entries, tree, counters, timestamp and lock. FreeBSD's vm_map code assumes
page-aligned arguments (its callers in vm_mmap.c round first); vm_map_findspace and
vm_map_lookup_entry accept any value, as in FreeBSD."""

from __future__ import annotations

import pytest
from core_util import full_state

from vmlab.core import (
    KERN,
    MAP,
    OBJT,
    VM_INHERIT,
    VM_MAP_PROTECT,
    VM_PROT,
    VMFS,
    VmMapUnaligned,
    vm_map_check,
    vm_map_check_protection,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_create,
    vm_map_delete,
    vm_map_entry_resize,
    vm_map_find,
    vm_map_find_aligned,
    vm_map_find_min,
    vm_map_findspace,
    vm_map_fixed,
    vm_map_inherit,
    vm_map_init,
    vm_map_insert,
    vm_map_lock,
    vm_map_lookup_entry,
    vm_map_pmap_enter,
    vm_map_protect,
    vm_map_remove,
    vm_map_stack,
    vm_map_stack_locked,
    vm_map_unlock,
    vm_object_allocate,
)

RW, ALL = VM_PROT.RW, VM_PROT.ALL


def _map():
    """[0x1000, 0x100000) with [0x2000, 0x5000) rw and [0x50000, 0x53000) r (unlocked)."""
    m = vm_map_create(None, 0x1000, 0x100000)
    vm_map_lock(m)
    assert vm_map_insert(m, None, 0, 0x2000, 0x5000, RW, ALL, 0) == KERN.SUCCESS
    assert vm_map_insert(m, None, 0, 0x50000, 0x53000, VM_PROT.READ, ALL, 0) == KERN.SUCCESS
    vm_map_unlock(m)
    return m


def _entry(m, addr):
    """The entry holding addr, found without splaying (so the tree keeps its shape)."""
    (e,) = [e for e in m.entries() if e.start <= addr < e.end]
    return e


OBJ = vm_object_allocate(OBJT.VNODE, 16)

# (function name, argument named in the message, needs the lock, call)
LOCKED = [
    ("vm_map_insert", "start=0x2001",
     lambda m: vm_map_insert(m, None, 0, 0x2001, 0x3000, RW, ALL, 0)),
    ("vm_map_insert", "start=0x10001",
     lambda m: vm_map_insert(m, None, 0, 0x10001, 0x12000, RW, ALL, 0)),
    ("vm_map_insert", "end=0x10800",
     lambda m: vm_map_insert(m, None, 0, 0x10000, 0x10800, RW, ALL, 0)),
    ("vm_map_insert", "offset=0x10",
     lambda m: vm_map_insert(m, OBJ, 0x10, 0x10000, 0x11000, RW, ALL, 0)),
    ("vm_map_delete", "start=0x2100", lambda m: vm_map_delete(m, 0x2100, 0x3000)),
    ("vm_map_delete", "end=0x2100", lambda m: vm_map_delete(m, 0x2000, 0x2100)),
    ("vm_map_clip_start", "startaddr=0x51800",
     lambda m: vm_map_clip_start(m, _entry(m, 0x51800), 0x51800)),
    ("vm_map_clip_end", "endaddr=0x3004",
     lambda m: vm_map_clip_end(m, _entry(m, 0x3004), 0x3004)),
    ("vm_map_check_protection", "end=0x4fff",
     lambda m: vm_map_check_protection(m, 0x2000, 0x4fff, VM_PROT.READ)),
    ("vm_map_entry_resize", "grow_amount=0x800",
     lambda m: vm_map_entry_resize(m, _entry(m, 0x50000), 0x800)),
    ("vm_map_entry_resize", "grow_amount=-0x800",
     lambda m: vm_map_entry_resize(m, _entry(m, 0x50000), -0x800)),
    ("vm_map_stack_locked", "addrbos=0x80800",
     lambda m: vm_map_stack_locked(m, 0x80800, 0x10000, 0x1000, RW, ALL,
                                   MAP.STACK_GROWS_DOWN)),
    ("vm_map_stack_locked", "growsize=0x1800",
     lambda m: vm_map_stack_locked(m, 0x80000, 0x10000, 0x1800, RW, ALL,
                                   MAP.STACK_GROWS_DOWN)),
    ("vm_map_find_aligned", "length=0x1001",
     lambda m: vm_map_find_aligned(m, 0x1000, 0x1001, 0, 0x10000)),
    ("vm_map_pmap_enter", "addr=0x2008",
     lambda m: vm_map_pmap_enter(m, 0x2008, VM_PROT.READ, OBJ, 0, 0x1000, 0)),
]

SELF_LOCKING = [
    ("vm_map_fixed", "length=0x1800",
     lambda m: vm_map_fixed(m, None, 0, 0x2000, 0x1800, RW, ALL, 0)),
    ("vm_map_fixed", "start=0x60010",
     lambda m: vm_map_fixed(m, None, 0, 0x60010, 0x1000, RW, ALL, 0)),
    ("vm_map_fixed", "offset=0x800",
     lambda m: vm_map_fixed(m, OBJ, 0x800, 0x60000, 0x1000, RW, ALL, 0)),
    ("vm_map_find", "addr=0x20010",
     lambda m: vm_map_find(m, None, 0, 0x20010, 0x1000, 0, VMFS.ANY_SPACE, RW, ALL, 0)),
    ("vm_map_find", "length=0x10",
     lambda m: vm_map_find(m, None, 0, 0, 0x10, 0, VMFS.ANY_SPACE, RW, ALL, 0)),
    ("vm_map_find", "offset=0x1",
     lambda m: vm_map_find(m, OBJ, 1, 0, 0x1000, 0, VMFS.ANY_SPACE, RW, ALL, 0)),
    # min_addr is only used on the retry: it must still be refused before the first try.
    ("vm_map_find_min", "min_addr=0x1001",
     lambda m: vm_map_find_min(m, None, 0, 0xff000, 0x2000, 0x1001, 0, VMFS.ANY_SPACE, RW,
                               ALL, 0)),
    ("vm_map_find_min", "addr=0x30001",
     lambda m: vm_map_find_min(m, None, 0, 0x30001, 0x1000, 0x1000, 0, VMFS.ANY_SPACE, RW,
                               ALL, 0)),
    ("vm_map_stack", "max_ssize=0x10080",
     lambda m: vm_map_stack(m, 0x80000, 0x10080, RW, ALL, MAP.STACK_GROWS_DOWN)),
    ("vm_map_stack", "addrbos=0x80004",
     lambda m: vm_map_stack(m, 0x80004, 0x10000, RW, ALL, MAP.STACK_GROWS_DOWN)),
    ("vm_map_protect", "end=0x2400",
     lambda m: vm_map_protect(m, 0x2000, 0x2400, VM_PROT.READ, 0,
                              VM_MAP_PROTECT.SET_PROT)),
    # even an empty range (FreeBSD's early KERN_SUCCESS) is refused when unaligned
    ("vm_map_protect", "start=0x2400",
     lambda m: vm_map_protect(m, 0x2400, 0x2400, VM_PROT.READ, 0,
                              VM_MAP_PROTECT.SET_PROT)),
    ("vm_map_inherit", "start=0x3800",
     lambda m: vm_map_inherit(m, 0x3800, 0x5000, VM_INHERIT.SHARE)),
    ("vm_map_remove", "end=0x2100", lambda m: vm_map_remove(m, 0x2000, 0x2100)),
    ("vm_map_remove", "start=0x1", lambda m: vm_map_remove(m, 0x1, 0x100000)),
]


def _check_refused(m, fname, arg, call):
    before = full_state(m)
    lock_before = (m.lock.mode, list(m.lock.holders))
    with pytest.raises(VmMapUnaligned) as ei:
        call(m)
    msg = str(ei.value)
    assert msg.startswith(f"{fname}: {arg} is not page-aligned"), msg
    assert "trunc_page gives" in msg and "round_page gives" in msg
    assert isinstance(ei.value, ValueError)
    assert full_state(m) == before
    assert (m.lock.mode, list(m.lock.holders)) == lock_before
    vm_map_check(m)


@pytest.mark.parametrize(("fname", "arg", "call"), LOCKED,
                         ids=[f"{n}:{a}" for n, a, _ in LOCKED])
def test_locked_functions_refuse_unaligned_and_change_nothing(fname, arg, call):
    m = _map()
    vm_map_lock(m)
    _check_refused(m, fname, arg, call)


@pytest.mark.parametrize(("fname", "arg", "call"), SELF_LOCKING,
                         ids=[f"{n}:{a}" for n, a, _ in SELF_LOCKING])
def test_self_locking_functions_refuse_unaligned_and_change_nothing(fname, arg, call):
    m = _map()
    _check_refused(m, fname, arg, call)
    assert m.lock.mode == "unlocked"


def test_message_names_the_nearest_aligned_values():
    m = _map()
    vm_map_lock(m)
    with pytest.raises(VmMapUnaligned, match=r"trunc_page gives 0x2000 and round_page gives "
                                             r"0x3000"):
        vm_map_insert(m, None, 0, 0x2001, 0x3000, RW, ALL, 0)


def test_create_and_init_refuse_unaligned_bounds():
    with pytest.raises(VmMapUnaligned, match=r"^vm_map_create: min=0x1001 "):
        vm_map_create(None, 0x1001, 0x100000)
    with pytest.raises(VmMapUnaligned, match=r"^vm_map_create: max=0xfffff "):
        vm_map_create(None, 0x1000, 0xfffff)
    m = _map()
    before = full_state(m)
    with pytest.raises(VmMapUnaligned, match=r"^vm_map_init: max=0x200010 "):
        vm_map_init(m, None, 0x1000, 0x200010)
    assert full_state(m) == before


def test_findspace_and_lookup_accept_any_value():
    """FreeBSD calls these with arbitrary addresses and sizes (faults, alignment searches)."""
    m = _map()
    vm_map_lock(m)
    assert vm_map_findspace(m, 0x5001, 0x123) == 0x5001
    assert vm_map_findspace(m, 0x1800, 0x800) == 0x1800
    found, e = vm_map_lookup_entry(m, 0x2abc)
    assert found and (e.start, e.end) == (0x2000, 0x5000)


def test_aligned_neighbours_of_the_refused_calls_work():
    """The same calls rounded as the syscalls round them succeed (so the check is the only
    thing that stopped them)."""
    m = _map()
    vm_map_lock(m)
    assert vm_map_insert(m, None, 0, 0x10000, 0x11000, RW, ALL, 0) == KERN.SUCCESS
    e = _entry(m, 0x51000)
    assert vm_map_clip_start(m, e, 0x51000) == KERN.SUCCESS
    assert (e.start, e.end) == (0x51000, 0x53000)
    vm_map_unlock(m)
    assert vm_map_fixed(m, None, 0, 0x2000, 0x2000, RW, ALL, 0) == KERN.SUCCESS
    assert vm_map_protect(m, 0x2000, 0x3000, VM_PROT.READ, 0,
                          VM_MAP_PROTECT.SET_PROT) == KERN.SUCCESS
    assert vm_map_remove(m, 0x2000, 0x3000) == KERN.SUCCESS
    assert [(x.start, x.end) for x in m.entries()] == [
        (0x3000, 0x4000), (0x4000, 0x5000), (0x10000, 0x11000), (0x50000, 0x51000),
        (0x51000, 0x53000)]
    vm_map_check(m)


def test_sgrowsiz_must_be_a_page_multiple() -> None:
    """The model refuses a kern.sgrowsiz that would make unaligned stack entries; the
    tunable keeps its old value."""
    from vmlab.core import sysctl

    old = sysctl("kern.sgrowsiz")
    for bad in (0x1800, 0, -0x1000):
        with pytest.raises(ValueError, match="multiple of PAGE_SIZE"):
            sysctl("kern.sgrowsiz", bad)
        assert sysctl("kern.sgrowsiz") == old
    assert sysctl("kern.sgrowsiz", 0x4000) == old
    assert sysctl("kern.sgrowsiz", old) == 0x4000

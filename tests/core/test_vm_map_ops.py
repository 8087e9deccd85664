"""vm_map operations: return codes, entries after clipping and merging, addresses, locks."""

from __future__ import annotations

import pytest
from core_util import full_state, logical_state

from vmlab.core import (
    KERN,
    MAP,
    MAP_ENTRY,
    OBJT,
    USRSTACK,
    VM_INHERIT,
    VM_MAP_FLAGS,
    VM_MAP_PROTECT,
    VM_PROT,
    VMFS,
    VMFS_ALIGNED_SPACE,
    LockNotHeld,
    LockRecursion,
    LockWouldBlock,
    as_thread,
    recording,
    sysctl,
    vm_map_aslr_seed,
    vm_map_check,
    vm_map_check_protection,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_create,
    vm_map_delete,
    vm_map_entry_pred,
    vm_map_entry_succ,
    vm_map_find,
    vm_map_find_min,
    vm_map_findspace,
    vm_map_fixed,
    vm_map_inherit,
    vm_map_insert,
    vm_map_lock,
    vm_map_lock_downgrade,
    vm_map_lock_read,
    vm_map_lock_upgrade,
    vm_map_lookup_entry,
    vm_map_max,
    vm_map_min,
    vm_map_modflags,
    vm_map_protect,
    vm_map_remove,
    vm_map_stack,
    vm_map_stack_locked,
    vm_map_trylock,
    vm_map_trylock_read,
    vm_map_unlock,
    vm_map_unlock_read,
    vm_object_allocate,
    vm_object_allocate_anon,
)
from vmlab.core.vm_object import OBJ_ANON

RW, ALL, R = VM_PROT.RW, VM_PROT.ALL, VM_PROT.READ
MB = 1 << 20


def locked_map(lo=0x1000, hi=0x100000):
    m = vm_map_create(None, lo, hi)
    vm_map_lock(m)
    return m


def spans(m):
    return [(e.start, e.end) for e in m.entries()]


# --- creation, header, locks -------------------------------------------------------------


def test_create_header_bounds_reversed():
    m = vm_map_create(None, 0x1000, 0x100000)
    assert vm_map_min(m) == 0x1000 and vm_map_max(m) == 0x100000
    h = m.header
    assert h.start == 0x100000 and h.end == 0x1000
    assert h.eflags == MAP_ENTRY.HEADER
    assert (m.nentries, m.size, m.timestamp, m.anon_loc, int(m.flags)) == (0, 0, 0, 0, 0)
    assert m.entries() == []
    assert vm_map_entry_succ(h) == h and vm_map_entry_pred(h) == h


def test_lock_timestamps_follow_freebsd():
    m = vm_map_create(None, 0, 0x100000)
    vm_map_lock(m)
    assert m.timestamp == 1 and m.lock.mode == "exclusive" and m.lock.holders == ["td0"]
    vm_map_unlock(m)
    vm_map_lock_read(m)
    assert m.timestamp == 1 and m.lock.mode == "shared"
    assert vm_map_lock_upgrade(m) == 0 and m.timestamp == 2 and m.lock.mode == "exclusive"
    vm_map_lock_downgrade(m)
    assert m.timestamp == 2 and m.lock.mode == "shared"
    vm_map_unlock_read(m)
    assert vm_map_trylock(m) == 1 and m.timestamp == 3
    vm_map_unlock(m)
    assert vm_map_trylock_read(m) == 1 and m.timestamp == 3
    vm_map_unlock_read(m)
    assert m.lock.mode == "unlocked"


def test_two_threads_contend():
    m = vm_map_create(None, 0, 0x100000)
    with as_thread("A"):
        vm_map_lock(m)
    assert m.lock.holders == ["A"]
    with as_thread("B"):
        assert vm_map_trylock(m) == 0 and vm_map_trylock_read(m) == 0
        with pytest.raises(LockWouldBlock):
            vm_map_lock(m)
        with pytest.raises(LockNotHeld):
            vm_map_unlock(m)
    assert m.timestamp == 1
    vm_map_unlock(m, thread="A")
    vm_map_lock_read(m, thread="A")
    vm_map_lock_read(m, thread="B")
    assert sorted(m.lock.holders) == ["A", "B"]
    # upgrade fails with another reader: the caller ends up holding nothing
    assert vm_map_lock_upgrade(m, thread="A") == 1
    assert m.lock.holders == ["B"] and m.timestamp == 1
    vm_map_unlock_read(m, thread="B")
    vm_map_lock(m, thread="C")
    with pytest.raises(LockRecursion):
        vm_map_lock(m, thread="C")
    assert m.timestamp == 2 and m.lock.holders == ["C"]


def test_locked_functions_require_the_lock():
    m = vm_map_create(None, 0, 0x100000)
    with pytest.raises(LockNotHeld, match="vm_map_insert"):
        vm_map_insert(m, None, 0, 0x1000, 0x2000, RW, ALL, 0)
    with pytest.raises(LockNotHeld):
        vm_map_findspace(m, 0, 0x1000)
    with pytest.raises(LockNotHeld):
        vm_map_delete(m, 0, 0x1000)
    with pytest.raises(LockNotHeld):
        vm_map_lookup_entry(m, 0)
    with pytest.raises(LockNotHeld):
        vm_map_modflags(m, VM_MAP_FLAGS.WXORX, 0)
    vm_map_lock_read(m)
    assert vm_map_lookup_entry(m, 0x1000)[0] is False  # a read lock is enough
    assert vm_map_check_protection(m, 0, 0x1000, 0) is False
    with pytest.raises(LockNotHeld):
        vm_map_insert(m, None, 0, 0x1000, 0x2000, RW, ALL, 0)
    vm_map_unlock_read(m)
    with as_thread("other"):
        vm_map_lock(m)
    with pytest.raises(LockNotHeld):  # held, but by another thread
        vm_map_insert(m, None, 0, 0x1000, 0x2000, RW, ALL, 0)


def test_shared_lookup_splays_only_for_a_lone_reader():
    m = locked_map()
    for a in (0x2000, 0x4000, 0x6000):
        vm_map_insert(m, None, 0, a, a + 0x1000, R if a == 0x4000 else RW, ALL, 0)
    vm_map_unlock(m)
    vm_map_lock_read(m, thread="A")
    vm_map_lock_read(m, thread="B")
    root = m.root
    with as_thread("A"):
        assert vm_map_lookup_entry(m, 0x2000)[0]
    assert m.root == root  # two readers: plain search, no splay
    vm_map_unlock_read(m, thread="B")
    with as_thread("A"):
        found, e = vm_map_lookup_entry(m, 0x2000)
    assert found and m.root == e.id and m.timestamp == 1


# --- insert --------------------------------------------------------------------------------


def test_issue_example():
    m = vm_map_create(None, 0x1000, 0x100000)
    vm_map_lock(m)
    assert vm_map_insert(m, None, 0, 0x2000, 0x3000, RW, ALL, 0) == KERN.SUCCESS
    assert vm_map_findspace(m, 0x1000, 0x2000) == 0x3000
    vm_map_unlock(m)
    html = m.entries()._repr_html_()
    assert "0x2000" in html and "rw-" in html and "rwx" in html


def test_insert_error_codes_in_order():
    m = locked_map()
    assert vm_map_insert(m, None, 0, 0x2000, 0x2000, RW, ALL, 0) == KERN.INVALID_ADDRESS
    assert vm_map_insert(m, None, 0, 0x3000, 0x2000, RW, ALL, 0) == KERN.INVALID_ADDRESS
    assert vm_map_insert(m, None, 0, 0x0, 0x2000, RW, ALL, 0) == KERN.INVALID_ADDRESS
    assert vm_map_insert(m, None, 0, 0xFF000, 0x201000, RW, ALL, 0) == KERN.INVALID_ADDRESS
    vm_map_modflags(m, VM_MAP_FLAGS.WXORX, 0)
    assert vm_map_insert(m, None, 0, 0x2000, 0x3000, ALL, ALL, 0) == KERN.PROTECTION_FAILURE
    vm_map_modflags(m, 0, VM_MAP_FLAGS.WXORX)
    assert vm_map_insert(m, None, 0, 0x4000, 0x6000, RW, ALL, 0) == KERN.SUCCESS
    assert vm_map_insert(m, None, 0, 0x5000, 0x7000, RW, ALL, 0) == KERN.NO_SPACE
    assert vm_map_insert(m, None, 0, 0x3000, 0x5000, RW, ALL, 0) == KERN.NO_SPACE
    obj = vm_object_allocate(OBJT.VNODE, 1)
    assert (vm_map_insert(m, obj, 0, 0x8000, 0x9000, 0, 0, MAP.CREATE_GUARD)
            == KERN.INVALID_ARGUMENT)
    assert (vm_map_insert(m, None, 0, 0x8000, 0x9000, 0, R, MAP.CREATE_GUARD)
            == KERN.INVALID_ARGUMENT)
    # split boundary index 3 does not exist on amd64; index 1 (2 MiB) needs aligned bounds
    assert vm_map_insert(m, None, 0, 0x8000, 0x9000, RW, ALL, 3 << 19) == KERN.INVALID_ARGUMENT
    assert vm_map_insert(m, None, 0, 0x8000, 0x9000, RW, ALL, 1 << 19) == KERN.INVALID_ARGUMENT
    with pytest.raises(ValueError, match="subset"):
        vm_map_insert(m, None, 0, 0x8000, 0x9000, ALL, R, 0)
    with pytest.raises(ValueError, match="unknown MAP"):
        vm_map_insert(m, None, 0, 0x8000, 0x9000, RW, ALL, 1 << 30)
    with pytest.raises(TypeError):
        vm_map_insert(m, None, 0, "0x8000", 0x9000, RW, ALL, 0)
    with pytest.raises(ValueError):
        vm_map_insert(m, None, 0, -0x1000, 0x9000, RW, ALL, 0)
    vm_map_check(m)
    assert spans(m) == [(0x4000, 0x6000)]


def test_insert_extends_previous_anonymous_entry():
    m = locked_map()
    vm_map_insert(m, None, 0, 0x2000, 0x3000, RW, ALL, 0)
    (e,) = m.entries()
    assert vm_map_insert(m, None, 0, 0x3000, 0x5000, RW, ALL, 0) == 0
    assert m.entries() == [e] and (e.start, e.end) == (0x2000, 0x5000)
    assert m.size == 0x3000 and m.nentries == 1
    # different protection: a new entry (no object yet, so nothing to share)
    vm_map_insert(m, None, 0, 0x5000, 0x6000, R, ALL, 0)
    assert spans(m) == [(0x2000, 0x5000), (0x5000, 0x6000)]
    # filling the hole between two equal entries merges all three
    vm_map_insert(m, None, 0, 0x8000, 0x9000, R, ALL, 0)
    vm_map_insert(m, None, 0, 0x6000, 0x8000, R, ALL, 0)
    assert spans(m) == [(0x2000, 0x5000), (0x5000, 0x9000)]
    assert m.nentries == 2 and m.size == 0x7000
    vm_map_check(m)


def test_insert_cow_flags_and_inheritance():
    m = locked_map()
    obj = vm_object_allocate(OBJT.VNODE, 4)
    cow = MAP.COPY_ON_WRITE | MAP.DISABLE_COREDUMP | MAP.DISABLE_SYNCER
    assert vm_map_insert(m, obj, 0x1000, 0x10000, 0x13000, R, ALL, cow) == 0
    (e,) = m.entries()
    assert e.eflags == (
        MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY | MAP_ENTRY.NOCOREDUMP | MAP_ENTRY.NOSYNC
    )
    with pytest.raises(ValueError, match="paradoxical"):
        vm_map_insert(m, obj, 0, 0x40000, 0x41000, R, ALL, MAP.NOFAULT)
    assert e.inheritance == VM_INHERIT.COPY and e.offset == 0x1000 and e.object is obj
    assert e.read_ahead == 15 and e.next_read == 0x10000 and e.wired_count == 0
    vm_map_insert(m, None, 0, 0x20000, 0x21000, RW, ALL, MAP.INHERIT_SHARE)
    assert m.entries()[1].inheritance == VM_INHERIT.SHARE
    assert m.entries()[1].cred is not None  # writable anonymous memory is charged
    vm_map_insert(m, None, 0, 0x30000, 0x31000, 0, 0, MAP.CREATE_GUARD)
    g = m.entries()[2]
    assert g.eflags == MAP_ENTRY.GUARD and g.cred is None
    assert m.size == 0x4000 and m.nentries == 3  # guards count in nentries, not size


def test_anon_object_sharing_clears_onemapping():
    m = locked_map()
    obj = vm_object_allocate_anon(4)
    assert obj.flags & OBJ_ANON and obj.type == OBJT.SWAP
    assert not vm_object_allocate(OBJT.SWAP, 4).flags & OBJ_ANON
    obj.ref_count = 2
    vm_map_insert(m, obj, 0, 0x10000, 0x14000, RW, ALL, 0)
    from vmlab.core.vm_object import OBJ_ONEMAPPING
    assert not obj.flags & OBJ_ONEMAPPING


# --- clip -----------------------------------------------------------------------------------


def test_clip_offsets_and_object_sharing():
    m = locked_map()
    vm_map_insert(m, None, 0, 0x10000, 0x20000, RW, ALL, 0)
    found, e = vm_map_lookup_entry(m, 0x14000)
    assert vm_map_clip_start(m, e, 0x14000) == KERN.SUCCESS
    assert (e.start, e.end, e.offset) == (0x14000, 0x20000, 0x4000)
    front = vm_map_entry_pred(e)
    assert (front.start, front.end, front.offset) == (0x10000, 0x14000, 0)
    # the clip gave the entry an anonymous object first, shared by both halves
    assert e.object is not None and front.object is e.object and e.object.ref_count == 2
    assert vm_map_clip_end(m, e, 0x18000) == KERN.SUCCESS
    assert (e.start, e.end, e.offset) == (0x14000, 0x18000, 0x4000)
    back = vm_map_entry_succ(e)
    assert (back.start, back.end, back.offset) == (0x18000, 0x20000, 0x8000)
    assert e.object.ref_count == 3 and m.nentries == 3 and m.size == 0x10000
    # clipping at or outside the edges does nothing
    assert vm_map_clip_start(m, e, 0x14000) == 0 and vm_map_clip_end(m, e, 0x18000) == 0
    with pytest.raises(ValueError):
        vm_map_clip_start(m, e, 0x30000)
    vm_map_check(m)


def test_clip_split_boundary():
    m = locked_map(0, 1 << 30)
    vm_map_insert(m, None, 0, 2 * MB, 6 * MB, RW, ALL, 1 << 19)
    (e,) = m.entries()
    assert e.eflags & MAP_ENTRY.SPLIT_BOUNDARY_MASK == 1 << 20
    before = full_state(m)
    assert vm_map_clip_start(m, e, 3 * MB) == KERN.INVALID_ARGUMENT
    assert vm_map_clip_end(m, e, 5 * MB - 0x1000) == KERN.INVALID_ARGUMENT
    assert full_state(m) == before
    assert vm_map_clip_start(m, e, 4 * MB) == KERN.SUCCESS
    assert vm_map_delete(m, 5 * MB, 6 * MB) == KERN.INVALID_ARGUMENT


# --- findspace ------------------------------------------------------------------------------


def test_findspace_first_fit_and_failure_value():
    m = locked_map(0x1000, 0x100000)
    assert vm_map_findspace(m, 0, 0x5000) == 0x1000  # empty map: start clamped to min
    for a, b in [(0x1000, 0x3000), (0x4000, 0x5000), (0x7000, 0x9000)]:
        vm_map_insert(m, None, 0, a, b, [R, RW, R][a % 3], ALL, 0)
    assert vm_map_findspace(m, 0x1000, 0x1000) == 0x3000
    assert vm_map_findspace(m, 0x1000, 0x2000) == 0x5000
    assert vm_map_findspace(m, 0x2000, 0x1000) == 0x3000  # start inside an entry
    assert vm_map_findspace(m, 0x5800, 0x1000) == 0x5800
    assert vm_map_findspace(m, 0x5800, 0x3000) == 0x9000
    mx = vm_map_max(m)
    assert vm_map_findspace(m, 0x1000, 0x100000) == mx - 0x100000 + 1
    assert vm_map_findspace(m, mx, 0x1000) == mx - 0x1000 + 1
    assert vm_map_findspace(m, 0x1000, 1 << 64 - 1) == (mx - (1 << 64 - 1) + 1) % (1 << 64)
    vm_map_check(m)


# --- find -----------------------------------------------------------------------------------


def test_find_any_space_hint_and_max_addr():
    m = vm_map_create(None, 0x10000, 0x1000000)
    rv, a = vm_map_find(m, None, 0, 0x20000, 0x3000, 0, VMFS.ANY_SPACE, RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x20000)
    # a hint of 0 clusters anonymous memory after anon_loc
    assert m.anon_loc == 0  # hinted (vm.cluster_anon 1): no clustering, no anon_loc update
    rv, a = vm_map_find(m, None, 0, 0, 0x1000, 0, VMFS.ANY_SPACE, R, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x10000) and m.anon_loc == 0x11000
    rv, a = vm_map_find(m, None, 0, 0, 0x1000, 0, VMFS.ANY_SPACE, RW, ALL, 0)
    assert a == 0x11000 and m.anon_loc == 0x12000
    rv, a = vm_map_find(m, None, 0, 0x30000, 0x10000, 0x35000, VMFS.ANY_SPACE, RW, ALL, 0)
    assert rv == KERN.NO_SPACE
    rv, a = vm_map_find(m, None, 0, 0, 0x2000000, 0, VMFS.ANY_SPACE, RW, ALL, 0)
    assert rv == KERN.NO_SPACE
    vm_map_check(m)


def test_find_aligned_super_and_optimal():
    m = vm_map_create(None, 0x10000, 1 << 40)
    vm_map_fixed(m, None, 0, 0x10000, 0x1000, RW, ALL, 0)
    rv, a = vm_map_find(m, None, 0, 0x11000, 0x5000, 0, VMFS_ALIGNED_SPACE(16), RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x20000)
    rv, a = vm_map_find(m, None, 0, 0x11000, 4 * MB, 0, VMFS.SUPER_SPACE, RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 2 * MB)
    # too small for a superpage: no alignment
    rv, a = vm_map_find(m, None, 0, 0x11000, 0x1000, 0, VMFS.SUPER_SPACE, RW, ALL, 0)
    assert a == 0x11000
    # OPTIMAL without a coloured object is ANY; with one, superpage aligned
    m2 = vm_map_create(None, 0x10000, 1 << 40)
    rv, a = vm_map_find(m2, None, 0, 0x11000, 4 * MB, 0, VMFS.OPTIMAL_SPACE, RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x11000)
    obj = vm_object_allocate(OBJT.SWAP, 1024)  # OBJ_COLORED
    rv, a = vm_map_find(m2, obj, 0, 0x11000, 4 * MB, 0, VMFS.OPTIMAL_SPACE, RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 6 * MB)  # after [0x11000, 0x411000), rounded to 2 MiB
    # aligned search that cannot fit under max_addr: NO_SPACE; OPTIMAL falls back to ANY
    small = vm_map_create(None, 0x1000, 0x300000)
    obj2 = vm_object_allocate(OBJT.SWAP, 1024)
    rv, a = vm_map_find(small, obj2, 0, 0x1000, 2 * MB, 0, VMFS.OPTIMAL_SPACE, RW, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x1000)
    small2 = vm_map_create(None, 0x1000, 0x300000)
    rv, _ = vm_map_find(small2, None, 0, 0x1000, 2 * MB, 0, VMFS.SUPER_SPACE, RW, ALL, 0)
    assert rv == KERN.NO_SPACE
    with pytest.raises(ValueError):
        vm_map_find(m, None, 0, 0, 0x1000, 0, 7, RW, ALL, 0)
    vm_map_check(m)


def test_find_remap_and_no_space_mode():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x20000, 0x4000, R, ALL, 0)
    rv, a = vm_map_find(m, None, 0, 0x21000, 0x1000, 0, VMFS.NO_SPACE, RW, ALL, 0)
    assert rv == KERN.NO_SPACE
    rv, a = vm_map_find(m, None, 0, 0x21000, 0x1000, 0, VMFS.NO_SPACE, RW, ALL, MAP.REMAP)
    assert (rv, a) == (KERN.SUCCESS, 0x21000)
    assert spans(m) == [(0x20000, 0x21000), (0x21000, 0x22000), (0x22000, 0x24000)]
    rv, _ = vm_map_find(m, None, 0, 0xFF000, 0x2000, 0, VMFS.NO_SPACE, RW, ALL, MAP.REMAP)
    assert rv == KERN.INVALID_ADDRESS


def test_find_min_retries_from_min_addr():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x80000, 0x80000, RW, ALL, 0)
    rv, a = vm_map_find_min(m, None, 0, 0x90000, 0x1000, 0x20000, 0, VMFS.ANY_SPACE, R, ALL, 0)
    assert (rv, a) == (KERN.SUCCESS, 0x20000)


def test_find_aslr_is_seeded_and_reproducible():
    def run(seed):
        m = vm_map_create(None, 0x10000, 1 << 47)
        vm_map_lock(m)
        vm_map_modflags(m, VM_MAP_FLAGS.ASLR, 0)
        vm_map_unlock(m)
        vm_map_aslr_seed(m, seed)
        return [vm_map_find(m, None, 0, 0x100000, 0x1000, 0, VMFS.ANY_SPACE, RW, ALL, 0)[1]
                for _ in range(3)]

    a, b = run(1), run(1)
    assert a == b and all(x % 0x1000 == 0 for x in a) and len(set(a)) == 3
    assert all(0x100000 <= x < 0x100000 + 0x1000 * 0x1000 * 3 for x in a)


def test_fixed_replaces_and_check_excl():
    m = vm_map_create(None, 0x10000, 0x100000)
    assert vm_map_fixed(m, None, 0, 0x20000, 0x4000, R, ALL, 0) == 0
    assert vm_map_fixed(m, None, 0, 0x21000, 0x1000, RW, ALL, MAP.CHECK_EXCL) == KERN.NO_SPACE
    assert vm_map_fixed(m, None, 0, 0x21000, 0x1000, RW, ALL, 0) == 0
    assert spans(m) == [(0x20000, 0x21000), (0x21000, 0x22000), (0x22000, 0x24000)]
    # a range that wraps past 2**64 clamps to an empty range: insert says INVALID_ADDRESS
    assert vm_map_fixed(m, None, 0, 0x30000, (1 << 64) - 0x1000, RW, ALL, 0) == 1
    vm_map_check(m)


# --- stacks ---------------------------------------------------------------------------------


def test_stack_down_layout_and_errors():
    m = vm_map_create(None, 0x1000, USRSTACK + 0x1000)
    base = USRSTACK - 8 * MB
    assert vm_map_stack(m, base, 8 * MB, RW, ALL, MAP.STACK_GROWS_DOWN) == 0
    gap, stk = m.entries()
    assert (stk.start, stk.end) == (USRSTACK - 0x20000, USRSTACK)
    assert stk.eflags == MAP_ENTRY.GROWS_DOWN
    assert (gap.start, gap.end) == (base, USRSTACK - 0x20000)
    assert gap.eflags == MAP_ENTRY.GUARD | MAP_ENTRY.STACK_GAP_DN
    assert gap.protection == 0 and gap.max_protection == 0 and gap.next_read == 0x1000
    assert m.size == 0x20000 and m.nentries == 2
    vm_map_lock(m)
    assert vm_map_stack_locked(m, base, 8 * MB, 0x20000, RW, ALL,
                               MAP.STACK_GROWS_DOWN) == KERN.NO_SPACE
    assert vm_map_stack_locked(m, 0x10000, 0, 0x20000, RW, ALL,
                               MAP.STACK_GROWS_DOWN) == KERN.INVALID_ADDRESS
    assert vm_map_stack_locked(m, 0x10000, 0x1000, 0x20000, RW, ALL,
                               MAP.STACK_GROWS_DOWN) == KERN.INVALID_ARGUMENT
    # small stack: init = max_ssize - guard
    assert vm_map_stack_locked(m, 0x10000, 0x4000, 0x20000, RW, ALL,
                               MAP.STACK_GROWS_UP) == 0
    up = [e for e in m.entries() if e.eflags & MAP_ENTRY.GROWS_UP][0]
    assert (up.start, up.end) == (0x10000, 0x13000)
    assert vm_map_entry_succ(up).eflags == MAP_ENTRY.GUARD | MAP_ENTRY.STACK_GAP_UP
    vm_map_check(m)


def test_find_with_stack_bits_goes_to_stack_locked():
    m = vm_map_create(None, 0x1000, 1 << 40)
    sysctl("kern.sgrowsiz", 0x4000)
    rv, a = vm_map_find(m, None, 0, 0x100000, 0x10000, 0, VMFS.ANY_SPACE, RW, ALL,
                        MAP.STACK_GROWS_DOWN)
    assert (rv, a) == (KERN.SUCCESS, 0x100000)
    assert spans(m) == [(0x100000, 0x10C000), (0x10C000, 0x110000)]
    sysctl("security.bsd.stack_guard_page", 0)
    assert vm_map_fixed(m, None, 0, 0x200000, 0x4000, RW, ALL, MAP.STACK_GROWS_DOWN) == 0
    assert spans(m)[-1] == (0x200000, 0x204000)  # no gap at all


# --- delete ---------------------------------------------------------------------------------


def test_delete_clips_holes_and_anon_loc():
    m = vm_map_create(None, 0x10000, 0x100000)
    for _ in range(3):
        vm_map_find(m, None, 0, 0, 0x2000, 0, VMFS.ANY_SPACE, [R, RW, R][_], ALL, 0)
    assert spans(m) == [(0x10000, 0x12000), (0x12000, 0x14000), (0x14000, 0x16000)]
    assert m.anon_loc == 0x16000
    assert vm_map_remove(m, 0x15000, 0x40000) == 0  # holes are fine
    assert m.anon_loc == 0x15000 and spans(m)[-1] == (0x14000, 0x15000)
    assert vm_map_remove(m, 0x11000, 0x13000) == 0
    assert spans(m) == [(0x10000, 0x11000), (0x13000, 0x14000), (0x14000, 0x15000)]
    assert m.size == 0x3000 and m.nentries == 3
    vm_map_lock(m)
    assert vm_map_delete(m, 0x12000, 0x12000) == 0
    vm_map_unlock(m)
    assert vm_map_remove(m, 0, 1 << 60) == 0  # clamped to the map
    assert m.entries() == [] and m.size == 0 and m.nentries == 0
    vm_map_check(m)


def test_delete_frees_at_unlock_and_drops_object_refs():
    m = locked_map()
    obj = vm_object_allocate(OBJT.VNODE, 4)
    vm_map_insert(m, obj, 0, 0x10000, 0x14000, R, ALL, 0)
    vm_map_delete(m, 0x10000, 0x14000)
    assert obj.ref_count == 1  # deferred until unlock
    vm_map_unlock(m)
    assert obj.ref_count == 0


class FakePmap:
    def __init__(self):
        self.calls = []

    def remove(self, s, e):
        self.calls.append(("remove", s, e))

    def protect(self, s, e, p):
        self.calls.append(("protect", s, e, int(p)))


def test_pmap_calls_only_where_freebsd_makes_them():
    pm = FakePmap()
    m = vm_map_create(pm, 0x10000, 0x100000)
    obj = vm_object_allocate(OBJT.VNODE, 4)
    vm_map_fixed(m, obj, 0, 0x10000, 0x4000, ALL, ALL, MAP.COPY_ON_WRITE)
    vm_map_fixed(m, None, 0, 0x20000, 0x1000, 0, 0, MAP.CREATE_GUARD)
    vm_map_fixed(m, None, 0, 0x30000, 0x1000, RW, ALL, 0)
    assert vm_map_protect(m, 0x10000, 0x12000, R | VM_PROT.EXECUTE, 0,
                          VM_MAP_PROTECT.SET_PROT) == 0
    assert pm.calls == [("protect", 0x10000, 0x12000, 0x5)]
    pm.calls.clear()
    vm_map_protect(m, 0x10000, 0x14000, R, 0, VM_MAP_PROTECT.SET_PROT)
    # COW entries never get W; only the entry whose access shrank is narrowed
    assert pm.calls == [("protect", 0x10000, 0x12000, 1), ("protect", 0x12000, 0x14000, 1)]
    pm.calls.clear()
    vm_map_remove(m, 0, 0x100000)
    assert pm.calls == [("remove", 0x10000, 0x14000)]  # guard and object-less entry skip it


# --- protect / inherit ----------------------------------------------------------------------


def test_protect_validates_before_applying():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x10000, 0x2000, RW, ALL, 0)
    vm_map_fixed(m, None, 0, 0x12000, 0x2000, R, R, 0)
    before = logical_state(m)
    assert vm_map_protect(m, 0x11000, 0x13000, RW, 0,
                          VM_MAP_PROTECT.SET_PROT) == KERN.PROTECTION_FAILURE
    assert logical_state(m) == before  # nothing clipped, nothing changed
    assert vm_map_protect(m, 0x10000, 0x11000, RW, R,
                          VM_MAP_PROTECT.SET_PROT | VM_MAP_PROTECT.SET_MAXPROT) == \
        KERN.OUT_OF_BOUNDS
    ts = m.timestamp
    assert vm_map_protect(m, 0x11000, 0x13000, R, 0, VM_MAP_PROTECT.SET_PROT) == 0
    assert m.timestamp == ts + 2  # vm_map_lock and vm_map_wait_busy
    assert spans(m) == [(0x10000, 0x11000), (0x11000, 0x12000), (0x12000, 0x14000)]
    assert [int(e.protection) for e in m.entries()] == [3, 1, 1]
    # SET_MAXPROT: max = new, prot &= new
    assert vm_map_protect(m, 0x10000, 0x11000, 0, R, VM_MAP_PROTECT.SET_MAXPROT) == 0
    e = m.entries()[0]
    assert (int(e.protection), int(e.max_protection)) == (1, 1)
    # max can only go down
    assert vm_map_protect(m, 0x10000, 0x11000, 0, RW,
                          VM_MAP_PROTECT.SET_MAXPROT) == KERN.PROTECTION_FAILURE
    assert vm_map_protect(m, 0x10000, 0x10000, ALL, ALL, 3) == KERN.SUCCESS
    vm_map_lock(m)
    vm_map_modflags(m, VM_MAP_FLAGS.WXORX, 0)
    vm_map_unlock(m)
    assert vm_map_protect(m, 0x10000, 0x11000, VM_PROT.WRITE | VM_PROT.EXECUTE, 0,
                          VM_MAP_PROTECT.SET_PROT) == KERN.PROTECTION_FAILURE
    vm_map_check(m)


def test_protect_merges_neighbours_back():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x10000, 0x4000, RW, ALL, 0)
    vm_map_protect(m, 0x11000, 0x12000, R, 0, VM_MAP_PROTECT.SET_PROT)
    assert len(m.entries()) == 3
    vm_map_protect(m, 0x11000, 0x12000, RW, 0, VM_MAP_PROTECT.SET_PROT)
    assert spans(m) == [(0x10000, 0x14000)] and m.nentries == 1
    vm_map_check(m)


def test_inherit_values_guard_and_merge():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x10000, 0x4000, RW, ALL, 0)
    vm_map_fixed(m, None, 0, 0x14000, 0x1000, 0, 0, MAP.CREATE_GUARD)
    before = full_state(m)
    assert vm_map_inherit(m, 0x10000, 0x20000, 7) == KERN.INVALID_ARGUMENT
    assert full_state(m) == before
    assert vm_map_inherit(m, 0x11000, 0x11000, VM_INHERIT.NONE) == KERN.SUCCESS
    assert vm_map_inherit(m, 0x11000, 0x20000, VM_INHERIT.ZERO) == 0
    a, b, g = m.entries()
    assert (b.start, b.end, int(b.inheritance)) == (0x11000, 0x14000, 3)
    assert int(g.inheritance) == VM_INHERIT.COPY  # a guard never becomes ZERO
    assert vm_map_inherit(m, 0x11000, 0x14000, VM_INHERIT.COPY) == 0
    assert spans(m) == [(0x10000, 0x14000), (0x14000, 0x15000)]  # merged back
    vm_map_check(m)


def test_check_protection():
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_fixed(m, None, 0, 0x10000, 0x2000, RW, ALL, 0)
    vm_map_fixed(m, None, 0, 0x12000, 0x2000, R, ALL, 0)
    vm_map_fixed(m, None, 0, 0x15000, 0x1000, RW, ALL, 0)
    vm_map_lock_read(m)
    assert vm_map_check_protection(m, 0x10000, 0x14000, R)
    assert not vm_map_check_protection(m, 0x10000, 0x14000, RW)
    assert vm_map_check_protection(m, 0x10000, 0x12000, RW)
    assert not vm_map_check_protection(m, 0x10000, 0x16000, 0)  # hole at 0x14000
    assert not vm_map_check_protection(m, 0x14000, 0x15000, 0)
    vm_map_unlock_read(m)


# --- error paths leave the map as it was ----------------------------------------------------


def _busy_map():
    m = vm_map_create(None, 0x10000, 0x1000000)
    for i, a in enumerate(range(0x10000, 0x80000, 0x3000)):
        vm_map_fixed(m, None, 0, a, 0x2000, [R, RW, ALL][i % 3], ALL, 0)
    vm_map_fixed(m, None, 0, 0x90000, 0x2000, R, R, 0)
    assert vm_map_fixed(m, None, 0, 0x200000, 0x400000, RW, ALL, 1 << 19) == KERN.SUCCESS
    return m


ERROR_CALLS = [
    ("insert empty", lambda m: vm_map_insert(m, None, 0, 0x2000, 0x2000, RW, ALL, 0)),
    ("insert overlap", lambda m: vm_map_insert(m, None, 0, 0x11000, 0x14000, RW, ALL, 0)),
    ("insert inside", lambda m: vm_map_insert(m, None, 0, 0x10000, 0x11000, RW, ALL, 0)),
    ("insert guard", lambda m: vm_map_insert(m, None, 0, 0x90000, 0x91000, 0, R,
                                             MAP.CREATE_GUARD)),
    ("insert boundary", lambda m: vm_map_insert(m, None, 0, 0x90000, 0x91000, RW, ALL,
                                                1 << 19)),
    ("clip boundary", lambda m: vm_map_clip_start(m, vm_map_lookup_entry(m, 0x201000)[1],
                                                  0x201000)),
    ("delete boundary", lambda m: vm_map_delete(m, 0x201000, 0x202000)),
    ("findspace none", lambda m: vm_map_findspace(m, 0x10000, 1 << 40)),
]


@pytest.mark.parametrize("name,call", ERROR_CALLS, ids=[c[0] for c in ERROR_CALLS])
def test_locked_error_paths_leave_entries_unchanged(name, call):
    m = _busy_map()
    vm_map_lock(m)
    before = logical_state(m)
    rv = call(m)
    assert rv != KERN.SUCCESS
    assert logical_state(m) == before
    vm_map_check(m)


SELF_LOCKING_ERRORS = [
    ("find", lambda m: vm_map_find(m, None, 0, 0, 1 << 40, 0, VMFS.ANY_SPACE, RW, ALL, 0)[0]),
    ("find aligned", lambda m: vm_map_find(m, None, 0, 0, 0xF00000, 0, VMFS.SUPER_SPACE, RW,
                                           ALL, 0)[0]),
    ("find max_addr", lambda m: vm_map_find(m, None, 0, 0x90000, 0x1000, 0x90800,
                                            VMFS.ANY_SPACE, RW, ALL, 0)[0]),
    ("fixed excl", lambda m: vm_map_fixed(m, None, 0, 0x10000, 0x1000, RW, ALL,
                                          MAP.CHECK_EXCL)),
    ("fixed boundary", lambda m: vm_map_fixed(m, None, 0, 0x201000, 0x1000, RW, ALL, 0)),
    ("remove boundary", lambda m: vm_map_remove(m, 0x201000, 0x202000)),
    ("protect bounds", lambda m: vm_map_protect(m, 0x10000, 0x20000, RW, R, 3)),
    ("protect prot", lambda m: vm_map_protect(m, 0x80000, 0x93000, ALL, 0, 1)),
    ("protect max", lambda m: vm_map_protect(m, 0x80000, 0x93000, 0, ALL, 2)),
    ("protect boundary", lambda m: vm_map_protect(m, 0x201000, 0x202000, R, 0, 1)),
    ("inherit value", lambda m: vm_map_inherit(m, 0x10000, 0x20000, 9)),
    ("inherit copy largepage", lambda m: vm_map_inherit(m, 0x200000, 0x400000, 1)),
    ("inherit boundary", lambda m: vm_map_inherit(m, 0x201000, 0x300000, 0)),
    ("stack no space", lambda m: vm_map_stack(m, 0x10000, 0x8000, RW, ALL,
                                              MAP.STACK_GROWS_DOWN)),
]


@pytest.mark.parametrize("name,call", SELF_LOCKING_ERRORS,
                         ids=[c[0] for c in SELF_LOCKING_ERRORS])
def test_self_locking_error_paths_leave_entries_unchanged(name, call):
    m = _busy_map()
    before = logical_state(m)
    assert call(m) != KERN.SUCCESS
    assert logical_state(m) == before and m.lock.mode == "unlocked"
    vm_map_check(m)


def test_validation_errors_change_nothing_at_all():
    m = _busy_map()
    before = full_state(m)
    for bad in (lambda: vm_map_fixed(m, None, 0, 1 << 64, 0x1000, RW, ALL, 0),
                lambda: vm_map_find(m, None, 0, 0, 0x1000, 0, VMFS.ANY_SPACE, ALL, R, 0),
                lambda: vm_map_protect(m, 0, 0x1000, R, 0, 0x80),
                lambda: vm_map_inherit(m, 0, 0x1000, "share")):
        with pytest.raises((TypeError, ValueError)):
            bad()
    assert full_state(m) == before


# --- traces ---------------------------------------------------------------------------------


def test_trace_records_documented_steps():
    from vmlab.core import STEP_KINDS

    m = _busy_map()
    with recording(m) as tr:
        vm_map_find(m, None, 0, 0x10000, 0x5000, 0, VMFS.ANY_SPACE, VM_PROT.EXECUTE, ALL, 0)
        vm_map_protect(m, 0x10000, 0x11000, R, 0, VM_MAP_PROTECT.SET_PROT)
        vm_map_remove(m, 0x13000, 0x14000)
    kinds = set(tr.kinds())
    assert {"call", "return", "lock", "timestamp", "splay_visit", "splay_done", "gap_check",
            "link", "clip", "unlink", "modify"} <= kinds
    assert kinds <= set(STEP_KINDS)
    for s in tr.steps:
        assert "\n" not in s.text and s.text.strip()
    # every state a step points to is a consistent snapshot of this map
    snap = tr.state_at(len(tr) - 1)
    assert snap.nentries == m.nentries and snap.lock_mode == "unlocked"
    assert list(snap.entries["start"]) == [e.start for e in m.entries()]
    locks = [s for s in tr.steps if s.kind == "lock"]
    assert locks[0].data["op"] == "lock" and locks[0].data["holders"] == ("td0",)
    tr.to_dict()  # JSON form works

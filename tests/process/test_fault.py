"""vm_map_lookup, vm_fault and vm_fault_prefault by FreeBSD's rules."""

import pytest

from vmlab.core import (
    KERN,
    MAP_ANON,
    MAP_ENTRY,
    MAP_PRIVATE,
    MAP_SHARED,
    OBJ_ANON,
    PROT_READ,
    PROT_WRITE,
    VM_FAULT,
    VM_PROT,
    VmAccessError,
    mmap,
    open_file,
    pmap_prot,
    pmap_remove,
    recording,
    vm_fault,
    vm_fault_prefault,
    vm_map_lookup,
    vm_map_lookup_done,
    vm_map_lookup_entry,
    vm_read,
    vm_write,
)

P = 4096
R, W = VM_PROT.READ, VM_PROT.WRITE


def anon(vm, npages, prot=PROT_READ | PROT_WRITE):
    err, addr = mmap(vm, 0, npages * P, prot, MAP_ANON | MAP_PRIVATE)
    assert err == 0
    return addr


def entry_at(vm, va):
    from vmlab.core import vm_map_lock_read, vm_map_unlock_read

    vm_map_lock_read(vm.vm_map)
    try:
        found, e = vm_map_lookup_entry(vm.vm_map, va)
    finally:
        vm_map_unlock_read(vm.vm_map)
    assert found
    return e


# ---- vm_map_lookup -------------------------------------------------------------------------
def test_lookup_unmapped_returns_unlocked(vm):
    rv, *rest = vm_map_lookup(vm.vm_map, 0x1000, R)
    assert rv == KERN.INVALID_ADDRESS and vm.vm_map.lock.mode == "unlocked"


def test_lookup_success_leaves_read_lock_and_creates_anon_object(vm):
    a = anon(vm, 4)
    assert entry_at(vm, a).object is None
    rv, e, obj, pindex, prot, wired = vm_map_lookup(vm.vm_map, a + 2 * P + 5, R)
    assert rv == KERN.SUCCESS and vm.vm_map.lock.mode == "shared"
    assert obj is e.object and obj.flags & OBJ_ANON and obj.size == 4 and e.offset == 0
    assert pindex == 2 and prot == R | W and wired is False
    vm_map_lookup_done(vm.vm_map, e)
    assert vm.vm_map.lock.mode == "unlocked"


def test_lookup_protection_failure_unlocked(vm):
    a = anon(vm, 2, PROT_READ)
    rv, *_ = vm_map_lookup(vm.vm_map, a, W)
    assert rv == KERN.PROTECTION_FAILURE and vm.vm_map.lock.mode == "unlocked"
    rv, *_ = vm_map_lookup(vm.vm_map, a, R | VM_PROT.COPY)  # max has W: allowed
    assert rv == KERN.SUCCESS
    vm_map_lookup_done(vm.vm_map, None)


def test_lookup_needs_copy_read_drops_w_write_shadows(vm):
    from vmlab.core import fork

    a = anon(vm, 2)
    vm_write(vm, a, "x")
    _, child = fork(vm)
    e = entry_at(vm, a)
    base = e.object
    assert e.eflags & MAP_ENTRY.NEEDS_COPY
    rv, e, obj, _, prot, _ = vm_map_lookup(vm.vm_map, a, R)
    vm_map_lookup_done(vm.vm_map, e)
    assert obj is base and prot == R and e.eflags & MAP_ENTRY.NEEDS_COPY
    rv, e, obj, _, prot, _ = vm_map_lookup(vm.vm_map, a, W)
    vm_map_lookup_done(vm.vm_map, e)
    assert obj is not base and obj.backing_object is base and prot == R | W
    assert e.eflags & MAP_ENTRY.COW and not e.eflags & MAP_ENTRY.NEEDS_COPY


# ---- vm_fault --------------------------------------------------------------------------------
def test_zero_fill_maps_writable_and_does_not_prefault(any_machine):
    from vmlab.core import vmspace_alloc

    vm = vmspace_alloc(machine=any_machine)
    a = anon(vm, 8)
    for i in range(8):
        vm_write(vm, a + i * P, i)
    pmap_remove(vm.vm_pmap, a, a + 8 * P)
    pmap_remove(vm.vm_pmap, a + 3 * P, a + 4 * P)
    with recording(vm) as tr:
        rv = vm_fault(vm.vm_map, a + 3 * P, W)
    assert rv == KERN.SUCCESS
    assert "zero_fill" not in tr.kinds()  # page 3 is resident: soft fault, then prefault
    vm2 = vmspace_alloc(machine=any_machine)
    b = anon(vm2, 8)
    with recording(vm2) as tr:
        assert vm_fault(vm2.vm_map, b + 3 * P, R) == KERN.SUCCESS
    assert "zero_fill" in tr.kinds() and "prefault_candidate" not in tr.kinds()
    assert pmap_prot(vm2.vm_pmap, b + 3 * P) == R | W  # first object's page: full prot


def test_prefault_spiral_order_read_only_and_stop(any_machine):
    from vmlab.core import vmspace_alloc

    vm = vmspace_alloc(machine=any_machine)
    a = anon(vm, 16)
    for i in range(16):
        if i != 5:
            vm_write(vm, a + i * P, f"v{i}")
    pmap_remove(vm.vm_pmap, a, a + 16 * P)
    vm_read(vm, a + 15 * P)  # soft fault: maps 15, prefaults 14..11
    pmap_remove(vm.vm_pmap, a, a + 15 * P)  # only page 15 stays (its page-table page too)
    with recording(vm) as tr:
        assert vm_fault(vm.vm_map, a + 8 * P, R) == KERN.SUCCESS
    cands = [s.data for s in tr.steps if s.kind == "prefault_candidate"]
    got = [((c["va"] - a) // P, c["verdict"]) for c in cands]
    # -1, +1, -2, +2, -3 (page 5 is resident nowhere: the loop stops there)
    assert got == [(7, "mapped"), (9, "mapped"), (6, "mapped"), (10, "mapped"), (5, "stop")]
    for i in (6, 7, 9, 10):
        assert pmap_prot(vm.vm_pmap, a + i * P) == R  # enter_quick: never writable
    assert pmap_prot(vm.vm_pmap, a + 8 * P) == R | W
    assert pmap_prot(vm.vm_pmap, a + 11 * P) == VM_PROT.NONE  # after the stop
    vm_write(vm, a + 7 * P, "w")  # a later write faults normally and gets W
    assert pmap_prot(vm.vm_pmap, a + 7 * P) == R | W and vm_read(vm, a + 7 * P) == "w"


def test_prefault_skips_outside_entry_and_already_mapped(vm):
    a = anon(vm, 4)
    for i in range(4):
        vm_write(vm, a + i * P, i)
    pmap_remove(vm.vm_pmap, a, a + P)
    res = vm_fault_prefault(vm.vm_map, a + 2 * P)
    verdicts = [(c.va - a) // P for c in res], [c.verdict for c in res]
    assert verdicts == ([1, 3, 0, 4, -1, 5, -2, 6],
                        ["already_mapped", "already_mapped", "mapped", "outside", "outside",
                         "outside", "outside", "outside"])
    assert pmap_prot(vm.vm_pmap, a) == R


def test_no_prefault_on_wired_entry_or_wire_fault(vm):
    from vmlab.core import mlock

    a = anon(vm, 4)
    assert mlock(vm, a, 4 * P) == 0
    assert all(m[3] for m in vm.vm_pmap.mappings())  # wired mappings
    assert vm.vm_pmap.wired_count == 4


def test_cow_after_fork_is_visible_and_private(any_machine):
    from vmlab.core import fork, vmspace_alloc

    vm = vmspace_alloc(machine=any_machine)
    a = anon(vm, 2)
    vm_write(vm, a, "parent")
    _, ch = fork(vm)
    assert pmap_prot(vm.vm_pmap, a) == R  # parent write-protected by fork
    with recording(ch) as tr:
        vm_write(ch, a, "child")
    assert "shadow" in tr.kinds() and "cow_copy" in tr.kinds()
    assert "prefault_candidate" not in tr.kinds()  # a soft COW copy never prefaults
    assert vm_read(vm, a) == "parent" and vm_read(ch, a) == "child"
    assert vm.vm_pmap.extract(a) != ch.vm_pmap.extract(a)


def test_cow_rename_when_backing_object_is_private(vm):
    from vmlab.core import fork, vmspace_free

    a = anon(vm, 2)
    vm_write(vm, a, "p0")
    vm_write(vm, a + P, "p1")
    _, ch = fork(vm)
    vm_write(vm, a, "new")  # shadows: the old object now backs the parent's shadow
    vmspace_free(ch)  # the backing object has one reference and one shadow left
    pa = vm.vm_pmap.extract(a + P)
    with recording(vm) as tr:
        vm_write(vm, a + P, "moved")
    step = next(s for s in tr.steps if s.kind == "cow_copy")
    assert step.data["rename"] is True and vm.vm_pmap.extract(a + P) == pa


def test_vnode_pagein_cluster_and_sequential_readahead(machine):
    from vmlab.core import vmspace_alloc

    vm = vmspace_alloc(machine=machine)
    fd = open_file(vm, "big", 64 * P)
    err, a = mmap(vm, 0, 64 * P, PROT_READ, MAP_SHARED, fd, 0)
    assert err == 0
    assert vm_read(vm, a + 5 * P) == "big[5]"
    op = machine.pager.log[-1]
    assert (op.op, op.pindex, op.count, op.reqpage) == ("pagein", 0, 16, 5)
    e = entry_at(vm, a)
    assert e.next_read == a + 16 * P and e.read_ahead == 0
    assert vm.vm_pmap.resident_count == 16  # 5 behind + 10 ahead prefaulted
    assert vm_read(vm, a + 16 * P) == "big[16]"  # sequential: read-ahead 7
    op = machine.pager.log[-1]
    assert (op.pindex, op.count) == (16, 8) and e.read_ahead == 7


def test_fault_beyond_end_of_file_is_sigbus(vm):
    fd = open_file(vm, "small", 2 * P)
    err, a = mmap(vm, 0, 3 * P, PROT_READ, MAP_SHARED, fd, 0)
    assert err == 0
    with pytest.raises(VmAccessError) as ei:
        vm_read(vm, a + 2 * P)
    assert ei.value.rv == KERN.OUT_OF_BOUNDS and ei.value.signal == "SIGBUS"


def test_private_file_write_does_not_reach_the_file(vm):
    fd = open_file(vm, "f", 4 * P)
    _, s = mmap(vm, 0, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    _, p = mmap(vm, 0, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
    vm_write(vm, p + P, "private")
    assert vm_read(vm, p + P) == "private" and vm_read(vm, s + P) == "f[1]"
    vm_write(vm, s + 2 * P, "shared")
    assert vm_read(vm, p + 2 * P) == "shared"  # not yet copied: the private view sees it
    assert vm.machine.files["f"].contents[1] == "f[1]"


def test_segv_on_unmapped_and_readonly(vm):
    a = anon(vm, 1, PROT_READ)
    with pytest.raises(VmAccessError) as ei:
        vm_write(vm, a, 1)
    assert ei.value.rv == KERN.PROTECTION_FAILURE
    with pytest.raises(VmAccessError) as ei:
        vm_read(vm, 0x1000)
    assert ei.value.rv == KERN.INVALID_ADDRESS
    assert vm.vm_map.lock.mode == "unlocked"


def test_fault_dirty_flag_and_wire_flag(vm):
    a = anon(vm, 1)
    assert vm_fault(vm.vm_map, a, R, VM_FAULT.DIRTY) == KERN.SUCCESS
    m = vm.vm_pmap.page_at(a)
    assert m.dirty

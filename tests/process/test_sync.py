"""vm_map_clean / vm_map_sync, madvise on objects, and wiring edge cases."""

from vmlab.core import (
    KERN,
    MAP_ANON,
    MAP_ENTRY,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    VM_PROT,
    mlock,
    mmap,
    mprotect,
    munmap,
    open_file,
    vm_map_clean,
    vm_map_sync,
    vm_read,
    vm_write,
)

P = 4096
RW = PROT_READ | PROT_WRITE


def test_clean_codes_and_writeback(vm):
    assert vm_map_clean is vm_map_sync
    fd = open_file(vm, "d", 8 * P)
    _, a = mmap(vm, 0, 8 * P, RW, MAP_SHARED, fd, 0)
    assert vm_map_clean(vm.vm_map, 0x1000, 0x2000, True, False) == KERN.INVALID_ADDRESS
    for i in (1, 2, 5):
        vm_write(vm, a + i * P, f"w{i}")
    log = vm.machine.pager.log
    n = len(log)
    assert vm_map_clean(vm.vm_map, a, a + 8 * P, True, False) == KERN.SUCCESS
    outs = [(op.pindex, op.count) for op in log[n:] if op.op == "pageout"]
    assert outs == [(1, 2), (5, 1)]  # one transfer per run of dirty pages
    assert vm.machine.files["d"].contents[5] == "w5"
    assert vm_map_clean(vm.vm_map, a, a + 8 * P, True, False) == KERN.SUCCESS
    assert [op for op in log[n + 2:] if op.op == "pageout"] == []  # now clean
    vm_write(vm, a + 3 * P, "again")  # write-protected by the clean: faults, dirties again
    assert vm_map_clean(vm.vm_map, a + 3 * P, a + 3 * P, True, True) == KERN.SUCCESS
    assert vm.vm_pmap.prot(a) == VM_PROT.NONE  # start == end: the whole entry, invalidated
    assert vm_read(vm, a + 3 * P) == "again"  # paged in again from the file


def test_clean_hole_and_user_wired(vm):
    _, a = mmap(vm, 0x20000000, 2 * P, RW, MAP_ANON | MAP_PRIVATE | MAP_FIXED)
    _, b = mmap(vm, 0x20004000, P, RW, MAP_ANON | MAP_PRIVATE | MAP_FIXED)
    assert vm_map_sync(vm.vm_map, a, b + P, True, False) == KERN.INVALID_ADDRESS
    assert mlock(vm, b, P) == 0
    assert vm_map_sync(vm.vm_map, b, b + P, True, True) == KERN.INVALID_ARGUMENT
    assert vm_map_sync(vm.vm_map, b, b + P, True, False) == KERN.SUCCESS


def test_private_file_mapping_msync_writes_the_file_object_not_the_copy(vm):
    fd = open_file(vm, "p", 2 * P)
    _, a = mmap(vm, 0, 2 * P, RW, MAP_PRIVATE, fd, 0)
    vm_write(vm, a, "mine")
    assert vm_map_sync(vm.vm_map, a, a + 2 * P, True, False) == KERN.SUCCESS
    assert vm.machine.files["p"].contents[0] == "p[0]"


def test_wired_cow_entry_gaining_write_is_copied(vm):
    fd = open_file(vm, "x", 2 * P)
    _, a = mmap(vm, 0, 2 * P, PROT_READ, MAP_PRIVATE, fd, 0)
    assert mlock(vm, a, 2 * P) == 0
    e = vm.vm_map.entries()[0]
    assert e.eflags & MAP_ENTRY.COW and e.wired_count == 1
    assert mprotect(vm, a, 2 * P, RW) == 0
    e = vm.vm_map.entries()[0]
    assert not e.eflags & (MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY)
    assert e.object.type != vm.machine.files["x"].object.type
    assert vm.vm_pmap.prot(a) == VM_PROT.READ | VM_PROT.WRITE and vm_read(vm, a) == "x[0]"
    assert munmap(vm, a, 2 * P) == 0
    assert all(not m.wire_count for m in vm.machine.files["x"].object.memq.values())

"""Unaligned input at the process layer: vm_map_sync / vm_map_clean, vm_map_madvise,
vm_map_wire and vm_map_unwire raise VmMapUnaligned before they touch the map, while the
syscalls round (or refuse with an errno) exactly as sys/vm/vm_mmap.c does and never reach that
exception."""

from __future__ import annotations

import pytest

from vmlab.core import (
    EINVAL,
    KERN,
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    VM_MAP_WIRE_NOHOLES,
    VM_MAP_WIRE_USER,
    VM_PROT,
    VmMapUnaligned,
    madvise,
    minherit,
    mlock,
    mmap,
    mprotect,
    msync,
    munlock,
    munmap,
    open_file,
    vm_map_check,
    vm_map_clean,
    vm_map_lock,
    vm_map_madvise,
    vm_map_sync,
    vm_map_unlock,
    vm_map_unwire,
    vm_map_wire,
    vm_map_wire_locked,
)

P = 4096
RW = PROT_READ | PROT_WRITE
A = 0x20000000
MADV_NOSYNC, MADV_WILLNEED = 6, 3


def _state(vm):
    m = vm.vm_map
    rows = [(e.start, e.end, int(e.protection), int(e.eflags), e.wired_count, id(e.object))
            for e in m.entries()]
    return rows, m.nentries, m.size, m.timestamp, m.root, m.lock.mode, sorted(
        (va, int(prot)) for va, _, prot, _ in vm.vm_pmap.mappings())


@pytest.fixture
def mapped(vm):
    fd = open_file(vm, "f", 4 * P)
    assert mmap(vm, A, 4 * P, RW, MAP_SHARED | MAP_FIXED, fd, 0) == (0, A)
    assert mmap(vm, A + 8 * P, 4 * P, RW, MAP_ANON | MAP_PRIVATE | MAP_FIXED) == (0, A + 8 * P)
    return vm


CALLS = [
    ("vm_map_sync", "start=0x20000800",
     lambda m: vm_map_sync(m, A + 0x800, A + P, True, False)),
    ("vm_map_sync", "end=0x20001001",
     lambda m: vm_map_clean(m, A, A + P + 1, True, True)),
    ("vm_map_madvise", "end=0x20008fff",
     lambda m: vm_map_madvise(m, A + 8 * P, A + 9 * P - 1, MADV_NOSYNC)),
    ("vm_map_madvise", "start=0x20008001",
     lambda m: vm_map_madvise(m, A + 8 * P + 1, A + 9 * P, MADV_WILLNEED)),
    # the alignment check comes before the behaviour check (EINVAL for 99)
    ("vm_map_madvise", "start=0x20008001",
     lambda m: vm_map_madvise(m, A + 8 * P + 1, A + 9 * P, 99)),
    ("vm_map_wire", "end=0x2000a800",
     lambda m: vm_map_wire(m, A + 8 * P, A + 10 * P + 0x800,
                           VM_MAP_WIRE_USER | VM_MAP_WIRE_NOHOLES)),
    ("vm_map_unwire", "start=0x20008010",
     lambda m: vm_map_unwire(m, A + 8 * P + 0x10, A + 9 * P,
                             VM_MAP_WIRE_USER | VM_MAP_WIRE_NOHOLES)),
]


@pytest.mark.parametrize(("fname", "arg", "call"), CALLS, ids=[f"{n}:{a}" for n, a, _ in CALLS])
def test_process_layer_refuses_unaligned_before_changing_anything(mapped, fname, arg, call):
    vm = mapped
    vm.vm_map.pmap.owner = vm
    assert mlock(vm, A + 9 * P, P) == 0  # something wired, so unwire would have work to do
    before = _state(vm)
    log_len = len(vm.machine.pager.log)
    with pytest.raises(VmMapUnaligned) as ei:
        call(vm.vm_map)
    assert str(ei.value).startswith(f"{fname}: {arg} is not page-aligned")
    assert _state(vm) == before
    assert len(vm.machine.pager.log) == log_len
    vm_map_check(vm.vm_map)


def test_wire_locked_refuses_unaligned_with_the_lock_held(mapped):
    vm = mapped
    vm_map_lock(vm.vm_map)
    before = _state(vm)
    with pytest.raises(VmMapUnaligned, match=r"^vm_map_wire: start=0x20008004 "):
        vm_map_wire_locked(vm.vm_map, A + 8 * P + 4, A + 9 * P, VM_MAP_WIRE_USER)
    assert _state(vm) == before
    vm_map_unlock(vm.vm_map)


def test_empty_wire_and_unwire_succeed_at_once(mapped):
    """vm_map_wire_locked and vm_map_unwire return KERN_SUCCESS for start == end before
    anything else (vm_map.c) — mlock(addr, 0) in the middle of an entry clips nothing."""
    vm = mapped
    before = _state(vm)
    assert vm_map_unwire(vm.vm_map, A + 2 * P, A + 2 * P, VM_MAP_WIRE_USER) == KERN.SUCCESS
    assert _state(vm) == before  # not even the lock was taken
    assert mlock(vm, A + 2 * P, 0) == 0
    assert munlock(vm, A + 2 * P, 0) == 0
    assert [(e.start, e.end) for e in vm.vm_map.entries()] == [
        (A, A + 4 * P), (A + 8 * P, A + 12 * P)]


def test_syscalls_round_unaligned_arguments_as_freebsd(mapped):
    """kern_munmap / kern_mprotect / kern_minherit / kern_msync / kern_mlock: addr is
    truncated and len grows by the page offset, then rounds up; kern_madvise truncates start
    and rounds end. None of them reaches VmMapUnaligned."""
    vm = mapped
    m = vm.vm_map
    # [A+0x10, A+0x10+1) rounds to the page [A, A+P)
    assert mprotect(vm, A + 0x10, 1, PROT_READ) == 0
    assert [(e.start, e.end, int(e.protection)) for e in m.entries()][:2] == [
        (A, A + P, int(VM_PROT.READ)), (A + P, A + 4 * P, int(VM_PROT.RW))]
    # P - 1 bytes from A + P + 1 end at A + 2P: still one page
    assert minherit(vm, A + P + 1, P - 1, 2) == 0
    assert [e.inheritance for e in m.entries()][1] == 2  # VM_INHERIT_NONE
    assert [(e.start, e.end) for e in m.entries()][1] == (A + P, A + 2 * P)
    assert msync(vm, A + 3 * P + 5, 7, 0) == 0
    assert madvise(vm, A + 8 * P + 0x123, 0x10, MADV_NOSYNC) == 0
    assert [(e.start, e.end) for e in m.entries() if e.start >= A + 8 * P][0] == (
        A + 8 * P, A + 9 * P)
    assert mlock(vm, A + 10 * P + 0xfff, 2) == 0  # two bytes across a page boundary: 2 pages
    assert [(e.start, e.end, e.wired_count) for e in m.entries() if e.wired_count] == [
        (A + 10 * P, A + 12 * P, 1)]
    assert munlock(vm, A + 10 * P + 0xfff, 2) == 0
    assert munmap(vm, A + 11 * P + 0x800, 0x800) == 0
    # munlock merged the unwired pages back with [A + 9P, A + 10P) (same flags again)
    assert [(e.start, e.end) for e in m.entries()][-1] == (A + 9 * P, A + 11 * P)
    vm_map_check(m)


def test_mmap_rounds_or_refuses_as_kern_mmap(vm):
    # MAP_FIXED: addr must have the same page offset as pos, else EINVAL (never an exception)
    assert mmap(vm, A + 0x10, P, RW, MAP_ANON | MAP_PRIVATE | MAP_FIXED) == (EINVAL, -1)
    fd = open_file(vm, "g", 4 * P)
    assert mmap(vm, A + 0x10, P, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0x10) == (0, A + 0x10)
    # the page offset 0x10 is added to the length too: two pages
    assert [(e.start, e.end, e.offset) for e in vm.vm_map.entries()] == [(A, A + 2 * P, 0)]
    # a hint (above the heap window) is rounded up; the length grows to whole pages
    h = 0x900000000
    errno, a = mmap(vm, h + 0x8001, 0x1801, RW, MAP_ANON | MAP_PRIVATE)
    assert (errno, a) == (0, h + 0x9000)
    assert [(e.start, e.end) for e in vm.vm_map.entries()][-1] == (h + 0x9000, h + 0xB000)
    # a hint in the last page wraps to 0 when rounded (vm_offset_t arithmetic), so the first
    # fit starts at the map's min: 0 for vmspace_alloc's VM_MIN_ADDRESS default
    errno, a = mmap(vm, (1 << 64) - 1, P, RW, MAP_ANON | MAP_PRIVATE)
    assert (errno, a) == (0, 0)
    vm_map_check(vm.vm_map)

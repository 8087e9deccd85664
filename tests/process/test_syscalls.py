"""The syscall view: every errno path of FreeBSD 14's kern_* checks, and success shapes."""

import pytest

from vmlab.core import (
    EACCES,
    EBADF,
    EBUSY,
    EINVAL,
    ENOMEM,
    ENOTSUP,
    INHERIT_SHARE,
    KERN,
    MADV_FREE,
    MADV_PROTECT,
    MADV_RANDOM,
    MADV_WILLNEED,
    MAP_32BIT,
    MAP_ALIGNED,
    MAP_ALIGNED_SUPER,
    MAP_ANON,
    MAP_ENTRY,
    MAP_EXCL,
    MAP_FAILED,
    MAP_FIXED,
    MAP_GUARD,
    MAP_PREFAULT_READ,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_STACK,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    O_RDONLY,
    O_WRONLY,
    PROT_EXEC,
    PROT_MAX,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    RLIMIT_MEMLOCK,
    RLIMIT_VMEM,
    VM_MAP_FLAGS,
    VM_PROT,
    fork,
    madvise,
    minherit,
    mlock,
    mmap,
    mprotect,
    msync,
    munlock,
    munmap,
    open_file,
    setrlimit,
    vm_mmap_to_errno,
    vm_read,
    vm_write,
)

P = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_ANON | MAP_PRIVATE
M64 = (1 << 64) - 1


def test_vm_mmap_to_errno():
    assert [vm_mmap_to_errno(k) for k in KERN] == [
        0, ENOMEM, EACCES, ENOMEM, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL]


@pytest.mark.parametrize(
    "addr,length,prot,flags,fd,pos,errno",
    [
        (0, P, 0x8, ANON, -1, 0, EINVAL),  # prot bits outside RWX|PROT_MAX
        (0, P, RW | PROT_MAX(PROT_READ), ANON, -1, 0, ENOTSUP),
        (0, 0, RW, ANON, -1, 0, EINVAL),  # length 0
        (0, P, RW, ANON, 3, 0, EINVAL),  # ANON with an fd
        (0, P, RW, ANON, -1, P, EINVAL),  # ANON with an offset
        (0, P, RW, MAP_STACK, 3, 0, EINVAL),
        (0, P, PROT_READ, MAP_STACK, -1, 0, EINVAL),
        (0, P, RW, ANON | 0x00100000, -1, 0, EINVAL),  # unknown flag
        (0, P, RW, ANON | MAP_EXCL, -1, 0, EINVAL),  # EXCL without FIXED
        (0, P, RW, MAP_ANON | MAP_SHARED | MAP_PRIVATE, -1, 0, EINVAL),
        (0, P, PROT_READ, MAP_GUARD, -1, 0, EINVAL),  # GUARD with a protection
        (0, P, PROT_NONE, MAP_GUARD | MAP_SHARED, -1, 0, EINVAL),
        (0, P, RW, ANON | MAP_ALIGNED(5), -1, 0, EINVAL),  # alignment below a page
        (0, P, RW, ANON | MAP_ALIGNED(64), -1, 0, EINVAL),  # beyond the pointer width
        (0x10001, P, RW, ANON | MAP_FIXED, -1, 0, EINVAL),  # unaligned fixed address
        (0x800000000000, P, RW, ANON | MAP_FIXED, -1, 0, EINVAL),  # outside the map
        ((1 << 31) - P, 2 * P, RW, ANON | MAP_FIXED | MAP_32BIT, -1, 0, EINVAL),
        (0, M64, RW, ANON, -1, 0, ENOMEM),  # rounds up past 2**64
        (0, 1 << 32, RW, ANON | MAP_32BIT, -1, 0, ENOMEM),  # no room below 2 GiB
        (0, P, RW, MAP_PRIVATE, 9, 0, EBADF),
    ],
)
def test_mmap_errors_leave_the_map_alone(vm, addr, length, prot, flags, fd, pos, errno):
    before = vm.vm_map.entries()
    assert mmap(vm, addr, length, prot, flags, fd, pos) == (errno, MAP_FAILED)
    assert vm.vm_map.entries() == before and vm.vm_map.nentries == 0


def test_mmap_file_errors(vm):
    fd = open_file(vm, "f", 4 * P)
    ro = open_file(vm, "f", flags=O_RDONLY)
    wo = open_file(vm, "f", flags=O_WRONLY)
    assert mmap(vm, 0, P, PROT_READ, 0, fd, 0) == (EINVAL, MAP_FAILED)  # neither flag
    assert mmap(vm, 0, P, RW, MAP_SHARED, ro, 0) == (EACCES, MAP_FAILED)
    assert mmap(vm, 0, P, PROT_READ, MAP_SHARED, wo, 0) == (EACCES, MAP_FAILED)
    err, a = mmap(vm, 0, P, RW, MAP_PRIVATE, ro, 0)  # private: writing is fine
    assert err == 0
    err, b = mmap(vm, 0, P, PROT_READ, MAP_SHARED, ro, 0)
    e = {x.start: x for x in vm.vm_map.entries()}[b]
    assert err == 0 and not e.max_protection & VM_PROT.WRITE  # max from the descriptor
    assert mprotect(vm, b, P, RW) == EACCES
    assert vm.machine.files["f"].object.ref_count == 2


def test_mmap_fixed_excl_and_limits(vm):
    err, a = mmap(vm, 0x10000000, 2 * P, RW, ANON | MAP_FIXED)
    assert (err, a) == (0, 0x10000000)
    assert mmap(vm, a, P, RW, ANON | MAP_FIXED | MAP_EXCL) == (ENOMEM, MAP_FAILED)
    assert setrlimit(vm, RLIMIT_VMEM, 3 * P) == 0
    assert mmap(vm, 0, 2 * P, RW, ANON) == (ENOMEM, MAP_FAILED)
    assert mmap(vm, 0, P, RW, ANON)[0] == 0


def test_mmap_wxorx_is_eacces(vm):
    vm.vm_map.flags |= VM_MAP_FLAGS.WXORX
    assert mmap(vm, 0, P, RW | PROT_EXEC, ANON) == (EACCES, MAP_FAILED)


def test_mmap_success_shapes(vm):
    fd = open_file(vm, "g", 8 * P)
    err, a = mmap(vm, 0, 100, PROT_READ, MAP_SHARED, fd, P + 0x10)
    assert err == 0 and a & 0xFFF == 0x10  # addr + pageoff
    e = vm.vm_map.entries()[0]
    assert e.offset == P and e.end - e.start == P and e.inheritance == 0  # SHARE
    assert vm_read(vm, a) == "g[1]"
    err, s = mmap(vm, 0, 4 << 20, RW, ANON | MAP_ALIGNED_SUPER)
    assert err == 0 and s % (2 << 20) == 0
    err, g = mmap(vm, 0, 4 * P, PROT_NONE, MAP_GUARD)
    ge = {x.start: x for x in vm.vm_map.entries()}[g]
    assert err == 0 and ge.eflags & MAP_ENTRY.GUARD and ge.max_protection == 0


def test_mmap_prefault_read_maps_resident_pages(vm):
    fd = open_file(vm, "h", 4 * P)
    _, a = mmap(vm, 0, 4 * P, PROT_READ, MAP_SHARED, fd, 0)
    vm_read(vm, a)  # brings pages 0..3 in
    _, b = mmap(vm, 0, 4 * P, PROT_READ, MAP_SHARED | MAP_PREFAULT_READ, fd, 0)
    assert all(vm.vm_pmap.prot(b + i * P) == VM_PROT.READ for i in range(4))


def test_munmap(vm):
    _, a = mmap(vm, 0, 4 * P, RW, ANON)
    assert munmap(vm, a, 0) == EINVAL
    assert munmap(vm, 0x800000000000 - P, 2 * P) == EINVAL
    assert munmap(vm, a + P + 5, 10) == 0  # rounded to the page
    assert [(e.start - a, e.end - a) for e in vm.vm_map.entries()] == [(0, P), (2 * P, 4 * P)]
    assert munmap(vm, a, 4 * P) == 0 and vm.vm_map.nentries == 0  # holes are fine


def test_mprotect(vm):
    _, a = mmap(vm, 0, 2 * P, RW, ANON)
    assert mprotect(vm, a, P, 0x8) == EINVAL
    assert mprotect(vm, M64 & ~0xFFF, 2 * P, PROT_READ) == EINVAL  # wraps
    assert mprotect(vm, a, P, RW | PROT_MAX(PROT_READ)) == ENOTSUP
    assert mprotect(vm, a, P, PROT_READ | PROT_MAX(PROT_READ)) == 0
    assert mprotect(vm, a, P, RW) == EACCES  # above the new max
    vm_write(vm, a + P, 1)
    assert mprotect(vm, a + P, P, PROT_READ) == 0
    assert vm.vm_pmap.prot(a + P) == VM_PROT.READ


def test_minherit(vm):
    _, a = mmap(vm, 0, P, RW, ANON)
    assert minherit(vm, a, P, 7) == EINVAL
    assert minherit(vm, M64 & ~0xFFF, 2 * P, INHERIT_SHARE) == EINVAL
    assert minherit(vm, a, P, INHERIT_SHARE) == 0
    assert vm.vm_map.entries()[0].inheritance == INHERIT_SHARE


def test_msync(vm):
    fd = open_file(vm, "m", 4 * P)
    _, a = mmap(vm, 0, 4 * P, RW, MAP_SHARED, fd, 0)
    _, b = mmap(vm, a + 8 * P, P, RW, ANON | MAP_FIXED)
    assert msync(vm, a, P, 0x10) == EINVAL
    assert msync(vm, a, P, MS_ASYNC | MS_INVALIDATE) == EINVAL
    assert msync(vm, M64 & ~0xFFF, 2 * P, MS_SYNC) == EINVAL
    assert msync(vm, 0x1000, P, MS_SYNC) == ENOMEM  # unmapped start
    assert msync(vm, a, (b - a) + P, MS_SYNC) == ENOMEM  # a hole in the range
    vm_write(vm, a + 2 * P, "dirty")
    assert msync(vm, a, 4 * P, MS_SYNC) == 0
    f = vm.machine.files["m"]
    assert f.contents[2] == "dirty"
    op = vm.machine.pager.log[-1]
    assert (op.op, op.pindex, op.count) == ("pageout", 2, 1)
    assert mlock(vm, b, P) == 0
    assert msync(vm, b, P, MS_INVALIDATE) == EBUSY
    assert msync(vm, a, P, MS_INVALIDATE) == 0 and vm.vm_pmap.prot(a) == VM_PROT.NONE
    assert msync(vm, a + P, 0, MS_SYNC) == 0  # length 0: the whole entry


def test_madvise(vm):
    _, a = mmap(vm, 0, 4 * P, RW, ANON)
    assert madvise(vm, 0x800000000000 - P, 2 * P, MADV_RANDOM) == EINVAL
    assert madvise(vm, a, P, 99) == EINVAL
    assert madvise(vm, a, P, MADV_PROTECT) == 0
    assert madvise(vm, a, P, MADV_RANDOM) == 0
    es = vm.vm_map.entries()
    assert es[0].eflags & MAP_ENTRY.BEHAV_RANDOM and not es[1].eflags & MAP_ENTRY.BEHAV_MASK
    for i in range(4):
        vm_write(vm, a + i * P, i)
    vm.vm_pmap.remove(a, a + 4 * P)
    assert madvise(vm, a, 4 * P, MADV_WILLNEED) == 0
    assert vm.vm_pmap.prot(a + 2 * P) == VM_PROT.READ
    assert madvise(vm, a, 4 * P, MADV_FREE) == 0
    assert not vm.vm_pmap.page_at(a + 2 * P).dirty


def test_mlock_munlock(vm):
    _, a = mmap(vm, 0, 4 * P, RW, ANON)
    assert mlock(vm, M64 - 10, 100) == EINVAL
    assert munlock(vm, M64 - 10, 100) == EINVAL
    assert mlock(vm, 0x1000, P) == ENOMEM  # unmapped
    setrlimit(vm, RLIMIT_MEMLOCK, 2 * P)
    assert mlock(vm, a, 3 * P) == ENOMEM
    assert mlock(vm, a, 2 * P) == 0
    e = vm.vm_map.entries()[0]
    assert e.wired_count == 1 and e.eflags & MAP_ENTRY.USER_WIRED
    assert vm.vm_pmap.wired_count == 2 and vm.vm_pmap.page_at(a).wire_count == 1
    assert munlock(vm, a, 8 * P) == ENOMEM  # runs into the hole after the mapping
    assert munlock(vm, a, 2 * P) == 0
    assert vm.vm_pmap.wired_count == 0 and vm.vm_pmap.page_at(a).wire_count == 0
    assert vm.vm_map.nentries == 1  # merged back


def test_fork_returns_child(vm):
    _, a = mmap(vm, 0, P, RW, ANON)
    vm_write(vm, a, 3)
    err, ch = fork(vm)
    assert err == 0 and ch.pid != vm.pid and vm_read(ch, a) == 3

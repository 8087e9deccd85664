"""vm_map_growstack: FreeBSD 14's growth rules and limit checks."""

import pytest

from vmlab.core import (
    KERN,
    MAP,
    MAP_ENTRY,
    RLIMIT_STACK,
    RLIMIT_VMEM,
    VM_PROT,
    VmAccessError,
    setrlimit,
    sysctl,
    vm_map_growstack,
    vm_map_stack,
    vm_read,
    vm_write,
)

P = 4096
K = 1024
RW = int(VM_PROT.READ | VM_PROT.WRITE)


def stack(vm, base=0x10000000, size=1 << 20):
    assert vm_map_stack(vm.vm_map, base, size, RW, int(VM_PROT.ALL),
                        int(MAP.STACK_GROWS_DOWN)) == KERN.SUCCESS
    vm.vm_maxsaddr, vm.vm_stacktop = base, base + size
    vm.vm_ssize = 128 * K // P
    return base, base + size


def shape(vm):
    return [(e.start, e.end, int(e.eflags) & (MAP_ENTRY.GUARD | MAP_ENTRY.GROWS_DOWN))
            for e in vm.vm_map.entries()]


def test_fault_in_gap_grows_by_sgrowsiz_as_separate_entry(vm):
    lo, top = stack(vm)
    init = top - 128 * K
    vm_write(vm, init - 8, "deep")  # one page below the stack
    assert shape(vm) == [
        (lo, init - 128 * K, MAP_ENTRY.GUARD),
        (init - 128 * K, init, MAP_ENTRY.GROWS_DOWN),
        (init, top, MAP_ENTRY.GROWS_DOWN),
    ]
    assert vm.vm_ssize == 256 * K // P and vm_read(vm, init - 8) == "deep"
    assert vm.vm_map.size == 256 * K


def test_direct_call_unlocked_and_not_a_guard(vm):
    lo, top = stack(vm)
    assert vm_map_growstack(vm.vm_map, top - 8) == KERN.SUCCESS  # in the stack: nothing
    assert vm.vm_map.lock.mode == "unlocked"
    assert vm_map_growstack(vm.vm_map, lo - P) == KERN.FAILURE  # unmapped
    assert vm_map_growstack(vm.vm_map, top - 128 * K - 3 * P) == KERN.SUCCESS
    assert vm.vm_map.lock.mode == "unlocked" and vm.vm_ssize == 64


def test_growth_into_guard_fails(vm):
    lo, top = stack(vm)
    before = shape(vm)
    assert vm_map_growstack(vm.vm_map, lo) == KERN.NO_SPACE  # the guard page itself
    assert shape(vm) == before
    assert vm_map_growstack(vm.vm_map, lo + P) == KERN.SUCCESS  # just above the guard
    # grow = roundup(needed, sgrowsiz) capped at gap - guard: the gap keeps only the guard
    assert shape(vm)[0] == (lo, lo + P, MAP_ENTRY.GUARD)
    with pytest.raises(VmAccessError) as ei:
        vm_read(vm, lo)
    assert ei.value.rv == KERN.PROTECTION_FAILURE  # guard entry has prot NONE


def test_gap_fully_used_is_deleted_without_guard(vm):
    sysctl("security.bsd.stack_guard_page", 0)
    lo, top = stack(vm, size=256 * K)
    assert vm_map_growstack(vm.vm_map, lo) == KERN.SUCCESS
    assert shape(vm) == [(lo, lo + 128 * K, MAP_ENTRY.GROWS_DOWN),
                         (lo + 128 * K, top, MAP_ENTRY.GROWS_DOWN)]


def test_rlimit_stack(vm):
    lo, top = stack(vm, size=1 << 20)
    assert setrlimit(vm, RLIMIT_STACK, 200 * K) == 0
    before = shape(vm)
    # needs 128K + 96K = 224K > 200K
    assert vm_map_growstack(vm.vm_map, top - 224 * K) == KERN.NO_SPACE
    assert shape(vm) == before
    # needs 160K <= 200K; roundup to 256K exceeds the limit: capped to 200K - 128K = 72K
    assert vm_map_growstack(vm.vm_map, top - 160 * K) == KERN.SUCCESS
    assert shape(vm)[1] == (top - 200 * K, top - 128 * K, MAP_ENTRY.GROWS_DOWN)
    assert vm.vm_ssize == 200 * K // P


def test_rlimit_vmem_and_not_main_stack(vm):
    lo, top = stack(vm)
    vm.vm_maxsaddr = vm.vm_stacktop = 0  # not the main stack: RLIMIT_STACK ignored
    setrlimit(vm, RLIMIT_STACK, 0)
    setrlimit(vm, RLIMIT_VMEM, 200 * K)
    assert vm_map_growstack(vm.vm_map, top - 130 * K) == KERN.NO_SPACE  # 128K + 128K > 200K
    setrlimit(vm, RLIMIT_VMEM, 256 * K)
    assert vm_map_growstack(vm.vm_map, top - 130 * K) == KERN.SUCCESS
    assert vm.vm_ssize == 32  # unchanged: not the main stack


def test_process_without_text_vnode_cannot_grow(vm):
    lo, top = stack(vm)
    vm.p_textvp = None
    assert vm_map_growstack(vm.vm_map, top - 200 * K) == KERN.FAILURE


def test_bare_map_cannot_grow(machine):
    from vmlab.core import vm_map_create

    m = vm_map_create(machine.new_pmap(), 0, 1 << 40)
    assert vm_map_stack(m, 0x100000, 1 << 20, RW, int(VM_PROT.ALL),
                        int(MAP.STACK_GROWS_DOWN)) == KERN.SUCCESS
    assert vm_map_growstack(m, 0x100000 + 600 * K) == KERN.FAILURE


def test_mmap_stack_and_exec_stack(machine):
    from vmlab.core import MAP_STACK, PROT_READ, PROT_WRITE, USRSTACK, exec_image, mmap

    vm = exec_image(machine)
    gap, stk = vm.vm_map.entries()[-3:-1]
    assert (gap.start, gap.end) == (USRSTACK - (512 << 20), USRSTACK - 128 * K)
    assert gap.next_read == P and stk.eflags & MAP_ENTRY.GROWS_DOWN
    err, a = mmap(vm, 0, 1 << 20, PROT_READ | PROT_WRITE, MAP_STACK)
    assert err == 0
    vm_write(vm, a + (1 << 20) - 128 * K - 1, 1)  # thread stack grows too
    assert vm.vm_ssize == 32  # only the main stack counts

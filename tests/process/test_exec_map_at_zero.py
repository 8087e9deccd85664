"""exec_image follows exec_new_vmspace (sys/kern/kern_exec.c): the map starts at
MAX(sv_minuser, PAGE_SIZE) unless security.bsd.map_at_zero=1, so page 0 is outside the map and
kern_mmap refuses MAP_FIXED there (addr < vm_map_min -> EINVAL); a NULL dereference faults."""

from __future__ import annotations

import pytest

from vmlab.core import (
    EINVAL,
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    VmAccessError,
    exec_image,
    exec_map_min,
    fork,
    mmap,
    munmap,
    sysctl,
    vm_map_check,
    vm_map_max,
    vm_map_min,
    vm_read,
    vm_write,
)

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE
FIXED_ANON = MAP_ANON | MAP_PRIVATE | MAP_FIXED


def _rows(vm):
    return [(e.start, e.end) for e in vm.vm_map.entries()]


def test_exec_map_starts_at_page_size(machine):
    assert sysctl("security.bsd.map_at_zero") == 0
    assert exec_map_min() == P
    vm = exec_image(machine)
    assert (vm_map_min(vm.vm_map), vm_map_max(vm.vm_map)) == (0x1000, 0x800000000000)
    rows = _rows(vm)
    assert mmap(vm, 0, P, RW, FIXED_ANON) == (EINVAL, -1)
    assert mmap(vm, 0, 2 * P, RW, FIXED_ANON) == (EINVAL, -1)  # even when it reaches page 1
    assert munmap(vm, 0, P) == EINVAL  # kern_munmap: not vm_map_range_valid
    assert _rows(vm) == rows
    # page 1 is the lowest page a process can have
    assert mmap(vm, P, P, RW, FIXED_ANON) == (0, P)
    assert _rows(vm)[0] == (P, 2 * P)
    vm_map_check(vm.vm_map)


def test_null_dereference_faults(machine):
    vm = exec_image(machine)
    with pytest.raises(VmAccessError) as ei:
        vm_read(vm, 0)
    assert ei.value.signal == "SIGSEGV"
    with pytest.raises(VmAccessError):
        vm_write(vm, 8, 1)


def test_fork_keeps_the_bounds(machine):
    vm = exec_image(machine)
    errno, child = fork(vm)
    assert errno == 0
    assert (vm_map_min(child.vm_map), vm_map_max(child.vm_map)) == (P, 0x800000000000)


def test_map_at_zero_allows_page_zero(machine):
    assert sysctl("security.bsd.map_at_zero", 1) == 0
    assert exec_map_min() == 0
    vm = exec_image(machine)
    assert vm_map_min(vm.vm_map) == 0
    assert mmap(vm, 0, P, RW, FIXED_ANON) == (0, 0)
    assert _rows(vm)[0] == (0, P)
    vm_write(vm, 8, "at zero")
    assert vm_read(vm, 8) == "at zero"
    vm_map_check(vm.vm_map)

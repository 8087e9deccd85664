"""A process whose map reaches above VM_MAXUSER_ADDRESS_LA48 runs on 5-level page tables.

FreeBSD: exec_new_vmspace → vmspace_alloc(sv_minuser, sv_maxuser) → pmap_pinit_type, which
builds a PML5 root (pmap_pinit_pml5) for an LA57 process; fork's vmspace_fork allocates the
child with the parent's map bounds, hence the same paging mode.
"""

from __future__ import annotations

import pytest

from vmlab.core import Machine, vmspace_alloc
from vmlab.core.constants import VM_MAXUSER_ADDRESS_LA48, VM_MAXUSER_ADDRESS_LA57
from vmlab.core.syscalls import MAP_ANON, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE, fork, mmap
from vmlab.core.vm_fault import vm_read, vm_write
from vmlab.core.x86 import CR4_LA57, PG_FRAME, Amd64Pmap

VA = 1 << 48  # PML5 index 1: unreachable with 4-level paging
NX = 1 << 63
PTP = 0x67  # P RW US A D: what pmap_allocpte writes in every intermediate user entry
# pmap_enter of an anonymous RW page after a write fault: P RW US A D MANAGED(bit 10) XD
LEAF_BITS = NX | 0x467


def _la57_process() -> tuple[Machine, object]:
    mc = Machine(16 << 20, "amd64")
    vm = vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA57, machine=mc)
    err, addr = mmap(vm, VA, 4096, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE | MAP_FIXED)
    assert (err, addr) == (0, VA)
    return mc, vm


def _check_path(pmap: Amd64Pmap, page_pa: int, leaf_bits: int) -> None:
    """The hardware walk of VA: exact entries at all five levels."""
    w = pmap.mmu.translate(VA, "r", 3)
    assert w.ok and w.pa == page_pa and w.page_size == 4096 and w.levels == 5
    assert [s.level for s in w.steps] == ["PML5E", "PML4E", "PDPTE", "PDE", "PTE"]
    assert [s.index for s in w.steps] == [1, 0, 0, 0, 0]
    assert w.steps[0].table_pa == pmap.pm_cr3
    ptps = pmap.page_table_pages()
    assert sorted(ptps) == sorted(s.table_pa for s in w.steps[1:])
    assert all(n == 1 for n in ptps.values())  # one entry used in each table page
    for s, nxt in zip(w.steps, w.steps[1:], strict=False):
        assert s.entry_pa == s.table_pa + 8 * s.index
        assert s.raw == nxt.table_pa | PTP  # e.g. PML5E = PML4 page | 0x67
    assert w.steps[-1].raw == page_pa | leaf_bits
    assert pmap.pte(VA) == page_pa | leaf_bits


def test_la57_vmspace_gets_a_5_level_pmap():
    mc = Machine(16 << 20, "amd64")
    vm48 = vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA48, machine=mc)
    assert not vm48.vm_pmap.la57 and vm48.vm_pmap.mmu.levels == 4
    vm57 = vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA57, machine=mc)
    p = vm57.vm_pmap
    assert isinstance(p, Amd64Pmap) and p.la57 and p.maxuser == VM_MAXUSER_ADDRESS_LA57
    assert p.mmu.cr4 & CR4_LA57 and p.mmu.levels == 5
    assert "5-level" in repr(p)
    # pmap_pinit_pml5: the kernel's PML4 in slot 511 (V RW A M G), recursive slot 256
    kpml4 = mc.physmem.kernel_tables.kpml4
    assert mc.physmem.read_u64(p.pm_cr3 + 8 * 511) == kpml4 | 0x163
    assert mc.physmem.read_u64(p.pm_cr3 + 8 * 256) == p.pm_cr3 | 0x63


def test_fault_and_write_above_2_47():
    mc, vm = _la57_process()
    p = vm.vm_pmap
    # nothing mapped yet: the walk stops at the empty PML5E (#PF, W U, not present)
    w = p.mmu.translate(VA, "w", 3)
    assert (w.ok, w.vector, w.error_code, [s.level for s in w.steps]) == (
        False, 14, 0x6, ["PML5E"])
    vm_write(vm, VA, 1)
    assert vm_read(vm, VA) == 1
    page = p.page_at(VA)
    assert page is not None and page.value == 1
    _check_path(p, page.phys_addr, LEAF_BITS)
    # root + PML4 + PDPT + PD + PT pages + the data page
    assert p.resident_count == 6
    # translate_many agrees on the 5-level tables (VA and the page above it, unmapped)
    r = p.mmu.translate_many([VA, VA + 4096], "r", 3)
    assert r.ok.tolist() == [True, False]
    assert r.pa.tolist() == [page.phys_addr, 0]


def test_fork_of_la57_process_is_la57():
    mc, vm = _la57_process()
    vm_write(vm, VA, 1)
    parent_page = vm.vm_pmap.page_at(VA)
    err, child = fork(vm)
    assert err == 0 and child is not None
    cp = child.vm_pmap
    assert cp.la57 and cp.mmu.levels == 5 and cp.mmu.cr4 & CR4_LA57
    assert cp.pm_cr3 != vm.vm_pmap.pm_cr3
    assert vm_read(child, VA) == 1  # shares the parent's page (copy-on-write) for reading
    w = cp.mmu.translate(VA, "r", 3)
    assert w.ok and w.pa == parent_page.phys_addr and not w.writable
    vm_write(child, VA, 2)  # breaks COW: a new page, mapped RW and dirty
    child_page = cp.page_at(VA)
    assert child_page is not parent_page and child_page.phys_addr != parent_page.phys_addr
    _check_path(cp, child_page.phys_addr, LEAF_BITS)
    assert (vm_read(vm, VA), vm_read(child, VA)) == (1, 2)
    assert vm.vm_pmap.pte(VA) & PG_FRAME == parent_page.phys_addr


def test_factories_and_mem_pmap_with_la57_map():
    # a user factory that takes only the machine is still called the old way
    made = []

    def factory(machine):
        made.append(machine)
        return Amd64Pmap(machine.physmem)

    mc = Machine(16 << 20, factory)
    vm = vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA57, machine=mc)
    assert made == [mc] and not vm.vm_pmap.la57
    # one that takes la57 gets it
    mc2 = Machine(16 << 20, lambda machine, la57=False: Amd64Pmap(machine.physmem, la57=la57))
    assert vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA57, machine=mc2).vm_pmap.la57
    # MemPmap has no paging mode: a write above 2**47 just works
    mc3 = Machine(16 << 20, "mem")
    vm3 = vmspace_alloc(max=VM_MAXUSER_ADDRESS_LA57, machine=mc3)
    assert mmap(vm3, VA, 4096, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE | MAP_FIXED)[0] == 0
    vm_write(vm3, VA, 7)
    assert vm_read(vm3, VA) == 7


@pytest.mark.parametrize("top", [VM_MAXUSER_ADDRESS_LA48, VM_MAXUSER_ADDRESS_LA48 - 4096])
def test_la48_and_below_stay_4_level(top):
    vm = vmspace_alloc(max=top, machine=Machine(16 << 20, "amd64"))
    assert not vm.vm_pmap.la57 and vm.vm_pmap.mmu.levels == 4

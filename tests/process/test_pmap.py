"""MemPmap keeps FreeBSD's pmap semantics as the VM layer sees them."""

import pytest

from vmlab.core import (
    KERN,
    PMAP_ENTER_WIRED,
    VM_PROT,
    Machine,
    pmap_copy,
    pmap_enter,
    pmap_enter_quick,
    pmap_extract,
    pmap_is_prefaultable,
    pmap_prot,
    pmap_protect,
    pmap_remove,
    vm_object_allocate_anon,
    vm_page_alloc,
    vm_page_valid,
)

R, W, X = VM_PROT.READ, VM_PROT.WRITE, VM_PROT.EXECUTE


@pytest.fixture(params=["mem", "amd64"])
def setup(request):
    mc = Machine(4 << 20, request.param)
    obj = vm_object_allocate_anon(8)
    obj.machine = mc
    pages = []
    for i in range(4):
        m = vm_page_alloc(obj, i)
        vm_page_valid(m)
        pages.append(m)
    return mc, mc.new_pmap(), pages


def test_enter_extract_prot(setup):
    mc, pm, (m, *_) = setup
    assert pmap_extract(pm, 0x400000) == 0 and pmap_prot(pm, 0x400000) == VM_PROT.NONE
    assert pmap_enter(pm, 0x400000, m, R | W, R, 0) == KERN.SUCCESS
    assert pmap_extract(pm, 0x400123) == m.phys_addr + 0x123
    assert pmap_prot(pm, 0x400000) == R | W
    assert m.phys_addr != 0


def test_enter_quick_is_never_writable_and_never_replaces(setup):
    mc, pm, (m0, m1, *_) = setup
    pmap_enter_quick(pm, 0x400000, m0, R | W | X)
    assert pmap_prot(pm, 0x400000) == R | X
    pmap_enter(pm, 0x401000, m1, R | W, R | W, 0)
    pmap_enter_quick(pm, 0x401000, m0, R)
    assert pmap_extract(pm, 0x401000) == m1.phys_addr


def test_protect_only_removes_rights_and_transfers_dirty(setup):
    mc, pm, (m, *_) = setup
    pmap_enter(pm, 0x400000, m, R | W, R | W, 0)  # a write access sets the modified bit
    assert not m.dirty
    pmap_protect(pm, 0x400000, 0x401000, R | W | X)  # asks for more: nothing changes
    assert pmap_prot(pm, 0x400000) == R | W
    pmap_protect(pm, 0x400000, 0x401000, R)
    assert pmap_prot(pm, 0x400000) == R and m.dirty
    pmap_protect(pm, 0x400000, 0x401000, VM_PROT.NONE)  # no read: removed
    assert pmap_extract(pm, 0x400000) == 0


def test_remove_transfers_dirty_and_updates_pv(setup):
    mc, pm, (m, m1, *_) = setup
    pmap_enter(pm, 0x400000, m, R | W, R | W, 0)
    pmap_enter(pm, 0x401000, m1, R | W, R, 0)  # read access: not modified
    assert (pm, 0x400000) in m.pv
    pmap_remove(pm, 0x400000, 0x402000)
    assert m.dirty and not m1.dirty
    assert pmap_extract(pm, 0x400000) == 0 and pmap_extract(pm, 0x401000) == 0
    assert not m.pv and not m1.pv


def test_is_prefaultable_needs_a_page_table_page(setup):
    mc, pm, (m, *_) = setup
    assert not pmap_is_prefaultable(pm, 0x400000)  # no page-table page yet
    pmap_enter(pm, 0x400000, m, R, R, 0)
    assert not pmap_is_prefaultable(pm, 0x400000)  # mapped
    assert pmap_is_prefaultable(pm, 0x401000)  # same 2 MiB region
    assert not pmap_is_prefaultable(pm, 0x600000)  # another region: no PT page


def test_wired_count_and_copy(setup):
    mc, pm, (m, m1, *_) = setup
    pmap_enter(pm, 0x400000, m, R | W, R | PMAP_ENTER_WIRED, 0)
    pmap_enter(pm, 0x401000, m1, R, R, 0)
    assert pm.wired_count == 1
    child = mc.new_pmap()
    pmap_copy(child, pm, 0x400000, 0x2000, 0x400000)
    got = {va: (pa, prot, wired) for va, pa, prot, wired in child.mappings()}
    assert got[0x400000][0] == m.phys_addr and got[0x400000][2] is False
    assert child.wired_count == 0


def test_access_outside_prot_is_a_bug(setup):
    mc, pm, (m, *_) = setup
    with pytest.raises(ValueError):
        pmap_enter(pm, 0x400000, m, R, R | W, 0)
    with pytest.raises(ValueError):
        pmap_enter(pm, 0x400001, m, R, R, 0)

"""Objects and pages: allocation, shadowing, reference counts, termination, the pager."""

import pytest

from vmlab.core import (
    OBJ_ANON,
    OBJ_DEAD,
    OBJT,
    Machine,
    vm_object_allocate,
    vm_object_allocate_anon,
    vm_object_deallocate,
    vm_object_reference,
    vm_object_shadow,
    vm_page_alloc,
    vm_page_dirty,
    vm_page_lookup,
    vm_page_valid,
)


@pytest.fixture
def mc():
    return Machine(1 << 20, "mem")


def _anon(mc, n=4):
    o = vm_object_allocate_anon(n)
    o.machine = mc
    return o


def test_page_alloc_is_not_valid_until_marked(mc):
    o = _anon(mc)
    m = vm_page_alloc(o, 2)
    assert not m.valid and not m.dirty and m.phys_addr != 0
    assert vm_page_lookup(o, 2) is m and vm_page_lookup(o, 1) is None
    assert list(o.resident_pages(0, 4)) == []
    vm_page_valid(m)
    vm_page_dirty(m)
    assert m.valid and m.dirty and list(o.resident_pages(0, 4)) == [m]
    assert mc.physmem.frame_owner(m.phys_addr) is m
    with pytest.raises(ValueError):
        vm_page_alloc(o, 2)


def test_dirtying_an_invalid_page_is_a_bug(mc):
    m = vm_page_alloc(_anon(mc), 0)
    with pytest.raises(ValueError):
        vm_page_dirty(m)


def test_out_of_frames_returns_none_and_changes_nothing():
    mc = Machine(4 * 4096, "mem")  # frames 1..3
    o = _anon(mc, 8)
    pages = [vm_page_alloc(o, i) for i in range(3)]
    assert all(pages)
    assert vm_page_alloc(o, 3) is None
    assert vm_page_lookup(o, 3) is None and o.resident_page_count == 3


def test_named_swap_and_vnode_objects_are_not_anonymous():
    assert not vm_object_allocate(OBJT.SWAP, 3).flags & OBJ_ANON
    assert vm_object_allocate_anon(3).flags & OBJ_ANON
    assert vm_object_allocate(OBJT.VNODE, 3).type == OBJT.VNODE


def test_shadow_skips_an_unshared_anonymous_object(mc):
    o = _anon(mc)
    assert vm_object_shadow(o, 0x1000, 0x3000) == (o, 0x1000)
    vm_object_reference(o)  # now shared: a shadow is made, taking over one reference
    s, off = vm_object_shadow(o, 0x1000, 0x3000)
    assert s is not o and off == 0 and s.backing_object is o
    assert s.backing_object_offset == 0x1000 and s.size == 3
    assert o.ref_count == 2 and o.shadow_count == 1 and s.ref_count == 1


def test_last_deallocate_frees_pages_and_walks_the_chain(mc):
    o = _anon(mc)
    vm_object_reference(o)
    s, _ = vm_object_shadow(o, 0, 0x4000)
    for obj in (o, s):
        vm_page_valid(vm_page_alloc(obj, 0))
    assert mc.physmem.nallocated == 2
    vm_object_deallocate(o)  # the other holder of o goes: o survives through s
    assert o.ref_count == 1 and mc.physmem.nallocated == 2
    vm_object_deallocate(s)
    assert s.flags & OBJ_DEAD and o.flags & OBJ_DEAD and mc.physmem.nallocated == 0
    assert o.shadow_count == 0
    with pytest.raises(RuntimeError):
        vm_object_deallocate(s)


def test_vnode_object_keeps_its_pages_cached(mc):
    from vmlab.core import vnode_destroy_vobject

    f = mc.file("f", 3 * 4096)
    o = vm_object_allocate(OBJT.VNODE, f.npages)
    o.machine, o.handle, f.object = mc, f, o
    m = vm_page_alloc(o, 1)
    m.value = "new"
    vm_page_valid(m)
    vm_page_dirty(m)
    vm_object_deallocate(o)  # the last mapping goes
    assert not o.flags & OBJ_DEAD and vm_page_lookup(o, 1) is m
    vnode_destroy_vobject(f)
    assert f.contents[1] == "new" and mc.physmem.nallocated == 0
    assert [op.op for op in mc.pager.log] == ["pageout"]


def test_page_arrays(mc):
    o = _anon(mc)
    for i in (3, 1):
        m = vm_page_alloc(o, i)
        m.value = i * 10
        vm_page_valid(m)
    a = o.page_arrays()
    assert a["pindex"].tolist() == [1, 3] and a["value"].tolist() == [10, 30]
    assert a["valid"].all() and not a["dirty"].any()

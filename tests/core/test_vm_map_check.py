"""vm_map_check against hand-made corruption (each must raise VmMapInconsistent naming what is
wrong), and vm_map_init (re)initialising a map."""

from __future__ import annotations

import pytest

from vmlab.core import (
    KERN,
    OBJT,
    VM_MAP_FLAGS,
    VM_PROT,
    VmMapInconsistent,
    vm_map_check,
    vm_map_create,
    vm_map_init,
    vm_map_insert,
    vm_map_lock,
    vm_map_max,
    vm_map_min,
    vm_map_unlock,
    vm_object_allocate,
)
from vmlab.core.entries import HEADER, NULL
from vmlab.core.splay import recompute_max_free

RW, ALL = VM_PROT.RW, VM_PROT.ALL


def _map():
    """[0x10000, 0x100000): entries [0x20000, 0x22000) rw, [0x30000, 0x31000) r,
    [0x40000, 0x44000) rw over a vnode object at offset 0x2000 (distinct, so none merge)."""
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_lock(m)
    assert vm_map_insert(m, None, 0, 0x20000, 0x22000, RW, ALL, 0) == KERN.SUCCESS
    assert vm_map_insert(m, None, 0, 0x30000, 0x31000, VM_PROT.READ, ALL, 0) == KERN.SUCCESS
    obj = vm_object_allocate(OBJT.VNODE, 8)
    assert vm_map_insert(m, obj, 0x2000, 0x40000, 0x44000, RW, ALL, 0) == KERN.SUCCESS
    vm_map_unlock(m)
    vm_map_check(m)
    return m


def _id(m, start):
    (e,) = [e for e in m.entries() if e.start == start]
    return e.id


def test_overlap_is_reported():
    m = _map()
    e = _id(m, 0x30000)
    m._t.start[e] = 0x21000  # now starts inside [0x20000, 0x22000)
    recompute_max_free(m)  # keep max_free consistent, so the overlap itself is what is found
    with pytest.raises(VmMapInconsistent,
                       match=rf"^entry #{e} \[0x21000, 0x31000\) starts below the end 0x22000 "):
        vm_map_check(m)


def test_wrong_max_free_is_reported():
    m = _map()
    r = m.root
    good = m._t.max_free[r]
    m._t.max_free[r] = good + 0x1000
    with pytest.raises(VmMapInconsistent, match=rf"^entry #{r} .*: max_free is "
                                                rf"{good + 0x1000:#x} but its gaps say"):
        vm_map_check(m)


def test_unaligned_entry_is_reported():
    m = _map()
    e = _id(m, 0x30000)
    m._t.end[e] = 0x30800
    recompute_max_free(m)
    m.size -= 0x800
    with pytest.raises(VmMapInconsistent,
                       match=rf"^entry #{e} \[0x30000, 0x30800\) is not page-aligned$"):
        vm_map_check(m)


def test_unaligned_object_offset_is_reported():
    m = _map()
    e = _id(m, 0x40000)
    m._t.offset[e] = 0x2010
    with pytest.raises(VmMapInconsistent,
                       match=rf"^entry #{e} \[0x40000, 0x44000\): its object offset 0x2010 is "
                             r"not page-aligned$"):
        vm_map_check(m)


def test_unaligned_map_bounds_are_reported():
    m = _map()
    m._t.end[HEADER] = 0x10800  # the header's end is the map's min
    with pytest.raises(VmMapInconsistent, match=r"bounds \[0x10800, 0x100000\) are not "
                                                r"page-aligned"):
        vm_map_check(m)


def test_wrong_counters_are_reported():
    m = _map()
    m.nentries += 1
    with pytest.raises(VmMapInconsistent, match=r"tree holds 3 entries but nentries=4"):
        vm_map_check(m)
    m.nentries -= 1
    m.size += 0x1000
    with pytest.raises(VmMapInconsistent,
                       match=r"map.size is 0x8000 but the entries add up to 0x7000"):
        vm_map_check(m)


def test_broken_header_link_is_reported():
    m = _map()
    first = _id(m, 0x20000)
    m._t.right[HEADER] = _id(m, 0x30000)
    with pytest.raises(VmMapInconsistent, match=rf"header.right is #\d+, not the first entry "
                                                rf"#{first}"):
        vm_map_check(m)


def test_vm_map_init_empties_and_rebounds_the_map():
    m = _map()
    pmap = object()
    vm_map_lock(m)
    m.anon_loc = 0x50000
    m.flags = VM_MAP_FLAGS.WXORX
    vm_map_unlock(m)
    assert m.timestamp > 0
    vm_map_init(m, pmap, 0x200000, 0x400000)
    assert (vm_map_min(m), vm_map_max(m)) == (0x200000, 0x400000)
    assert (m.header.start, m.header.end) == (0x400000, 0x200000)  # reversed, as FreeBSD
    assert (m.nentries, m.size, m.timestamp, m.anon_loc, int(m.flags)) == (0, 0, 0, 0, 0)
    assert (m.root, m.pmap, m.lock.mode, m.entries()) == (NULL, pmap, "unlocked", [])
    vm_map_check(m)
    vm_map_lock(m)
    assert vm_map_insert(m, None, 0, 0x20000, 0x22000, RW, ALL, 0) == KERN.INVALID_ADDRESS
    assert vm_map_insert(m, None, 0, 0x3ff000, 0x400000, RW, ALL, 0) == KERN.SUCCESS
    vm_map_unlock(m)
    assert [(e.start, e.end) for e in m.entries()] == [(0x3ff000, 0x400000)]
    vm_map_check(m)


def test_vm_map_init_refuses_reversed_bounds_and_changes_nothing():
    m = _map()
    rows = [(e.start, e.end) for e in m.entries()]
    with pytest.raises(ValueError, match=r"^vm_map_init: min 0x400000 is above max 0x200000$"):
        vm_map_init(m, None, 0x400000, 0x200000)
    assert [(e.start, e.end) for e in m.entries()] == rows
    assert (vm_map_min(m), vm_map_max(m)) == (0x10000, 0x100000)

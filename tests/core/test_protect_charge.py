"""vm_map_protect's swap accounting when a mapping gains write access (FreeBSD 14): an entry
without an object, or NEEDS_COPY, gets the thread's cred; an object with OBJ_SWAP (anonymous or
named swap) is charged for all of its pages; any other object (a vnode) is not charged. 14 no
longer has OBJT_DEFAULT, so the test is the OBJ_SWAP flag alone."""

from __future__ import annotations

from vmlab.core import (
    KERN,
    OBJT,
    VM_MAP_PROTECT,
    VM_PROT,
    curthread,
    vm_map_create,
    vm_map_insert,
    vm_map_lock,
    vm_map_protect,
    vm_map_unlock,
    vm_object_allocate,
    vm_object_allocate_anon,
)
from vmlab.core.vm_object import OBJ_SWAP


def _protect_rw(obj):
    m = vm_map_create(None, 0x10000, 0x100000)
    vm_map_lock(m)
    assert vm_map_insert(m, obj, 0, 0x20000, 0x22000, VM_PROT.READ, VM_PROT.ALL,
                         0) == KERN.SUCCESS
    vm_map_unlock(m)
    assert m.entries()[0].cred is None and obj.cred is None  # read-only: nothing charged
    assert vm_map_protect(m, 0x20000, 0x22000, VM_PROT.RW, 0,
                          VM_MAP_PROTECT.SET_PROT) == KERN.SUCCESS
    return m


def test_named_swap_object_is_charged_for_all_its_pages():
    obj = vm_object_allocate(OBJT.SWAP, 4)
    assert obj.flags & OBJ_SWAP
    _protect_rw(obj)
    assert obj.cred is curthread().td_ucred and obj.charge == 4 << 12


def test_anonymous_object_is_charged():
    obj = vm_object_allocate_anon(4)
    _protect_rw(obj)
    assert obj.cred is curthread().td_ucred and obj.charge == 4 << 12


def test_vnode_object_is_not_charged():
    obj = vm_object_allocate(OBJT.VNODE, 4)
    m = _protect_rw(obj)
    assert (obj.cred, obj.charge, m.entries()[0].cred) == (None, 0, None)
    assert m.entries()[0].protection == VM_PROT.RW

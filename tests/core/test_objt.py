"""OBJT is FreeBSD 14's enum obj_type: no OBJT_DEFAULT (removed in 14; 8 is OBJT_FIRST_DYN)."""

from vmlab.core import OBJT, vm_object_allocate_anon


def test_objt_values_and_no_default():
    assert {k: int(v) for k, v in OBJT.__members__.items()} == {
        "INVALID": 0, "SWAP": 1, "VNODE": 2, "DEVICE": 3, "PHYS": 4, "DEAD": 5, "SG": 6,
        "MGTDEVICE": 7,
    }
    assert vm_object_allocate_anon(1).type is OBJT.SWAP

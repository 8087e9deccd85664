"""sysctl vm.cluster_anon (FreeBSD 14's clustering_anon_allowed + vm_map_find): 0 never
clusters, 1 (default) clusters anonymous mappings made without a hint (or with MAP_NO_HINT),
2 always clusters. Clustering searches from map.anon_loc (when it is not 0) and moves anon_loc
past the new mapping; a failed clustered search retries first fit from the hint."""

from __future__ import annotations

from vmlab.core import (
    KERN,
    MAP,
    OBJT,
    VM_PROT,
    VMFS,
    sysctl,
    vm_map_check,
    vm_map_create,
    vm_map_find,
    vm_map_remove,
    vm_object_allocate,
)

RW, ALL, ANY = VM_PROT.RW, VM_PROT.ALL, VMFS.ANY_SPACE


def _find(m, hint, length, cow=0, prot=RW, obj=None, max_addr=0):
    rv, a = vm_map_find(m, obj, 0, hint, length, max_addr, ANY, prot, ALL, cow)
    assert rv == KERN.SUCCESS
    return a, m.anon_loc


def _run_sequence(mode):
    """The same calls under each mode; returns (addr, anon_loc) after each one."""
    sysctl("vm.cluster_anon", mode)
    m = vm_map_create(None, 0x10000, 0x1000000)
    out = [_find(m, 0, 0x1000), _find(m, 0, 0x2000)]
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS  # a hole at the bottom
    out.append(_find(m, 0, 0x1000))
    out.append(_find(m, 0x40000, 0x1000))  # a hint
    out.append(_find(m, 0x20000, 0x1000, cow=MAP.NO_HINT))  # a hint the caller disowns
    vm_map_check(m)
    return out


def test_mode_0_never_clusters():
    # first fit from the map's min every time: the hole at 0x10000 is reused, anon_loc stays 0
    assert _run_sequence(0) == [(0x10000, 0), (0x11000, 0), (0x10000, 0), (0x40000, 0),
                                (0x20000, 0)]


def test_mode_1_clusters_only_without_a_hint():
    assert sysctl("vm.cluster_anon") == 1  # FreeBSD 14's default
    assert _run_sequence(1) == [
        (0x10000, 0x11000),  # anon_loc 0: plain first fit, then anon_loc moves past it
        (0x11000, 0x13000),  # clustered after anon_loc
        (0x13000, 0x14000),  # the hole at 0x10000 is skipped: search starts at anon_loc
        (0x40000, 0x14000),  # a hint: no clustering, anon_loc unchanged
        (0x14000, 0x15000),  # MAP_NO_HINT: clustered although a hint was given
    ]


def test_mode_2_always_clusters():
    assert _run_sequence(2) == [
        (0x10000, 0x11000), (0x11000, 0x13000), (0x13000, 0x14000),
        (0x14000, 0x15000),  # the hint 0x40000 is ignored: placed at anon_loc
        (0x15000, 0x16000),
    ]


def test_mode_2_with_anon_loc_zero_ignores_the_hint_too():
    """vm_map_find sets curr_min_addr = map->anon_loc before testing it for 0, so the first
    clustered search starts at 0 (the map's min), not at the hint."""
    sysctl("vm.cluster_anon", 2)
    m = vm_map_create(None, 0x10000, 0x1000000)
    assert _find(m, 0x40000, 0x1000) == (0x10000, 0x11000)
    assert _find(m, 0x20000, 0x1000) == (0x11000, 0x12000)


def test_only_plain_anonymous_mappings_cluster():
    """No clustering for an object, prot NONE, MAP_INHERIT_SHARE or a max_addr (vm_map_find's
    condition); anon_loc stays where the last clustered mapping left it."""
    m = vm_map_create(None, 0x10000, 0x1000000)
    assert _find(m, 0, 0x1000) == (0x10000, 0x11000)
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS
    assert m.anon_loc == 0x10000  # vm_map_delete moved it back: the entry ended at anon_loc
    assert _find(m, 0, 0x3000) == (0x10000, 0x13000)
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS  # a hole below anon_loc
    obj = vm_object_allocate(OBJT.VNODE, 1)
    assert _find(m, 0, 0x1000, obj=obj) == (0x10000, 0x13000)
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS
    assert _find(m, 0, 0x1000, prot=VM_PROT.NONE) == (0x10000, 0x13000)
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS
    assert _find(m, 0, 0x1000, cow=MAP.INHERIT_SHARE) == (0x10000, 0x13000)
    assert vm_map_remove(m, 0x10000, 0x11000) == KERN.SUCCESS
    assert _find(m, 0, 0x1000, max_addr=0x800000) == (0x10000, 0x13000)
    assert _find(m, 0, 0x1000) == (0x13000, 0x14000)
    vm_map_check(m)


def test_clustered_search_that_fails_retries_from_the_hint():
    m = vm_map_create(None, 0x10000, 0x20000)
    assert _find(m, 0, 0xE000) == (0x10000, 0x1E000)
    assert vm_map_remove(m, 0x10000, 0x12000) == KERN.SUCCESS
    assert _find(m, 0, 0x2000) == (0x1E000, 0x20000)  # still room above anon_loc
    # nothing above anon_loc now: the second try is first fit from the hint (0 -> min)
    assert _find(m, 0, 0x2000) == (0x10000, 0x12000)
    vm_map_check(m)

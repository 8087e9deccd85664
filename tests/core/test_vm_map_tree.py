"""The splay tree's shape and max_free after each operation, against FreeBSD's own code.

The expected strings were produced by compiling the splay functions of sys/vm/vm_map.c
(SPLAY_LEFT/RIGHT_STEP, vm_map_splay_split, the merge_* walks, vm_map_splay, entry_link,
entry_unlink, entry_resize, vm_map_findspace) into a small C driver and running the same
operations. Each node prints as (start end max_free offset left right), '-' for no child.
"""

from __future__ import annotations

import re

from core_util import shape

from vmlab.core import (
    KERN,
    VM_PROT,
    sysctl,
    vm_map_check,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_create,
    vm_map_delete,
    vm_map_entry_resize,
    vm_map_findspace,
    vm_map_insert,
    vm_map_lock,
    vm_map_lookup_entry,
)

# Distinct protections keep neighbours from merging, so the tree is the pure splay result.
PROTS = [VM_PROT.READ, VM_PROT.RW, VM_PROT.READ | VM_PROT.EXECUTE, VM_PROT.ALL, VM_PROT.NONE]

GOLDEN = [
    "(20000 21000 df000 0 - -)",
    "(22000 23000 dd000 0 (20000 21000 10000 0 - -) -)",
    "(24000 25000 db000 0 (22000 23000 10000 0 (20000 21000 10000 0 - -) -) -)",
    "(26000 27000 d9000 0 (24000 25000 10000 0 (22000 23000 10000 0 (20000 21000 10000 0 - -) "
    "-) -) -)",
    "(28000 29000 d7000 0 (26000 27000 10000 0 (24000 25000 10000 0 (22000 23000 10000 0 "
    "(20000 21000 10000 0 - -) -) -) -) -)",
    # splay for 0x22000 (vm_map_lookup_entry)
    "(22000 23000 d7000 0 (20000 21000 10000 0 - -) (26000 27000 d7000 0 (24000 25000 1000 0 "
    "- -) (28000 29000 d7000 0 - -)))",
    # findspace(0x10000, 0x3000) -> 0x10000
    "(20000 21000 d7000 0 - (22000 23000 d7000 0 - (26000 27000 d7000 0 (24000 25000 1000 0 "
    "- -) (28000 29000 d7000 0 - -))))",
    # lookup + clip_start at 0x24800
    "(24000 24800 d7000 0 (22000 23000 10000 0 (20000 21000 10000 0 - -) -) (24800 25000 "
    "d7000 800 - (26000 27000 d7000 0 - (28000 29000 d7000 0 - -))))",
    # lookup + clip_end at 0x26400
    "(26400 27000 d7000 400 (26000 26400 10000 0 (24800 25000 10000 800 (24000 24800 10000 0 "
    "(22000 23000 10000 0 (20000 21000 10000 0 - -) -) -) -) -) (28000 29000 d7000 0 - -))",
    # delete [0x22000, 0x23000)
    "(20000 21000 d7000 0 - (24000 24800 d7000 0 - (26000 26400 d7000 0 (24800 25000 1000 "
    "800 - -) (26400 27000 d7000 400 - (28000 29000 d7000 0 - -)))))",
    # insert [0x30000, 0x31000)
    "(30000 31000 cf000 0 (28000 29000 10000 0 (24000 24800 10000 0 (20000 21000 10000 0 - -) "
    "(26400 27000 1000 400 (26000 26400 1000 0 (24800 25000 1000 800 - -) -) -)) -) -)",
    # lookup 0x30000 + resize by 0x800
    "(30000 31800 ce800 0 (28000 29000 10000 0 (24000 24800 10000 0 (20000 21000 10000 0 - -) "
    "(26400 27000 1000 400 (26000 26400 1000 0 (24800 25000 1000 800 - -) -) -)) -) -)",
    # findspace(0x21000, 0x1000) -> 0x21000
    "(24000 24800 ce800 0 (20000 21000 10000 0 - -) (28000 29000 ce800 0 (26400 27000 1000 "
    "400 (26000 26400 1000 0 (24800 25000 1000 800 - -) -) -) (30000 31800 ce800 0 - -)))",
]


#: The C driver clipped at 0x24800 and 0x26400 and resized by 0x800, which vm_map now refuses
#: (VmMapUnaligned). Splay and findspace only compare addresses and sizes, so the run below
#: uses every number times K (page-aligned) and expects every number of GOLDEN times K.
K = 0x10


def _scaled(golden: str) -> str:
    return re.sub(r"[0-9a-f]+", lambda mo: f"{int(mo.group(), 16) * K:x}", golden)


def test_tree_shapes_match_freebsd():
    m = vm_map_create(None, 0x10000 * K, 0x100000 * K)
    vm_map_lock(m)
    got = []
    for i, a in enumerate(range(0x20000, 0x2A000, 0x2000)):
        assert vm_map_insert(m, None, 0, a * K, (a + 0x1000) * K, PROTS[i], VM_PROT.ALL, 0) == (
            KERN.SUCCESS
        )
        got.append(shape(m))
    found, e = vm_map_lookup_entry(m, 0x22000 * K)
    assert found and e.start == 0x22000 * K
    got.append(shape(m))
    assert vm_map_findspace(m, 0x10000 * K, 0x3000 * K) == 0x10000 * K
    got.append(shape(m))
    found, e = vm_map_lookup_entry(m, 0x24800 * K)
    assert vm_map_clip_start(m, e, 0x24800 * K) == KERN.SUCCESS
    assert (e.start, e.end, e.offset) == (0x24800 * K, 0x25000 * K, 0x800 * K)
    got.append(shape(m))
    found, e = vm_map_lookup_entry(m, 0x26400 * K)
    assert vm_map_clip_end(m, e, 0x26400 * K) == KERN.SUCCESS
    assert (e.start, e.end, e.offset) == (0x26000 * K, 0x26400 * K, 0)
    got.append(shape(m))
    assert vm_map_delete(m, 0x22000 * K, 0x23000 * K) == KERN.SUCCESS
    got.append(shape(m))
    assert vm_map_insert(m, None, 0, 0x30000 * K, 0x31000 * K, VM_PROT.READ, VM_PROT.READ,
                         0) == 0
    got.append(shape(m))
    found, e = vm_map_lookup_entry(m, 0x30000 * K)
    vm_map_entry_resize(m, e, 0x800 * K)
    m.size += 0x800 * K
    got.append(shape(m))
    assert vm_map_findspace(m, 0x21000 * K, 0x1000 * K) == 0x21000 * K
    got.append(shape(m))
    vm_map_check(m)
    assert got == [_scaled(g) for g in GOLDEN]


def test_address_order_build_is_a_left_path_and_stays_iterative():
    """Inserting in address order makes each new entry the root with the old tree on its left
    (vm_map_entry_link); 20000 entries must not hit any recursion limit."""
    m = vm_map_create(None, 0, 1 << 47)
    vm_map_lock(m)
    for i in range(20000):
        a = 0x1000 + i * 0x2000
        assert vm_map_insert(m, None, 0, a, a + 0x1000, VM_PROT.RW, VM_PROT.ALL, 0) == 0
    assert m.nentries == 20000
    assert m.root != -1 and m._t.start[m.root] == 0x1000 + 19999 * 0x2000
    found, e = vm_map_lookup_entry(m, 0x1000)
    assert found and e.start == 0x1000
    vm_map_check(m)


def test_findspace_kernel_quirk_switch():
    """start in the gap before the last entry, that gap too small: FreeBSD 14 fails, vmlab's
    default answers the first fit after the last entry."""
    m = vm_map_create(None, 0x1000, 0x100000)
    vm_map_lock(m)
    vm_map_insert(m, None, 0, 0x2000, 0x3000, VM_PROT.RW, VM_PROT.ALL, 0)
    assert vm_map_findspace(m, 0x1000, 0x2000) == 0x3000
    sysctl("vmlab.findspace_kernel_quirk", 1)
    assert vm_map_findspace(m, 0x1000, 0x2000) == 0x100000 - 0x2000 + 1
    vm_map_check(m)

"""translate_many agrees with a loop of translate, results and memory side effects included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.core.x86 import (
    CR0_PE,
    CR0_PG,
    CR0_WP,
    CR4_LA57,
    CR4_PAE,
    CR4_SMAP,
    CR4_SMEP,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    Mmu,
    PhysicalMemory,
)

NFRAMES = 12
IDX = (0, 1, 255, 256, 511)  # the few indices random addresses use at every level


@st.composite
def entries(draw) -> int:
    frame = draw(st.integers(1, NFRAMES + 1))  # a table frame, or beyond memory
    bits = draw(st.integers(0, 0x1FF))  # P RW US PWT PCD A D PS G
    if draw(st.integers(0, 5)):
        bits = (bits | 1) & ~(0x80 if draw(st.booleans()) else 0)  # mostly present
        if draw(st.integers(0, 3)):
            bits |= 0x7  # mostly user + writable
    hi = draw(st.sampled_from([0, 0, 0, 1 << 63, 1 << 51, 1 << 14, 1 << 12, 1 << 35,
                               0x7 << 9]))
    return (frame << 12) | bits | hi


@st.composite
def setups(draw):
    la57 = draw(st.booleans())
    m = draw(st.sampled_from([52, 36, 20]))
    values = draw(st.lists(entries(), min_size=(NFRAMES - 1) * len(IDX),
                           max_size=(NFRAMES - 1) * len(IDX)))
    slots = [(f, i) for f in range(1, NFRAMES) for i in IDX]
    raw = [(f, i, v) for (f, i), v in zip(slots, values, strict=True)]
    cr0 = CR0_PG | CR0_PE | (CR0_WP if draw(st.booleans()) else 0)
    cr4 = CR4_PAE | (CR4_LA57 if la57 else 0)
    cr4 |= CR4_SMEP if draw(st.booleans()) else 0
    cr4 |= CR4_SMAP if draw(st.booleans()) else 0
    efer = EFER_LME | EFER_LMA | (EFER_NXE if draw(st.booleans()) else 0)
    ac = draw(st.booleans())
    root = draw(st.integers(1, NFRAMES - 1)) << 12
    nlev = 5 if la57 else 4
    vas = []
    for _ in range(draw(st.integers(1, 40))):
        idx = [draw(st.sampled_from(IDX)) for _ in range(nlev)]
        va = 0
        for i, k in enumerate(reversed(idx)):
            va |= k << (12 + 9 * i)
        va |= draw(st.integers(0, 4095))
        top = 56 if la57 else 47
        if va >> top:
            va |= ((1 << 64) - 1) & ~((1 << top) - 1)  # sign-extend: canonical
        if draw(st.integers(0, 9)) == 0:
            va ^= 1 << 60  # non-canonical
        vas.append(va)
    return m, raw, dict(cr0=cr0, cr4=cr4, efer=efer, ac=ac), root, vas


@settings(max_examples=150, deadline=None)
@given(setups(), st.sampled_from("rwx"), st.sampled_from([0, 3]))
def test_translate_many_matches_loop(setup, access, cpl):
    m, raw, regs, root, vas = setup
    pm1 = PhysicalMemory(NFRAMES * 4096, maxphyaddr=m)
    for frame, idx, value in raw:
        pm1.write_u64(frame * 4096 + 8 * idx, value)
    pm2 = PhysicalMemory.from_bytes(pm1.to_bytes(), maxphyaddr=m)
    seq = [Mmu(pm1, root, **regs).translate(va, access, cpl) for va in vas]
    res = Mmu(pm2, root, **regs).translate_many(np.array(vas, dtype=np.uint64), access, cpl)
    for i, w in enumerate(seq):
        assert bool(res.ok[i]) == w.ok
        assert int(res.vector[i]) == (0 if w.ok else w.vector)
        assert int(res.error_code[i]) == (w.error_code or 0)
        assert int(res.pa[i]) == (w.pa if w.ok else 0)
        assert int(res.page_size[i]) == (w.page_size if w.ok else 0)
    assert pm1.to_bytes() == pm2.to_bytes()  # same A/D side effects


def test_translate_many_without_ad_leaves_memory():
    pm = PhysicalMemory(16 * 4096)
    pm.write_u64(0x1000, 0x2007)
    pm.write_u64(0x2000, 0x3007)
    pm.write_u64(0x3000, 0x4007)
    pm.write_u64(0x4000, 0x5007)
    img = pm.to_bytes()
    r = Mmu(pm, 0x1000).translate_many([0x0, 0x10, 0x1000], "w", 3, set_ad=False)
    assert r.ok.tolist() == [True, True, False] and r.pa.tolist() == [0x5000, 0x5010, 0]
    assert pm.to_bytes() == img
    Mmu(pm, 0x1000).translate_many([0x0], "w", 3)
    assert pm.read_u64(0x4000) == 0x5067 and pm.read_u64(0x1000) == 0x2027

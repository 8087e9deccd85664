"""MOV to CR4 cannot switch the paging mode in long mode (#GP), and translate_many takes plain
Python lists (kernel addresses included) and empty input."""

from __future__ import annotations

import numpy as np
import pytest
from x86_tables import Tables

from vmlab.core.x86 import (
    CR4_LA57,
    CR4_PAE,
    CR4_PGE,
    EFER_LME,
    EFER_NXE,
    VECTOR_GP,
    GeneralProtectionFault,
    Mmu,
)

VA = 0x0000_7F5A_3C8E_1ABC
KVA = 0xFFFF_8000_0000_0000  # first kernel-half address (PML4 slot 256)


@pytest.mark.parametrize("la57", [False, True])
def test_toggling_la57_in_long_mode_is_gp_and_changes_nothing(la57):
    t = Tables(la57=la57)
    t.map4k(VA, 0x0012_3067)
    m = t.mmu(cr4=CR4_PAE | CR4_PGE | (CR4_LA57 if la57 else 0))
    assert m.access(VA, "r", 3).ok  # one TLB entry
    before = (m.cr4, m.cr3, m.levels, len(m.tlb))
    with pytest.raises(GeneralProtectionFault, match=r"#GP\(0\).*CR4\.LA57.*long mode") as ei:
        m.cr4 ^= CR4_LA57
    assert ei.value.vector == VECTOR_GP == 13
    assert isinstance(ei.value, ValueError)
    assert f"stays with {5 if la57 else 4}-level paging" in str(ei.value)
    assert (m.cr4, m.cr3, m.levels, len(m.tlb)) == before
    assert m.access(VA, "r", 3).source == "tlb"  # the TLB was not flushed either
    # other CR4 writes still work (PGE toggles flush everything)
    m.cr4 = m.cr4 & ~CR4_PGE
    assert len(m.tlb) == 0 and m.levels == (5 if la57 else 4)


def test_la57_can_change_outside_long_mode():
    """With EFER.LMA = 0 (before long mode is activated) the SDM allows setting LA57."""
    t = Tables(la57=True)
    t.map4k(VA, 0x0012_3067)
    m = Mmu(t.pm, t.root, cr4=CR4_PAE, efer=EFER_LME | EFER_NXE)
    m.cr4 = CR4_PAE | CR4_LA57
    assert m.levels == 5 and m.translate(VA, "r", 3).pa == 0x123ABC


def test_translate_many_takes_lists_of_python_ints():
    t = Tables()
    t.map4k(VA, 0x0012_3067)
    m = t.mmu()
    r = m.translate_many([KVA, VA, 0x1000])  # numpy alone would infer float64 here
    assert r.pa.dtype == np.uint64 and len(r) == 3
    assert r.ok.tolist() == [False, True, False]
    assert r.pa.tolist() == [0, 0x123ABC, 0]
    assert r.vector.tolist() == [14, 0, 14]
    # the kernel address is canonical: a #PF (not present, user read), not a #GP
    assert r.error_code.tolist() == [0x4, 0, 0x4]
    assert r.error_code.tolist()[0] == m.translate(KVA, "r", 3).error_code
    r2 = m.translate_many((0xFFFF_FFFF_FFFF_F000, 0x0000_8000_0000_0000), "r", 0)
    assert r2.vector.tolist() == [14, VECTOR_GP]  # canonical kernel page vs. hole
    # 1 << 63 + a small address: exact, not rounded through a float
    r3 = m.translate_many([(1 << 63) + 1, VA])
    assert r3.vector.tolist() == [VECTOR_GP, 0] and r3.pa.tolist() == [0, 0x123ABC]


@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=np.uint64), np.array([])])
def test_translate_many_empty(empty):
    r = Tables().mmu().translate_many(empty)
    assert len(r) == 0
    assert [a.dtype for a in (r.ok, r.pa, r.page_size, r.vector, r.error_code)] == [
        np.dtype(bool), np.dtype(np.uint64), np.dtype(np.uint64), np.dtype(np.uint8),
        np.dtype(np.uint32)]
    assert all(a.shape == (0,) for a in (r.ok, r.pa, r.page_size, r.vector, r.error_code))


@pytest.mark.parametrize("bad,exc", [
    ([1.5], TypeError), ([0x1000, 2.0], TypeError), (np.array([4096.0]), TypeError),
    ([1 << 64], ValueError), ([-1], ValueError), (["0x1000"], TypeError),
])
def test_translate_many_refuses_non_addresses(bad, exc):
    with pytest.raises(exc):
        Tables().mmu().translate_many(bad)

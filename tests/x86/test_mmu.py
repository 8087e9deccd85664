"""The walk against the SDM's rules (vol. 3A ch. 4) as summarised in x86-64-paging.md."""

from __future__ import annotations

import pytest
from x86_tables import Tables

from vmlab.core.x86 import (
    CR0_PE,
    CR0_PG,
    CR4_PAE,
    CR4_SMAP,
    CR4_SMEP,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    PG_A,
    PG_M,
    VECTOR_GP,
    VECTOR_PF,
)

VA = 0x0000_7F5A_3C8E_1ABC
NX = 1 << 63
NO_NXE = EFER_LME | EFER_LMA


def test_worked_example_bits_and_ad(tables):
    epas = tables.map4k(VA, 0x8000_0000_0012_3467)
    m = tables.mmu()
    w = m.translate(VA, "r", 3)
    assert w.ok and w.pa == 0x123ABC and w.page_size == 4096
    assert [s.level for s in w.steps] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert [s.index for s in w.steps] == [254, 360, 484, 225]
    assert [s.entry_pa for s in w.steps] == epas
    assert w.steps[0].entry_pa == 0x17F0
    assert all(s.written is None for s in w.steps)  # A, D already set
    f = m.translate(VA, "x", 3)
    assert (f.ok, f.vector, f.error_code, f.cr2) == (False, VECTOR_PF, 0x15, VA)


def test_read_sets_a_write_sets_d_only_in_leaf(tables):
    epas = tables.map4k(VA, 0x0012_3007, inter=0x07)
    m = tables.mmu()
    assert m.translate(VA, "r", 3).ok
    assert [tables.pm.read_u64(e) for e in epas] == [0x2027, 0x3027, 0x4027, 0x123027]
    assert m.translate(VA, "w", 3).ok
    assert [tables.pm.read_u64(e) for e in epas] == [0x2027, 0x3027, 0x4027, 0x123067]


def test_prefault_pte_read_then_write(tables):
    epas = tables.map4k(VA, 0x8000_0000_0012_3405)
    m = tables.mmu()
    assert m.translate(VA, "r", 3).ok
    assert tables.pm.read_u64(epas[-1]) == 0x8000_0000_0012_3425
    w = m.translate(VA, "w", 3)
    assert (w.vector, w.error_code) == (VECTOR_PF, 0x07)
    assert tables.pm.read_u64(epas[-1]) == 0x8000_0000_0012_3425  # refused leaf untouched


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_not_present_at_each_level_sets_a_above_only(level):
    t = Tables()
    epas = t.map4k(VA, 0x0012_3007, inter=0x07)
    t.pm.write_u64(epas[level], t.pm.read_u64(epas[level]) & ~1)
    before = [t.pm.read_u64(e) for e in epas]
    for access, cpl, ec in (("r", 3, 0x4), ("w", 3, 0x6), ("x", 3, 0x14), ("r", 0, 0x0),
                            ("w", 0, 0x2), ("x", 0, 0x10)):
        w = t.mmu().translate(VA, access, cpl)
        assert (w.ok, w.vector, w.error_code, w.cr2) == (False, 14, ec, VA)
        assert len(w.steps) == level + 1
    after = [t.pm.read_u64(e) for e in epas]
    assert after[:level] == [b | PG_A for b in before[:level]]
    assert after[level:] == before[level:]


def test_id_bit_needs_nxe_or_smep(tables):
    tables.map4k(VA, 0x0012_3005)  # present, user, read-only, not accessed
    tables.pm.write_u64(0x17F0, 0)  # make PML4E not present
    assert tables.mmu(efer=NO_NXE).translate(VA, "x", 3).error_code == 0x04
    assert tables.mmu(efer=NO_NXE, cr4=CR4_PAE | CR4_SMEP).translate(VA, "x", 3).error_code \
        == 0x14
    assert tables.mmu().translate(VA, "x", 3).error_code == 0x14


@pytest.mark.parametrize(
    ("level", "bit", "leaf_ps"),
    [(0, 51, False), (1, 51, False), (2, 51, False), (3, 51, False), (0, 7, False),
     (2, 14, True), (1, 20, True)],
)
def test_reserved_bits(level, bit, leaf_ps):
    t = Tables(maxphyaddr=40)
    epas = t.map4k(VA, 0x0012_3067)
    e = t.pm.read_u64(epas[level])
    if leaf_ps:
        e = (e & ~0xFFF_FFFF_F000) | 0x80 | 0x67  # 2 MiB / 1 GiB leaf at frame 0
    t.pm.write_u64(epas[level], e | (1 << bit))
    w = t.mmu().translate(VA, "r", 3)
    assert (w.ok, w.error_code) == (False, 0x0D)  # P | U | RSVD
    # without that bit the walk succeeds (or reaches the right leaf)
    t.pm.write_u64(epas[level], e)
    assert t.mmu().translate(VA, "r", 3).ok


def test_bits_below_maxphyaddr_are_address():
    t = Tables(maxphyaddr=40)
    epas = t.map4k(VA, 0x0012_3067 | (1 << 39))
    w = t.mmu().translate(VA, "r", 3)
    assert w.ok and w.pa == (1 << 39) | 0x123ABC  # beyond RAM: reported as hardware would
    t.pm.write_u64(epas[-1], 0x0012_3067 | (1 << 40))
    assert t.mmu().translate(VA, "r", 3).error_code == 0x0D


def test_xd_reserved_without_nxe(tables):
    tables.map4k(VA, NX | 0x0012_3067)
    assert tables.mmu(efer=NO_NXE).translate(VA, "r", 3).error_code == 0x0D
    w = tables.mmu().translate(VA, "r", 3)
    assert w.ok and w.xd
    tables2 = Tables()  # XD in the intermediate entries is ORed into the leaf's rights
    tables2.map4k(VA, 0x0012_3067, inter=0x67 | NX)
    assert tables2.mmu().translate(VA, "x", 3).error_code == 0x15
    assert tables2.mmu().translate(VA, "x", 0).error_code == 0x11


def test_two_mib_and_one_gib_pages(tables):
    va = 0x0000_0008_0064_3210
    epas = tables.map4k(va, 0)
    tables.pm.write_u64(epas[2], 0x8040_0000_4060_04E7)
    w = tables.mmu().translate(va, "r", 3)
    assert w.ok and w.pa == 0x4064_3210 and w.page_size == 2 << 20 and len(w.steps) == 3
    tables.pm.write_u64(epas[2], 0x8040_0000_4060_04E7 | (1 << 14))
    assert tables.mmu().translate(va, "r", 3).error_code == 0x0D
    tables.pm.write_u64(epas[2], 0x4060_10E7)  # PAT (bit 12) is not an address bit
    assert tables.mmu().translate(va, "r", 3).pa == 0x4064_3210
    tables.pm.write_u64(epas[1], 0x4000_0087)  # 1 GiB leaf, no A
    w = tables.mmu().translate(va, "w", 3)
    assert w.ok and w.page_size == 1 << 30 and w.pa == 0x4000_0000 | (va & ((1 << 30) - 1))
    assert tables.pm.read_u64(epas[1]) == 0x4000_00E7
    assert tables.mmu(pdpe1gb=False).translate(va, "r", 3).error_code == 0x0D


@pytest.mark.parametrize(
    ("leaf", "inter", "access", "cpl", "cr0wp", "ok", "ec"),
    [
        (0x063, 0x67, "r", 3, True, False, 0x05),  # supervisor page, user read
        (0x065, 0x67, "w", 3, False, False, 0x07),  # RO page, user write, WP irrelevant
        (0x067, 0x65, "w", 3, True, False, 0x07),  # R/W ANDed across levels
        (0x067, 0x63, "r", 3, True, False, 0x05),  # U/S ANDed across levels
        (0x065, 0x67, "w", 0, True, False, 0x03),  # supervisor write RO, WP=1
        (0x065, 0x67, "w", 0, False, True, 0),  # supervisor write RO, WP=0: allowed (sets D)
        (0x061, 0x67, "w", 0, True, False, 0x03),
        (0x061, 0x67, "r", 0, True, True, 0),
    ],
)
def test_rights(leaf, inter, access, cpl, cr0wp, ok, ec):
    t = Tables()
    t.map4k(VA, 0x0012_3000 | leaf, inter=inter)
    from vmlab.core.x86 import CR0_WP

    cr0 = CR0_PG | CR0_PE | (CR0_WP if cr0wp else 0)
    w = t.mmu(cr0=cr0).translate(VA, access, cpl)
    assert w.ok == ok
    if not ok:
        assert w.error_code == ec
    elif access == "w":
        assert t.pm.read_u64(0x4708) & PG_M


def test_smep_smap_ac(tables):
    tables.map4k(VA, 0x0012_3067)  # user RW page, executable
    plain = tables.mmu()
    assert plain.translate(VA, "x", 0).ok and plain.translate(VA, "w", 0).ok
    smep = tables.mmu(cr4=CR4_PAE | CR4_SMEP)
    assert smep.translate(VA, "x", 0).error_code == 0x11
    assert smep.translate(VA, "r", 0).ok
    smap = tables.mmu(cr4=CR4_PAE | CR4_SMAP)
    assert smap.translate(VA, "r", 0).error_code == 0x01
    assert smap.translate(VA, "w", 0).error_code == 0x03
    assert smap.translate(VA, "x", 0).ok  # SMAP is for data only
    assert smap.translate(VA, "r", 3).ok  # and for supervisor accesses only
    ac = tables.mmu(cr4=CR4_PAE | CR4_SMAP | CR4_SMEP, ac=True)
    assert ac.translate(VA, "r", 0).ok and ac.translate(VA, "w", 0).ok
    assert ac.translate(VA, "x", 0).error_code == 0x11  # AC does not affect SMEP


def test_canonical_gp_and_la57():
    t = Tables()
    m = t.mmu()
    for va in (0x0000_8000_0000_0000, 0x00FF_FFFF_FFFF_F000, 0xFFFF_0000_0000_0000):
        w = m.translate(va, "r", 3)
        assert (w.ok, w.vector, w.error_code, w.cr2, w.steps) == (False, VECTOR_GP, 0, None, [])
    assert m.translate(0xFFFF_8000_0000_0000, "r", 0).vector == VECTOR_PF
    t5 = Tables(la57=True)
    va = 0x00FF_FFFF_FFFF_F123
    t5.map4k(va, 0x0012_3067)
    w = t5.mmu().translate(va, "r", 3)
    assert w.ok and w.pa == 0x123123
    assert [s.index for s in w.steps] == [255, 511, 511, 511, 511]
    assert [s.level for s in w.steps][0] == "PML5E"
    assert t5.mmu().translate(0x0100_0000_0000_0000, "r", 3).vector == VECTOR_GP


def test_bad_input():
    t = Tables()
    m = t.mmu()
    with pytest.raises(ValueError):
        m.translate(VA, "rw", 3)
    with pytest.raises(ValueError):
        m.translate(VA, "r", 4)
    with pytest.raises(ValueError):
        m.translate(-1, "r", 3)
    with pytest.raises(TypeError):
        m.translate("0x1000", "r", 3)
    with pytest.raises(ValueError):
        m.cr3 = 1 << 52
    with pytest.raises(ValueError):
        t.mmu(efer=0).translate(VA, "r", 3)


def test_format_is_deterministic(tables):
    tables.map4k(VA, 0x8000_0000_0012_3405)
    text = tables.mmu().translate(VA, "r", 3).format()
    assert text.splitlines()[-1] == "  => PA 0x123abc (4 KiB page)"
    assert "(sets A -> 0x8000000000123425)" in text
    w = tables.mmu().translate(VA, "w", 3)
    assert "error code 0x7 (P W U)" in w.format()


def test_tlb_hits_stale_entries_dirty_rewalk_and_globals(tables):
    epas = tables.map4k(VA, 0x0012_3027)  # RW, clean
    m = tables.mmu(cr4=CR4_PAE | (1 << 7))  # PGE
    assert m.access(VA, "r", 3).source == "walk"
    assert m.access(VA, "r", 3).source == "tlb" and m.tlb.hits == 1
    # write through an entry cached with D = 0: re-walk, sets D
    w = m.access(VA, "w", 3)
    assert w.source == "walk" and tables.pm.read_u64(epas[-1]) & PG_M
    assert m.access(VA, "w", 3).source == "tlb"
    # unmapping without INVLPG leaves a stale translation in use
    tables.pm.write_u64(epas[-1], 0)
    assert m.access(VA, "r", 3).ok and not m.translate(VA, "r", 3).ok
    m.invlpg(VA)
    assert not m.access(VA, "r", 3).ok
    # clearing R/W of a clean PTE needs no flush: the write re-walks and faults
    tables.pm.write_u64(epas[-1], 0x0012_3027)
    assert m.access(VA, "r", 3).ok
    tables.pm.write_u64(epas[-1], 0x0012_3025)
    assert m.access(VA, "w", 3).error_code == 0x07
    # global entries survive a CR3 write with PGE, others do not
    tables.pm.write_u64(epas[-1], 0x0012_3125)
    m.invlpg(VA)
    assert m.access(VA, "r", 3).ok
    m.cr3 = m.cr3
    assert m.access(VA, "r", 3).source == "tlb"
    m.cr4 = CR4_PAE  # toggling PGE flushes everything
    assert len(m.tlb) == 0


def test_efer_nxe_constant_names():
    assert EFER_NXE == 1 << 11 and CR4_SMAP == 1 << 21 and CR4_SMEP == 1 << 20

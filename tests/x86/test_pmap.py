"""Amd64Pmap against FreeBSD amd64 pmap.c semantics (x86-64-paging.md §7), exact PTE bits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.core.constants import KERN, VM_PROT
from vmlab.core.x86 import (
    DMPML4I,
    KPML4BASE,
    PML4PML4I,
    Amd64Pmap,
    PhysicalMemory,
)

R, W, X = VM_PROT.READ, VM_PROT.WRITE, VM_PROT.EXECUTE
WIRED = 0x200
VA = 0x0000_7F5A_3C8E_1000


class Page:
    """A stand-in vm_page: phys_addr, dirty, referenced, valid, pv."""

    def __init__(self, pm: PhysicalMemory) -> None:
        self.phys_addr = pm.alloc_frame("data", owner=self)
        self.dirty = self.referenced = False
        self.valid = True
        self.pv: set = set()


@pytest.fixture
def pm() -> PhysicalMemory:
    return PhysicalMemory(4 << 20)


def test_pinit_kernel_slots_only(pm):
    p = Amd64Pmap(pm)
    root = p.pm_cr3
    assert pm.frame_kind(root) == "PML4" and p.resident_count == 1
    assert pm.read_u64(root + 8 * PML4PML4I) == root | 0x63
    assert all(pm.read_u64(root + 8 * i) == 0 for i in range(256))
    assert pm.read_u64(root + 8 * DMPML4I) & 0xFFF == 0x3
    assert [pm.read_u64(root + 8 * i) & 0xFFF for i in range(KPML4BASE, 512)] == [0x3] * 4
    # the DMAP maps physical memory: a supervisor read of PHYS_TO_DMAP(root) finds root
    w = p.mmu.translate(0xFFFF_F800_0000_0000 | root, "r", 0)
    assert w.ok and w.pa == root and w.page_size == 1 << 30
    assert p.mmu.translate(0xFFFF_F800_0000_0000 | root, "r", 3).error_code == 0x05


def test_enter_bits_and_walk(pm):
    p = Amd64Pmap(pm)
    m = Page(pm)
    assert p.enter(VA, m, R | W, W) == KERN.SUCCESS
    assert p.pte(VA) == (1 << 63) | m.phys_addr | 0x467
    assert p.resident_count == 1 + 3 + 1 and len(p.page_table_pages()) == 3
    w = p.mmu.translate(VA + 0xABC, "w", 3)
    assert w.ok and w.pa == m.phys_addr | 0xABC
    assert [s.raw & 0xFFF for s in w.steps[:3]] == [0x067] * 3
    m2 = Page(pm)
    p.enter(VA + 0x1000, m2, R | X, R | WIRED)
    assert p.pte(VA + 0x1000) == m2.phys_addr | 0xC25 and p.wired_count == 1
    with pytest.raises(ValueError):
        p.enter(VA, m, R, W)  # write access without write permission: KASSERT


def test_enter_existing_pte_rules(pm):
    p = Amd64Pmap(pm)
    m = Page(pm)
    p.enter(VA, m, R | W, W)
    p.mmu.access(VA, "w", 3)
    p.invalidations.clear()
    p.enter(VA, m, R | W, R)  # same frame, only A/M differ: unchanged, keeps M
    assert p.pte(VA) & 0x40 and p.invalidations == []
    p.enter(VA, m, R, R)  # drops RW and M of a dirty RW entry: page dirtied, INVLPG
    assert not p.pte(VA) & 0x42 and m.dirty and p.invalidations == [("page", VA)]
    assert len(p.mmu.tlb) == 0
    p.invalidations.clear()
    p.enter(VA, m, R | W, R)  # upgrade RO -> RW: lazy, no invalidation
    assert p.pte(VA) & 0x2 and p.invalidations == []
    n = Page(pm)
    p.enter(VA, n, R | W, W)  # new frame (COW break): old PTE had A -> INVLPG
    assert p.pte(VA) & 0xFFFFF000 == n.phys_addr and m.referenced
    assert p.invalidations == [("page", VA)]
    assert (p, VA) not in m.pv and (p, VA) in n.pv


def test_enter_quick_and_prefaultable(pm):
    p = Amd64Pmap(pm)
    m = Page(pm)
    assert not p.is_prefaultable(VA)  # no page-table page
    p.enter_quick(VA, m, R | W | X)
    assert p.pte(VA) == m.phys_addr | 0x405  # never RW, no A/M/W/NX with EXECUTE
    assert not p.is_prefaultable(VA) and p.is_prefaultable(VA + 0x1000)
    m2 = Page(pm)
    p.enter_quick(VA, m2, R)  # slot not empty: left alone
    assert p.pte(VA) == m.phys_addr | 0x405
    p.enter_quick(VA + 0x1000, m2, R)
    assert p.pte(VA + 0x1000) == (1 << 63) | m2.phys_addr | 0x405
    w = p.mmu.translate(VA + 0x1000, "w", 3)
    assert w.error_code == 0x07


def test_out_of_frames_is_clean():
    pm = PhysicalMemory(32 * 4096)
    p = Amd64Pmap(pm)
    pages = []
    while pm.nfree > 2:
        pages.append(Page(pm))
    img, free, res = pm.to_bytes(), pm.nfree, p.resident_count
    assert p.enter(VA, pages[0], R, R) == KERN.RESOURCE_SHORTAGE  # needs 3 tables
    assert (pm.to_bytes(), pm.nfree, p.resident_count) == (img, free, res)
    p.enter_quick(VA, pages[0], R)  # gives up silently
    assert (pm.to_bytes(), pm.nfree) == (img, free)


def test_protect_remove_and_teardown(pm):
    start = pm.nfree
    p = Amd64Pmap(pm)
    after_pinit = pm.nfree
    ms = [Page(pm) for _ in range(3)]
    for i, m in enumerate(ms):
        p.enter(VA + i * 4096, m, R | W | X, W if i == 0 else R)
    p.mmu.access(VA + 4096, "r", 3)
    p.protect(VA, VA + 3 * 4096, R | X)  # removes write: RW and M cleared, page dirtied
    assert ms[0].dirty and not ms[1].dirty
    assert [p.pte(VA + i * 4096) & 0x42 for i in range(3)] == [0, 0, 0]
    assert p.invalidations[-1] == ("all", None)
    p.protect(VA, VA + 4096, R)  # removes execute: NX set
    assert p.pte(VA) >> 63 == 1
    before = pm.to_bytes()
    p.protect(VA, VA + 4096, R | W | X)  # never adds rights
    assert pm.to_bytes() == before
    assert p.prot(VA) == R and p.prot(VA + 4096) == R | X
    p.remove(VA + 4096, VA + 8192)  # one page: INVLPG
    assert p.invalidations[-1] == ("page", VA + 4096) and ms[1].referenced
    assert p.extract(VA + 4096) == 0 and p.extract(VA + 0x123) == ms[0].phys_addr | 0x123
    p.remove(0, 1 << 47)
    assert p.resident_count == 1 and p.page_table_pages() == {}
    assert pm.nfree == after_pinit - 3
    p.release()
    for m in ms:
        pm.free_frame(m.phys_addr)
    # the kernel tables stay (FreeBSD: made at boot), everything else came back
    assert pm.nfree == start - 14


def test_copy_is_advisory_and_read_only(pm):
    src = Amd64Pmap(pm)
    dst = Amd64Pmap(pm)
    ms = [Page(pm) for _ in range(3)]
    for i, m in enumerate(ms):
        src.enter(VA + i * 4096, m, R | W, W | (WIRED if i == 2 else 0))
    dst.copy(src, VA + 4096, 3 * 4096, VA)  # different addresses: nothing
    assert list(dst.mappings()) == []
    dst.copy(src, VA, 3 * 4096, VA)
    assert [dst.pte(VA + i * 4096) for i in range(3)] == [
        src.pte(VA + i * 4096) & ~(0x800 | 0x40 | 0x20) for i in range(3)]
    assert dst.wired_count == 0 and dst.resident_count == 1 + 3 + 3


def test_remove_pages_keeps_wired_then_release_needs_empty(pm):
    p = Amd64Pmap(pm)
    a, b = Page(pm), Page(pm)
    p.enter(VA, a, R | W, W)
    p.enter(VA + 4096, b, R | W, R | WIRED)
    p.remove_pages()
    assert a.dirty and p.pte(VA) == 0 and p.pte(VA + 4096) != 0
    with pytest.raises(RuntimeError):
        p.release()
    p.remove(VA, VA + 2 * 4096)
    p.release()
    with pytest.raises(RuntimeError):
        p.enter(VA, a, R, R)


def test_stale_tlb_without_shootdown(pm):
    p = Amd64Pmap(pm)
    m = Page(pm)
    p.enter(VA, m, R | W, W)
    assert p.mmu.access(VA, "w", 3).ok
    p.shootdown = False
    p.protect(VA, VA + 4096, R | X)
    assert p.mmu.access(VA, "w", 3).ok  # stale writable entry still used
    assert not p.mmu.translate(VA, "w", 3).ok
    p.shootdown = True
    p.protect(VA, VA + 4096, R)  # NX was already set: nothing changes, nothing is flushed
    assert p.mmu.access(VA, "w", 3).ok
    p.remove(VA, VA + 4096)  # one page: INVLPG
    assert p.mmu.access(VA, "w", 3).error_code == 0x06


def test_la57_pmap(pm):
    p = Amd64Pmap(pm, la57=True)
    va = 0x00FF_FFFF_FFFF_F000
    m = Page(pm)
    assert pm.frame_kind(p.pm_cr3) == "PML5"
    assert p.enter(va, m, R | W, W) == KERN.SUCCESS
    w = p.mmu.translate(va + 5, "r", 3)
    assert w.ok and w.pa == m.phys_addr + 5 and len(w.steps) == 5
    p.remove(va, va + 4096)
    assert p.page_table_pages() == {}
    p.release()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["enter", "quick", "protect", "remove", "access"]),
                          st.integers(0, 40), st.integers(1, 8), st.integers(0, 7)),
                max_size=40))
def test_random_ops_keep_counts_consistent(ops):
    pm = PhysicalMemory(2 << 20)
    p = Amd64Pmap(pm)
    pages = [Page(pm) for _ in range(8)]
    base = 0x7FFF_FFE0_0000 - 20 * 4096  # straddles a 2 MiB boundary
    for op, i, n, prot in ops:
        va = base + i * 4096
        if op == "enter":
            p.enter(va, pages[i % 8], prot | R, prot & R)
        elif op == "quick":
            p.enter_quick(va, pages[i % 8], prot)
        elif op == "protect":
            p.protect(va, va + n * 4096, prot)
        elif op == "remove":
            p.remove(va, va + n * 4096)
        else:
            p.mmu.access(va, "w" if prot & 2 else "r", 3)
        maps = list(p.mappings())
        ptps = p.page_table_pages()
        assert p.resident_count == 1 + len(ptps) + len(maps)
        assert all(c > 0 for c in ptps.values())
        for va2, pa, gr, _w in maps:
            assert p.extract(va2) == pa and pm.frame_owner(pa) in pages
            assert p.mmu.translate(va2, "r", 3).ok
            assert bool(gr & W) == p.mmu.translate(va2, "w", 3, ).ok or not gr & W
    p.remove(0, 1 << 47)
    assert p.page_table_pages() == {} and p.resident_count == 1

"""FreeBSD's amd64 pmap writing real page tables into `PhysicalMemory`.

`Amd64Pmap` has the methods of the pmap protocol (vmlab/core/pmap.py dispatches the
FreeBSD-named functions to them) with the semantics of sys/amd64/amd64/pmap.c (FreeBSD 14):
pmap_pinit_pml4 / pmap_pinit_pml5, pmap_enter, pmap_enter_quick_locked, pmap_is_prefaultable,
pmap_remove (+ pmap_remove_pte, pmap_unwire_ptp), pmap_protect, pmap_extract, pmap_copy,
pmap_remove_pages and pmap_release. See shared/reference/x86-64-paging.md §7.

What is modelled and what is not:
- 4 KiB mappings only: psind 1 (2 MiB) and superpage promotion are not modelled.
- The kernel's shared top-level slots are real: a kernel PML4 (KPML4phys), the direct map
  (DMAP, 1 GiB leaves covering RAM), NKPML4E = 4 empty KPDP pages and lm_ents = 8 large-map
  PDP pages, allocated once per `PhysicalMemory` (``physmem.kernel_tables``) by the first pmap.
  The kernel's own text (KPD/KPT pages) is not modelled: the KPDP pages stay empty.
- pg_nx is on (the CPU has NX), PTI is off, PKRU ranges are empty, memory attribute WB.
- TLB invalidations go to the Mmus attached to the pmap (``pmap.mmus``; ``pmap.mmu`` is
  created with CR3 = pm_cr3) and are logged in ``pmap.invalidations``; set
  ``pmap.shootdown = False`` to let a lesson show the stale translation a missing invalidation
  leaves behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..constants import (
    KERN,
    PAGE_MASK,
    PAGE_SIZE,
    VM_MAXUSER_ADDRESS_LA48,
    VM_MAXUSER_ADDRESS_LA57,
    VM_PROT,
)
from ..entries import prot_str
from ..trace import STEP_KINDS
from .mmu import DEFAULT_CR4, Mmu
from .physmem import OutOfFrames, PhysicalMemory
from .pte import (
    CR4_LA57,
    PG_A,
    PG_FRAME,
    PG_G,
    PG_M,
    PG_MANAGED,
    PG_NX,
    PG_PS,
    PG_PS_FRAME,
    PG_PS_PDP_FRAME,
    PG_RW,
    PG_U,
    PG_V,
    PG_W,
)

__all__ = [
    "DMPML4I",
    "KPML4BASE",
    "LMSPML4I",
    "NKPML4E",
    "PML4PML4I",
    "Amd64Pmap",
    "amd64_kernel_tables",
]

PMAP_ENTER_NOSLEEP = 0x100
PMAP_ENTER_WIRED = 0x200

# sys/amd64/include/pmap.h (values of FreeBSD 14 GENERIC)
NKPML4E = 4
NDMPML4E = 8
PML4PML4I = 256  # recursive slot; also PML5PML5I
LMSPML4I = PML4PML4I + 1
LM_ENTS = 8  # vm.pmap.large_map_pml4_entries default (pmap_init: lm_ents = 8)
KPML4BASE = 512 - NKPML4E
DMPML4I = (KPML4BASE - NDMPML4E) // NDMPML4E * NDMPML4E  # rounddown(...) = 496
NBPML4 = 1 << 39
#: Entry bits of an intermediate user entry made by pmap_allocpte: PG_U|PG_RW|PG_V|PG_A|PG_M.
PTP_BITS = PG_U | PG_RW | PG_V | PG_A | PG_M  # 0x67

_KINDS = {"PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT"}
_SHIFT = {"PML5E": 48, "PML4E": 39, "PDPTE": 30, "PDE": 21, "PTE": 12}
_R, _W, _X = int(VM_PROT.READ), int(VM_PROT.WRITE), int(VM_PROT.EXECUTE)
_PG_FICTITIOUS = 0x0004  # vm_page.h m->flags
_OBJ_UNMANAGED = 0x0002  # vm_object.h


class KernelTables:
    """The kernel's page-table pages every user root points into (pmap_bootstrap's
    create_pagetables and pmap_init's large map): KPML4phys, DMPDPphys, KPDPphys, large-map
    PDP pages. ``pml4_slots`` maps slot -> entry value for a user PML4 (pmap_pinit_pml4)."""

    def __init__(self, physmem: PhysicalMemory) -> None:
        need = 1 + 1 + NKPML4E + LM_ENTS
        if physmem.nfree < need:
            raise OutOfFrames(f"the kernel's page tables need {need} free frames")
        ndmpdp = max(1, -(-physmem.size // (1 << 30)))  # 1 GiB DMAP leaves covering RAM
        ndmpdpphys = -(-ndmpdp // 512)
        self.kpml4 = physmem.alloc_frame("PML4", owner="kernel")
        self.dmpdp = [physmem.alloc_frame("PDPT", owner="kernel") for _ in range(ndmpdpphys)]
        self.kpdp = [physmem.alloc_frame("PDPT", owner="kernel") for _ in range(NKPML4E)]
        self.lm = [physmem.alloc_frame("PDPT", owner="kernel") for _ in range(LM_ENTS)]
        for i in range(ndmpdp):
            # create_pagetables: i << PDPSHIFT | RW | V | PS | pg_g | M | A | pg_nx
            physmem.write_u64(self.dmpdp[i // 512] + 8 * (i % 512),
                              (i << 30) | PG_RW | PG_V | PG_PS | PG_G | PG_M | PG_A | PG_NX)
        slots: dict[int, int] = {}
        for i, pa in enumerate(self.kpdp):
            slots[KPML4BASE + i] = pa | PG_RW | PG_V
        for i, pa in enumerate(self.dmpdp):
            slots[DMPML4I + i] = pa | PG_RW | PG_V
        for i, pa in enumerate(self.lm):
            slots[LMSPML4I + i] = pa | PG_V | PG_RW | PG_A | PG_M | PG_NX
        self.pml4_slots = slots
        for slot, value in slots.items():
            physmem.write_u64(self.kpml4 + 8 * slot, value)
        physmem.write_u64(self.kpml4 + 8 * PML4PML4I, self.kpml4 | PG_RW | PG_V | PG_NX)


def amd64_kernel_tables(physmem: PhysicalMemory) -> KernelTables:
    """The kernel page tables of this memory, made on first use (FreeBSD: at boot)."""
    kt = physmem.kernel_tables
    if kt is None:
        kt = physmem.kernel_tables = KernelTables(physmem)
    assert isinstance(kt, KernelTables)
    return kt


def _is_managed(m: Any) -> bool:
    """VPO_UNMANAGED is set for fictitious pages and pages of OBJ_UNMANAGED objects."""
    if getattr(m, "unmanaged", False) or getattr(m, "flags", 0) & _PG_FICTITIOUS:
        return False
    obj = getattr(m, "object", None)
    return not (obj is not None and getattr(obj, "flags", 0) & _OBJ_UNMANAGED)


def _page_dirty(m: Any) -> None:
    """vm_page_dirty (only valid pages can be dirty)."""
    if m is not None and getattr(m, "valid", True):
        m.dirty = True


class Amd64Pmap:
    """A user pmap whose page tables live in ``physmem``; ``pm_cr3`` is the root's address.

    ``la57``: 5-level paging (root = PML5). ``resident_count`` counts, as FreeBSD's
    pm_stats.resident_count does, the root and page-table pages plus the mapped 4 KiB pages.
    """

    def __init__(self, physmem: PhysicalMemory, la57: bool = False) -> None:
        if not isinstance(physmem, PhysicalMemory):
            raise TypeError("Amd64Pmap needs a PhysicalMemory")
        self.physmem = physmem
        self.la57 = bool(la57)
        self.owner: Any = None
        self.maxuser = VM_MAXUSER_ADDRESS_LA57 if la57 else VM_MAXUSER_ADDRESS_LA48
        self.levels: tuple[str, ...] = (("PML5E",) if la57 else ()) + (
            "PML4E", "PDPTE", "PDE", "PTE")
        self._ref: dict[int, int] = {}  # page-table page (not the root) -> valid entries
        self._resident = 0
        self._wired = 0
        self.pm_cr3: int = 0
        self.invalidations: list[tuple[str, int | None]] = []
        self.shootdown = True
        self.mmus: list[Mmu] = []
        self.pinit()
        self.mmu = Mmu(physmem, self.pm_cr3, cr4=DEFAULT_CR4 | (CR4_LA57 if la57 else 0))
        self.mmus.append(self.mmu)

    # ---- pmap_pinit / pmap_release -------------------------------------------------------
    def pinit(self) -> None:
        """pmap_pinit (pmap_pinit_type → pmap_pinit_pml4 / pmap_pinit_pml5): allocate the
        zeroed root, count it resident, fill only the kernel slots."""
        if self.pm_cr3:
            return
        pm = self.physmem
        kt = amd64_kernel_tables(pm)
        root = pm.alloc_frame("PML5" if self.la57 else "PML4", owner=self)
        if self.la57:
            # pmap_pinit_pml5: slot 511 -> KPML4phys (V|RW|A|M|G); PML5PML5I recursive.
            pm.write_u64(root + 8 * 511, kt.kpml4 | PG_V | PG_RW | PG_A | PG_M | PG_G)
            pm.write_u64(root + 8 * PML4PML4I, root | PG_V | PG_RW | PG_A | PG_M)
        else:
            for slot, value in kt.pml4_slots.items():
                pm.write_u64(root + 8 * slot, value)
            pm.write_u64(root + 8 * PML4PML4I, root | PG_V | PG_RW | PG_A | PG_M)
        self.pm_cr3 = root
        self._resident = 1

    def release(self) -> None:
        """pmap_release: no page-table pages may remain; zero the kernel slots, free the root."""
        self._check_live()
        if self._ref:
            raise RuntimeError(
                f"pmap_release: pmap still has {len(self._ref)} page-table page(s); "
                "remove every mapping first"
            )
        pm = self.physmem
        for i in range(512):
            pm.write_u64(self.pm_cr3 + 8 * i, 0)
        pm.free_frame(self.pm_cr3)
        self._resident -= 1
        self.pm_cr3 = 0
        if self._resident != 0:
            raise RuntimeError(f"pmap_release: resident count {self._resident} != 0")

    # ---- software walks (via the DMAP in FreeBSD; never set A/D) --------------------------
    def _check_live(self) -> None:
        if not self.pm_cr3:
            raise RuntimeError("this pmap was released")

    def _check_va(self, va: int) -> int:
        if not isinstance(va, (int, np.integer)) or isinstance(va, bool):
            raise TypeError("virtual address must be an int")
        va = int(va)
        if va & PAGE_MASK or not 0 <= va < self.maxuser:
            raise ValueError(
                f"pmap: {va:#x} is not a page-aligned user address below {self.maxuser:#x}"
            )
        return va

    def _path(self, va: int) -> list[tuple[str, int, int]]:
        """(level, table_pa, entry_pa) from the root down to the last present table entry's
        level; the last tuple's entry may be invalid."""
        pm = self.physmem
        table = self.pm_cr3
        out = []
        for name in self.levels:
            epa = table + 8 * ((va >> _SHIFT[name]) & 511)
            out.append((name, table, epa))
            raw = pm.read_u64(epa)
            if not raw & PG_V or name == "PTE" or (raw & PG_PS and name in ("PDPTE", "PDE")):
                break
            table = raw & PG_FRAME
        return out

    def _pte_pa(self, va: int) -> int | None:
        """Address of va's PTE when its page-table page exists (PDE valid, not PS)."""
        path = self._path(va)
        name, _t, epa = path[-1]
        return epa if name == "PTE" else None

    def _missing_tables(self, va: int) -> int:
        path = self._path(va)
        name, _t, epa = path[-1]
        if name == "PTE":
            return 0
        raw = self.physmem.read_u64(epa)
        if raw & PG_V:  # a superpage on the way
            return -1
        return len(self.levels) - len(path)

    def _allocpte(self, va: int) -> int | None:
        """pmap_allocpte (without sleeping): make the tables down to va's page-table page and
        return the PTE's address; None if a frame is missing (nothing changed) or a superpage
        maps va."""
        need = self._missing_tables(va)
        if need < 0:
            return None
        if need > self.physmem.nfree:
            return None
        pm = self.physmem
        table = self.pm_cr3
        for i, name in enumerate(self.levels[:-1]):
            epa = table + 8 * ((va >> _SHIFT[name]) & 511)
            raw = pm.read_u64(epa)
            if not raw & PG_V:
                new = pm.alloc_frame(_KINDS[self.levels[i + 1]], owner=self)
                pm.write_u64(epa, new | PTP_BITS)
                if table != self.pm_cr3:
                    self._ref[table] += 1
                self._ref[new] = 0
                self._resident += 1
                raw = new | PTP_BITS
            table = raw & PG_FRAME
        return table + 8 * ((va >> 12) & 511)

    def _unuse_pt(self, va: int, free: list[int]) -> None:
        """pmap_unuse_pt / pmap_unwire_ptp: drop one reference from va's page-table page and
        free pages that become empty, up to (not including) the root."""
        path = self._path(va)
        for depth in range(len(path) - 1, 0, -1):
            table = path[depth][1]
            self._ref[table] -= 1
            if self._ref[table]:
                return
            del self._ref[table]
            self.physmem.write_u64(path[depth - 1][2], 0)
            self._resident -= 1
            free.append(table)

    def _free_pages(self, free: list[int]) -> None:
        for pa in free:
            self.physmem.free_frame(pa)

    def _valid_ptes(self, sva: int, eva: int) -> list[tuple[int, int, int]]:
        """(va, pte_pa, raw) of every valid 4 KiB PTE mapping [sva, eva), in address order."""
        out: list[tuple[int, int, int]] = []
        if sva < eva:
            self._collect(self.pm_cr3, 0, 0, sva, min(eva, self.maxuser), out)
        return out

    def _collect(self, table: int, li: int, base: int, sva: int, eva: int,
                 out: list[tuple[int, int, int]]) -> None:
        name = self.levels[li]
        shift = _SHIFT[name]
        i0 = max(0, (sva - base) >> shift)
        i1 = min(512, ((eva - 1 - base) >> shift) + 1)
        if li == 0:
            i1 = min(i1, 256)  # user slots only
        if i0 >= i1:
            return
        w0 = table >> 3
        ents = self.physmem.frames[w0 + i0 : w0 + i1]
        for k in np.flatnonzero(ents & np.uint64(PG_V)):
            i = i0 + int(k)
            raw = int(ents[k])
            va = base + (i << shift)
            if name == "PTE":
                out.append((va, table + 8 * i, raw))
            elif raw & PG_PS and name in ("PDPTE", "PDE"):
                continue  # superpages are never created by this pmap
            else:
                self._collect(raw & PG_FRAME, li + 1, va, sva, eva, out)

    # ---- invalidation ----------------------------------------------------------------------
    def _active_mmus(self) -> list[Mmu]:
        return [m for m in self.mmus if m.cr3 & PG_FRAME == self.pm_cr3]

    def _invalidate_page(self, va: int) -> None:
        """pmap_invalidate_page: INVLPG on every CPU running this pmap."""
        self.invalidations.append(("page", va))
        if self.shootdown:
            for m in self._active_mmus():
                m.invlpg(va)

    def _invalidate_all(self) -> None:
        """pmap_invalidate_all: reload CR3 (non-global entries go) where the pmap is active."""
        self.invalidations.append(("all", None))
        if self.shootdown:
            for m in self._active_mmus():
                m.flush_tlb(keep_global=True)

    def _record(self, kind: str, text: str, **data: Any) -> None:
        owner = self.owner
        tr = getattr(owner, "_trace", None)
        if tr is not None and kind in STEP_KINDS:
            tr.mark_dirty(owner)
            tr.record(owner, kind, text, **data)

    # ---- pmap(9) ---------------------------------------------------------------------------
    def enter(self, va: int, m: Any, prot: int, flags: int, psind: int = 0) -> KERN:
        """pmap_enter: map ``m`` at ``va``. Leaf = PA|V|A, RW if prot has WRITE, M if the
        access in ``flags`` was a write (or an unmanaged RW page), NX without EXECUTE, U, W for
        PMAP_ENTER_WIRED, MANAGED for managed pages. KERN.RESOURCE_SHORTAGE (nothing changed)
        when a page-table page cannot be allocated."""
        self._check_live()
        va = self._check_va(va)
        if psind != 0:
            raise ValueError("Amd64Pmap maps 4 KiB pages only (psind must be 0)")
        prot, flags = int(prot), int(flags)
        if flags & _W and not prot & _W:
            raise ValueError("pmap_enter: flags includes VM_PROT_WRITE but prot doesn't")
        pa = int(m.phys_addr)
        managed = _is_managed(m)
        newpte = pa | PG_A | PG_V
        if flags & _W:
            newpte |= PG_M
        if prot & _W:
            newpte |= PG_RW
        if not prot & _X:
            newpte |= PG_NX
        if flags & PMAP_ENTER_WIRED:
            newpte |= PG_W
        newpte |= PG_U  # va < VM_MAXUSER_ADDRESS
        if managed:
            newpte |= PG_MANAGED
        elif newpte & PG_RW:
            newpte |= PG_M
        pte_pa = self._allocpte(va)
        if pte_pa is None:
            if self._missing_tables(va) < 0:
                raise ValueError(f"pmap_enter: a superpage already maps {va:#x}")
            self._record("error", f"pmap_enter {va:#x}: no free frame for a page-table page",
                         rv=int(KERN.RESOURCE_SHORTAGE), reason="out of frames")
            return KERN.RESOURCE_SHORTAGE
        pm = self.physmem
        orig = pm.read_u64(pte_pa)
        what = "new"
        if orig & PG_V:
            if newpte & PG_W and not orig & PG_W:
                self._wired += 1
            elif not newpte & PG_W and orig & PG_W:
                self._wired -= 1
            if orig & PG_FRAME == pa:
                if (orig ^ newpte) & ~(PG_M | PG_A) == 0:
                    what = "unchanged"
                else:
                    what = "changed"
                    pm.write_u64(pte_pa, newpte)
                    if not newpte & PG_M and orig & (PG_M | PG_RW) == PG_M | PG_RW:
                        if orig & PG_MANAGED:
                            _page_dirty(m)
                        if orig & PG_A:
                            self._invalidate_page(va)
                    elif not orig & PG_NX and newpte & PG_NX and orig & PG_A:
                        self._invalidate_page(va)  # NX newly set
            else:
                what = "replaced"
                pm.write_u64(pte_pa, 0)
                if orig & PG_MANAGED:
                    om = pm.frame_owner(orig & PG_FRAME)
                    if orig & (PG_M | PG_RW) == PG_M | PG_RW:
                        _page_dirty(om)
                    if orig & PG_A:
                        self._invalidate_page(va)
                        if om is not None:
                            om.referenced = True
                    pv = getattr(om, "pv", None)
                    if pv is not None:
                        pv.discard((self, va))
                else:
                    self._invalidate_page(va)
                pm.write_u64(pte_pa, newpte)
        else:
            if newpte & PG_W:
                self._wired += 1
            self._resident += 1
            self._ref[pte_pa & ~PAGE_MASK] += 1
            pm.write_u64(pte_pa, newpte)
        if managed and what != "unchanged":
            pv = getattr(m, "pv", None)
            if pv is not None:
                pv.add((self, va))
        self._record("pmap_enter", f"pmap_enter {va:#x} -> pa {pa:#x}: PTE "
                     f"{pm.read_u64(pte_pa):#018x} ({what})", va=va, pa=pa, prot=prot & 7,
                     wired=bool(newpte & PG_W), quick=False)
        return KERN.SUCCESS

    def enter_quick(self, va: int, m: Any, prot: int) -> None:
        """pmap_enter_quick (pmap_enter_quick_locked): only into an empty slot (PTE == 0);
        PA|V|MANAGED|NX?|U, never RW, no A/M/W. A missing page-table page is allocated without
        sleeping; if that fails, or a superpage maps va, it silently gives up."""
        self._check_live()
        va = self._check_va(va)
        pte_pa = self._allocpte(va)
        if pte_pa is None:
            return
        pm = self.physmem
        if pm.read_u64(pte_pa) != 0:
            return
        newpte = int(m.phys_addr) | PG_V | PG_U
        managed = _is_managed(m)
        if managed:
            newpte |= PG_MANAGED
        if not int(prot) & _X:
            newpte |= PG_NX
        pm.write_u64(pte_pa, newpte)
        self._resident += 1
        self._ref[pte_pa & ~PAGE_MASK] += 1
        if managed:
            pv = getattr(m, "pv", None)
            if pv is not None:
                pv.add((self, va))
        self._record("pmap_enter", f"pmap_enter_quick {va:#x} -> pa {m.phys_addr:#x}: PTE "
                     f"{newpte:#018x} (read-only)", va=va, pa=int(m.phys_addr),
                     prot=_R | (int(prot) & _X), wired=False, quick=True)

    def is_prefaultable(self, va: int) -> bool:
        """pmap_is_prefaultable: true iff the PDE is valid and not PS and the PTE invalid."""
        self._check_live()
        va = self._check_va(va)
        pte_pa = self._pte_pa(va)
        return pte_pa is not None and not self.physmem.read_u64(pte_pa) & PG_V

    def prefault_verdict(self, va: int) -> str:
        """Why `is_prefaultable` said no ("mapped" or "no_ptp"), or "ok" (a teaching aid)."""
        pte_pa = self._pte_pa(self._check_va(va))
        if pte_pa is None:
            return "no_ptp"
        return "mapped" if self.physmem.read_u64(pte_pa) & PG_V else "ok"

    def _remove_pte(self, va: int, pte_pa: int, free: list[int]) -> int:
        """pmap_remove_pte + pmap_unuse_pt: clear the PTE, hand M/A to the page."""
        pm = self.physmem
        old = pm.read_u64(pte_pa)
        pm.write_u64(pte_pa, 0)
        if old & PG_W:
            self._wired -= 1
        self._resident -= 1
        if old & PG_MANAGED:
            m = pm.frame_owner(old & PG_FRAME)
            if old & (PG_M | PG_RW) == PG_M | PG_RW:
                _page_dirty(m)
            if old & PG_A and m is not None:
                m.referenced = True
            pv = getattr(m, "pv", None)
            if pv is not None:
                pv.discard((self, va))
        self._unuse_pt(va, free)
        return old

    def remove(self, sva: int, eva: int) -> None:
        """pmap_remove: unmap [sva, eva). One page → pmap_invalidate_page; otherwise one
        pmap_invalidate_all at the end if anything was removed. Emptied page-table pages are
        freed (after the invalidation, as FreeBSD's delayed free list)."""
        self._check_live()
        sva, eva = int(sva), int(eva)
        if sva & PAGE_MASK or eva & PAGE_MASK or sva < 0 or eva < sva:
            raise ValueError(f"pmap_remove: bad range [{sva:#x}, {eva:#x})")
        if self._resident <= 1:
            return
        free: list[int] = []
        if sva + PAGE_SIZE == eva:
            if sva >= self.maxuser:
                return
            pte_pa = self._pte_pa(sva)
            if pte_pa is not None and self.physmem.read_u64(pte_pa) & PG_V:
                self._remove_pte(sva, pte_pa, free)
                self._invalidate_page(sva)
                self._free_pages(free)
                self._record("pmap_remove", f"pmap_remove [{sva:#x}, {eva:#x}): 1 page",
                             sva=sva, eva=eva, count=1)
            return
        ptes = self._valid_ptes(sva, eva)
        for va, pte_pa, _raw in ptes:
            self._remove_pte(va, pte_pa, free)
        if ptes:
            self._invalidate_all()
            self._record("pmap_remove", f"pmap_remove [{sva:#x}, {eva:#x}): {len(ptes)} "
                         "pages", sva=sva, eva=eva, count=len(ptes))
        self._free_pages(free)

    def protect(self, sva: int, eva: int, prot: int) -> None:
        """pmap_protect: only removes rights. NONE → pmap_remove; WRITE and EXECUTE both kept →
        nothing; without WRITE clear RW and M (dirtying managed M|RW pages first); without
        EXECUTE set NX. One pmap_invalidate_all if any PTE changed."""
        self._check_live()
        prot = int(prot)
        if prot & ~int(VM_PROT.ALL):
            raise ValueError(f"pmap_protect: invalid prot {prot:#x}")
        if prot == 0:
            self.remove(sva, eva)
            return
        if prot & (_W | _X) == _W | _X:
            return
        pm = self.physmem
        changed = 0
        for _va, pte_pa, obits in self._valid_ptes(int(sva), int(eva)):
            pbits = obits
            if not prot & _W:
                if pbits & (PG_MANAGED | PG_M | PG_RW) == PG_MANAGED | PG_M | PG_RW:
                    _page_dirty(pm.frame_owner(pbits & PG_FRAME))
                pbits &= ~(PG_RW | PG_M)
            if not prot & _X:
                pbits |= PG_NX
            if pbits != obits:
                pm.write_u64(pte_pa, pbits)
                changed += 1
        if changed:
            self._invalidate_all()
            self._record("pmap_protect", f"pmap_protect [{sva:#x}, {eva:#x}) to "
                         f"{prot_str(prot)}: {changed} PTEs", sva=int(sva), eva=int(eva),
                         prot=prot, count=changed)

    def advise(self, sva: int, eva: int, advice: int) -> None:
        """pmap_advise (amd64 pmap.c; called by vm_map_madvise for MADV_DONTNEED = 4 and
        MADV_FREE = 5 before vm_object_madvise): for every valid managed PTE in [sva, eva), one
        with M and RW loses M and A (for DONTNEED the page is dirtied first), otherwise A is
        cleared. RW is kept, so a later write does not fault; it just sets M again. One
        pmap_invalidate_all if anything changed (user PTEs are never global). Other advice
        values do nothing."""
        self._check_live()
        if int(advice) not in (4, 5):
            return
        pm = self.physmem
        changed = 0
        for _va, pte_pa, raw in self._valid_ptes(int(sva), int(eva)):
            if not raw & PG_MANAGED:
                continue
            if raw & (PG_M | PG_RW) == PG_M | PG_RW:
                if int(advice) == 4:
                    _page_dirty(pm.frame_owner(raw & PG_FRAME))
                new = raw & ~(PG_M | PG_A)
            elif raw & PG_A:
                new = raw & ~PG_A
            else:
                continue
            pm.write_u64(pte_pa, new)
            changed += 1
        if changed:
            self._invalidate_all()
            self._record("note", f"pmap_advise [{int(sva):#x}, {int(eva):#x}): {changed} PTEs "
                         "lose A (and M)")

    def extract(self, va: int) -> int:
        """pmap_extract: frame | offset of the leaf mapping ``va`` (only PG_V is looked at),
        or 0."""
        self._check_live()
        va = int(va)
        if not 0 <= va < self.maxuser:
            return 0
        name, _t, epa = self._path(va)[-1]
        raw = self.physmem.read_u64(epa)
        if not raw & PG_V:
            return 0
        if name == "PTE":
            return (raw & PG_FRAME) | (va & PAGE_MASK)
        if name == "PDE":
            return (raw & PG_PS_FRAME) | (va & ((1 << 21) - 1))
        return (raw & PG_PS_PDP_FRAME) | (va & ((1 << 30) - 1))

    def copy(self, src_pmap: Any, dst_addr: int, length: int, src_addr: int) -> None:
        """pmap_copy (advisory, at fork): only when dst_addr == src_addr; copies managed 4 KiB
        PTEs into empty destination slots with W, M and A cleared, allocating page-table pages
        without sleeping; stops at the first failure; per page-table page, stops once as many
        entries were copied as the source page holds."""
        self._check_live()
        if dst_addr != src_addr or not isinstance(src_pmap, Amd64Pmap):
            return
        if src_pmap.la57 != self.la57:
            return  # pm_type / paging mode differ
        pm = self.physmem
        end = min(int(src_addr) + int(length), self.maxuser)
        addr = int(src_addr)
        copied = 0
        while addr < end:
            va_next = min((addr + (1 << 21)) & ~((1 << 21) - 1), end)
            src_pte = src_pmap._pte_pa(addr)
            if src_pte is None:
                # skip to the next PD region with a page-table page
                addr = va_next
                continue
            src_pt = src_pte & ~PAGE_MASK
            src_ref = src_pmap._ref[src_pt]
            dst_pt: int | None = None
            while addr < va_next:
                ptetemp = pm.read_u64(src_pt + 8 * ((addr >> 12) & 511))
                if ptetemp & PG_MANAGED:
                    dst_pte = self._allocpte(addr)
                    if dst_pte is None:
                        self._done_copy(src_addr, copied)
                        return
                    dst_pt = dst_pte & ~PAGE_MASK
                    if pm.read_u64(dst_pte) != 0:
                        # pmap_abort_ptp: free the page-table page if it is unused
                        if self._ref[dst_pt] == 0:
                            free: list[int] = []
                            self._ref[dst_pt] = 1
                            self._unuse_pt(addr, free)
                            self._free_pages(free)
                        self._done_copy(src_addr, copied)
                        return
                    pm.write_u64(dst_pte, ptetemp & ~(PG_W | PG_M | PG_A))
                    self._ref[dst_pt] += 1
                    self._resident += 1
                    copied += 1
                    om = pm.frame_owner(ptetemp & PG_FRAME)
                    pv = getattr(om, "pv", None)
                    if pv is not None:
                        pv.add((self, addr))
                    if self._ref[dst_pt] >= src_ref:
                        break
                addr += PAGE_SIZE
            addr = va_next
        self._done_copy(src_addr, copied)

    def _done_copy(self, addr: int, copied: int) -> None:
        if copied:
            self._record("note", f"pmap_copy at {addr:#x}: {copied} read-only PTEs copied")

    def remove_pages(self) -> None:
        """pmap_remove_pages (exit): drop every managed, non-wired mapping (M|RW → page
        dirty), free emptied page-table pages, then pmap_invalidate_all."""
        self._check_live()
        pm = self.physmem
        free: list[int] = []
        for va, pte_pa, raw in self._valid_ptes(0, self.maxuser):
            if not raw & PG_MANAGED or raw & PG_W:
                continue
            pm.write_u64(pte_pa, 0)
            m = pm.frame_owner(raw & PG_FRAME)
            if raw & (PG_M | PG_RW) == PG_M | PG_RW:
                _page_dirty(m)
            self._resident -= 1
            pv = getattr(m, "pv", None)
            if pv is not None:
                pv.discard((self, va))
            self._unuse_pt(va, free)
        self._invalidate_all()
        self._free_pages(free)

    # ---- vmlab teaching / invariant helpers -----------------------------------------------
    def pte(self, va: int) -> int:
        """The raw PTE for ``va`` (0 if there is no page-table page)."""
        pte_pa = self._pte_pa(int(va) & ~PAGE_MASK)
        return 0 if pte_pa is None else self.physmem.read_u64(pte_pa)

    def prot(self, va: int) -> VM_PROT:
        """What the leaf grants: READ if valid, WRITE if RW, EXECUTE unless NX."""
        raw = self.pte(va) if 0 <= int(va) < self.maxuser else 0
        if not raw & PG_V:
            return VM_PROT.NONE
        p = _R | (_W if raw & PG_RW else 0) | (0 if raw & PG_NX else _X)
        return VM_PROT(p)

    def page_at(self, va: int) -> Any:
        """The vm_page mapped at ``va`` (None if unmapped)."""
        raw = self.pte(va) if 0 <= int(va) < self.maxuser else 0
        return self.physmem.frame_owner(raw & PG_FRAME) if raw & PG_V else None

    def is_modified(self, va: int) -> bool:
        """The PTE's M (dirty) bit."""
        return bool(self.pte(va) & PG_M) if 0 <= int(va) < self.maxuser else False

    def touch(self, va: int, access: int) -> int:
        """What the CPU does on a user access (a fresh walk by ``self.mmu``, setting A/D):
        the physical address, or 0 when it would raise #PF. ``access`` is VM_PROT bits."""
        kind = "w" if access & _W else ("x" if access & _X else "r")
        w = self.mmu.translate(int(va), kind, 3)
        return w.pa if w.ok and w.pa is not None else 0

    def mappings(self) -> Iterator[tuple[int, int, VM_PROT, bool]]:
        """(va, pa, granted prot, wired) for every valid PTE, in address order."""
        if not self.pm_cr3:
            return
        for va, _pa, raw in self._valid_ptes(0, self.maxuser):
            p = _R | (_W if raw & PG_RW else 0) | (0 if raw & PG_NX else _X)
            yield va, raw & PG_FRAME, VM_PROT(p), bool(raw & PG_W)

    def page_table_pages(self) -> dict[int, int]:
        """Page-table page address -> number of valid entries (the root excluded)."""
        return dict(self._ref)

    @property
    def resident_count(self) -> int:
        return self._resident

    @property
    def wired_count(self) -> int:
        return self._wired

    def __repr__(self) -> str:
        return (f"<Amd64Pmap cr3={self.pm_cr3:#x} {'5' if self.la57 else '4'}-level, "
                f"{self._resident} resident, {len(self._ref)} page-table pages>")

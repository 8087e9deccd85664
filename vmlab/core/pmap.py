"""The pmap interface (FreeBSD-named functions) and `MemPmap`, an in-memory pmap.

FreeBSD's machine-independent VM talks to the MMU only through pmap(9). The functions here
take FreeBSD's arguments and dispatch to methods of the pmap object, so `MemPmap` (this
module) and the x86 layer's ``Amd64Pmap`` (real page tables) are interchangeable.

`MemPmap` keeps FreeBSD's visible semantics (sys/amd64/amd64/pmap.c):

- ``pmap_enter(pmap, va, m, prot, flags, psind)``: the PTE grants ``prot`` (R always); the
  access type in ``flags`` sets the accessed bit and, for a write, the modified bit; a
  different page at ``va`` is replaced (its modified bit is handed to its vm_page first).
- ``pmap_enter_quick``: never writable ("assumes read access", pmap.c comment): R plus X if
  asked; does nothing if ``va`` is already mapped.
- ``pmap_protect`` only removes rights (W and/or X); removing R removes the mapping. A mapping
  that loses W hands its modified bit to the page (``vm_page_dirty``).
- ``pmap_remove`` hands modified bits to the pages (vm_page_dirty) and referenced bits.
- ``pmap_is_prefaultable``: false if mapped, and false when no page-table page covers the
  address (amd64: the PDE is invalid). MemPmap models page-table pages as "some mapping exists
  in the same 2 MiB region", as amd64 frees a page-table page with its last mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .constants import KERN, PAGE_MASK, PAGE_SIZE, VM_PROT
from .entries import prot_str

__all__ = [
    "PMAP_ENTER_NOSLEEP",
    "PMAP_ENTER_WIRED",
    "MemPmap",
    "pmap_copy",
    "pmap_enter",
    "pmap_enter_quick",
    "pmap_extract",
    "pmap_is_prefaultable",
    "pmap_pinit",
    "pmap_prot",
    "pmap_protect",
    "pmap_release",
    "pmap_remove",
    "pmap_remove_pages",
    "pmap_resident_count",
    "pmap_wired_count",
]

PMAP_ENTER_NOSLEEP = 0x00000100
PMAP_ENTER_WIRED = 0x00000200

_RWX = int(VM_PROT.ALL)
_W = int(VM_PROT.WRITE)
_X = int(VM_PROT.EXECUTE)
_R = int(VM_PROT.READ)
_PT_SHIFT = 21  # one amd64 page-table page maps 2 MiB


def _record(pmap: Any, kind: str, text: str, **data: Any) -> None:
    owner = getattr(pmap, "owner", None)
    if owner is not None and owner._trace is not None:
        owner._trace.mark_dirty(owner)
        owner._trace.record(owner, kind, text, **data)


class MemPmap:
    """An in-memory pmap: a dict va -> [pa, prot, wired, accessed, modified, page].

    ``owner`` is the vmspace (set by vmspace_alloc) whose trace receives pmap steps.
    """

    def __init__(self, physmem: Any) -> None:
        self.physmem = physmem
        self.owner: Any = None
        self._pte: dict[int, list[Any]] = {}
        self._ptp: dict[int, int] = {}  # 2 MiB region -> number of mappings (page-table page)
        self._wired = 0

    # ---- helpers -------------------------------------------------------------------------
    def _drop(self, va: int, pte: list[Any]) -> None:
        """Remove one mapping: hand A/M bits to the page, update pv and counters."""
        del self._pte[va]
        m = pte[5]
        if pte[4] and pte[1] & _W and m.valid:
            m.dirty = True
        if pte[3]:
            m.referenced = True
        m.pv.discard((self, va))
        if pte[2]:
            self._wired -= 1
        r = va >> _PT_SHIFT
        n = self._ptp[r] - 1
        if n:
            self._ptp[r] = n
        else:
            del self._ptp[r]

    def _vas(self, sva: int, eva: int) -> list[int]:
        if (eva - sva) >> 12 <= len(self._pte):
            pte = self._pte
            return [va for va in range(sva, eva, PAGE_SIZE) if va in pte]
        return sorted(va for va in self._pte if sva <= va < eva)

    @staticmethod
    def _check_va(va: int) -> None:
        if va & PAGE_MASK or va < 0:
            raise ValueError(f"pmap: virtual address {va:#x} is not page aligned")

    # ---- the pmap(9) methods -------------------------------------------------------------
    def enter(self, va: int, m: Any, prot: int, flags: int, psind: int = 0) -> KERN:
        """pmap_enter(9)."""
        self._check_va(va)
        if psind != 0:
            raise ValueError("MemPmap maps 4 KiB pages only (psind must be 0)")
        access = flags & _RWX
        if access & ~prot & _RWX:
            raise ValueError(
                f"pmap_enter: access {prot_str(access)} is not within prot {prot_str(prot)}"
            )
        wired = bool(flags & PMAP_ENTER_WIRED)
        granted = (prot & _RWX) | _R
        old = self._pte.get(va)
        modified = bool(access & _W)
        if old is not None:
            if old[5] is m:
                # Same page: keep the modified bit while W stays, else hand it to the page.
                if old[4] and old[1] & _W:
                    if granted & _W:
                        modified = True
                    elif m.valid:
                        m.dirty = True
                self._wired += int(wired) - int(old[2])
                old[1], old[2], old[3], old[4] = granted, wired, True, modified
                _record(self, "pmap_enter", f"pmap_enter {va:#x} -> pa {m.phys_addr:#x}",
                        va=va, pa=m.phys_addr, prot=granted, wired=wired, quick=False)
                return KERN.SUCCESS
            self._drop(va, old)
        self._pte[va] = [m.phys_addr, granted, wired, True, modified, m]
        m.pv.add((self, va))
        r = va >> _PT_SHIFT
        self._ptp[r] = self._ptp.get(r, 0) + 1
        if wired:
            self._wired += 1
        _record(self, "pmap_enter", f"pmap_enter {va:#x} -> pa {m.phys_addr:#x}",
                va=va, pa=m.phys_addr, prot=granted, wired=wired, quick=False)
        return KERN.SUCCESS

    def enter_quick(self, va: int, m: Any, prot: int) -> None:
        """pmap_enter_quick(9): read-only (plus X if asked), only where nothing is mapped."""
        self._check_va(va)
        if va in self._pte:
            return
        granted = _R | (prot & _X)
        self._pte[va] = [m.phys_addr, granted, False, False, False, m]
        m.pv.add((self, va))
        r = va >> _PT_SHIFT
        self._ptp[r] = self._ptp.get(r, 0) + 1
        _record(self, "pmap_enter", f"pmap_enter_quick {va:#x} -> pa {m.phys_addr:#x} (read-only)",
                va=va, pa=m.phys_addr, prot=granted, wired=False, quick=True)

    def remove(self, sva: int, eva: int) -> None:
        """pmap_remove(9): unmap [sva, eva)."""
        vas = self._vas(sva, eva)
        for va in vas:
            self._drop(va, self._pte[va])
        if vas:
            _record(self, "pmap_remove", f"pmap_remove [{sva:#x}, {eva:#x}): {len(vas)} pages",
                    sva=sva, eva=eva, count=len(vas))

    def protect(self, sva: int, eva: int, prot: int) -> None:
        """pmap_protect(9): only ever removes W and/or X; no R means remove."""
        if not prot & _R:
            self.remove(sva, eva)
            return
        if prot & (_W | _X) == (_W | _X):
            return
        keep = prot | _R
        n = 0
        for va in self._vas(sva, eva):
            pte = self._pte[va]
            new = pte[1] & keep
            if new != pte[1]:
                if pte[1] & _W and not new & _W and pte[4]:
                    if pte[5].valid:
                        pte[5].dirty = True
                    pte[4] = False
                pte[1] = new
                n += 1
        if n:
            _record(self, "pmap_protect", f"pmap_protect [{sva:#x}, {eva:#x}) to "
                    f"{prot_str(prot)}: {n} pages", sva=sva, eva=eva, prot=int(prot), count=n)

    def unwire(self, sva: int, eva: int) -> None:
        """pmap_unwire(9): clear the wired bit of the mappings in [sva, eva)."""
        for va in self._vas(sva, eva):
            pte = self._pte[va]
            if pte[2]:
                pte[2] = False
                self._wired -= 1

    def extract(self, va: int) -> int:
        """pmap_extract(9): the physical address ``va`` maps to, 0 if unmapped."""
        pte = self._pte.get(va & ~PAGE_MASK)
        return 0 if pte is None else pte[0] | (va & PAGE_MASK)

    def is_prefaultable(self, va: int) -> bool:
        """pmap_is_prefaultable(9): a page-table page exists and ``va`` is unmapped."""
        return va not in self._pte and (va >> _PT_SHIFT) in self._ptp

    def prefault_verdict(self, va: int) -> str:
        """Why `is_prefaultable` said no ("mapped" or "no_ptp"), or "ok" (a teaching aid)."""
        if va in self._pte:
            return "mapped"
        return "ok" if (va >> _PT_SHIFT) in self._ptp else "no_ptp"

    def copy(self, src_pmap: MemPmap, dst_addr: int, length: int, src_addr: int) -> None:
        """pmap_copy(9) (a hint): like amd64, only when dst_addr == src_addr, copying managed
        mappings into unmapped slots with the wired, accessed and modified bits cleared."""
        if dst_addr != src_addr:
            return
        for va in src_pmap._vas(src_addr, src_addr + length):
            if va in self._pte:
                continue
            spte = src_pmap._pte[va]
            m = spte[5]
            self._pte[va] = [spte[0], spte[1], False, False, False, m]
            m.pv.add((self, va))
            r = va >> _PT_SHIFT
            self._ptp[r] = self._ptp.get(r, 0) + 1

    def prot(self, va: int) -> VM_PROT:
        """What the mapping at ``va`` grants (VM_PROT.NONE when unmapped): vmlab's teaching aid."""
        pte = self._pte.get(va & ~PAGE_MASK)
        return VM_PROT.NONE if pte is None else VM_PROT(pte[1])

    def touch(self, va: int, access: int) -> int:
        """What the MMU does on a user access: if the mapping allows ``access``, set the
        accessed (and for a write the modified) bit and return the physical address; else 0
        (the CPU would raise a page fault)."""
        pte = self._pte.get(va & ~PAGE_MASK)
        if pte is None or access & ~pte[1] & _RWX:
            return 0
        pte[3] = True
        if access & _W:
            pte[4] = True
        return pte[0] | (va & PAGE_MASK)

    def is_modified(self, va: int) -> bool:
        pte = self._pte.get(va & ~PAGE_MASK)
        return bool(pte is not None and pte[4])

    def remove_pages(self) -> None:
        """pmap_remove_pages(9): drop every user mapping (process exit)."""
        for va in list(self._pte):
            self._drop(va, self._pte[va])

    def release(self) -> None:
        """pmap_release(9): the pmap must be empty."""
        if self._pte:
            raise RuntimeError(f"pmap_release: {len(self._pte)} mappings remain")

    def mappings(self) -> Iterator[tuple[int, int, VM_PROT, bool]]:
        """(va, pa, granted prot, wired) for every mapping, in address order."""
        for va in sorted(self._pte):
            p = self._pte[va]
            yield va, p[0], VM_PROT(p[1]), p[2]

    def page_at(self, va: int) -> Any:
        """The vm_page mapped at ``va`` (None if unmapped)."""
        pte = self._pte.get(va & ~PAGE_MASK)
        return None if pte is None else pte[5]

    @property
    def resident_count(self) -> int:
        return len(self._pte)

    @property
    def wired_count(self) -> int:
        return self._wired

    def __repr__(self) -> str:
        return f"<MemPmap {len(self._pte)} mappings, {self._wired} wired>"


# ---- FreeBSD-named functions --------------------------------------------------------------
def pmap_pinit(pmap: Any) -> Any:
    """pmap_pinit(9): the pmap objects are initialised by their constructors; returns it."""
    return pmap


def pmap_enter(pmap: Any, va: int, m: Any, prot: int, flags: int, psind: int = 0) -> KERN:
    """pmap_enter(9): map ``m`` at ``va`` with ``prot``; ``flags`` = access type | PMAP_ENTER_*."""
    return pmap.enter(va, m, prot, flags, psind)


def pmap_enter_quick(pmap: Any, va: int, m: Any, prot: int) -> None:
    """pmap_enter_quick(9): a read-only mapping if ``va`` is unmapped (never writable)."""
    pmap.enter_quick(va, m, prot)


def pmap_remove(pmap: Any, sva: int, eva: int) -> None:
    """pmap_remove(9)."""
    pmap.remove(sva, eva)


def pmap_protect(pmap: Any, sva: int, eva: int, prot: int) -> None:
    """pmap_protect(9): remove rights not in ``prot`` (never adds any)."""
    pmap.protect(sva, eva, prot)


def pmap_extract(pmap: Any, va: int) -> int:
    """pmap_extract(9): the physical address, or 0 when unmapped."""
    return pmap.extract(va)


def pmap_is_prefaultable(pmap: Any, va: int) -> bool:
    """pmap_is_prefaultable(9)."""
    return pmap.is_prefaultable(va)


def pmap_copy(dst_pmap: Any, src_pmap: Any, dst_addr: int, length: int, src_addr: int) -> None:
    """pmap_copy(9): a hint; may copy mappings for [src_addr, src_addr + length)."""
    dst_pmap.copy(src_pmap, dst_addr, length, src_addr)


def pmap_prot(pmap: Any, va: int) -> VM_PROT:
    """vmlab teaching helper: the VM_PROT the mapping at ``va`` grants (NONE if unmapped)."""
    return pmap.prot(va)


def pmap_remove_pages(pmap: Any) -> None:
    """pmap_remove_pages(9)."""
    pmap.remove_pages()


def pmap_release(pmap: Any) -> None:
    """pmap_release(9)."""
    pmap.release()


def pmap_resident_count(pmap: Any) -> int:
    """pmap_resident_count(9)."""
    return pmap.resident_count


def pmap_wired_count(pmap: Any) -> int:
    """pmap_wired_count(9)."""
    return pmap.wired_count

"""Helpers for building raw page tables by hand."""

from __future__ import annotations

from vmlab.core.x86 import Mmu, PhysicalMemory

SHIFTS = {"PML5E": 48, "PML4E": 39, "PDPTE": 30, "PDE": 21, "PTE": 12}


class Tables:
    """A tiny builder: tables at fixed frames, entries written with write_u64."""

    def __init__(self, la57: bool = False, maxphyaddr: int = 52) -> None:
        self.pm = PhysicalMemory(64 * 4096, maxphyaddr=maxphyaddr)
        self.la57 = la57
        self.root = 0x1000
        self.levels = (["PML5E"] if la57 else []) + ["PML4E", "PDPTE", "PDE", "PTE"]
        self.next_table = 0x2000

    def new_table(self) -> int:
        t = self.next_table
        self.next_table += 0x1000
        return t

    def map4k(self, va: int, leaf: int, inter: int = 0x67) -> list[int]:
        """Build the path for va with `inter` intermediate bits; return entry addresses."""
        table = self.root
        epas = []
        for name in self.levels:
            epa = table + 8 * ((va >> SHIFTS[name]) & 511)
            epas.append(epa)
            if name == "PTE":
                self.pm.write_u64(epa, leaf)
                break
            raw = self.pm.read_u64(epa)
            if not raw & 1:
                raw = self.new_table() | inter
                self.pm.write_u64(epa, raw)
            table = raw & 0x000F_FFFF_FFFF_F000
        return epas

    def mmu(self, **kw) -> Mmu:
        from vmlab.core.x86 import CR4_LA57, CR4_PAE

        kw.setdefault("cr4", CR4_PAE | (CR4_LA57 if self.la57 else 0))
        return Mmu(self.pm, self.root, **kw)



"""A small TLB model (Intel SDM vol. 3A §4.10).

Each entry caches one translation: the page (4 KiB, 2 MiB or 1 GiB), its frame, the rights
combined over every level (R/W and U/S ANDed, XD ORed), the leaf's D state and G. Nothing is
cached from a faulting walk. The Mmu consults it in `Mmu.access`; `Mmu.translate` never does.
Replacement is least-recently-used over ``capacity`` entries (real TLBs are set-associative;
the policy is not architectural).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Tlb", "TlbEntry"]

_SIZES = (1 << 12, 1 << 21, 1 << 30)


@dataclass
class TlbEntry:
    """One cached translation. ``vpn`` is the linear address >> log2(page_size)."""

    vpn: int
    page_size: int
    frame: int
    rw: bool
    us: bool
    xd: bool
    dirty: bool
    global_: bool

    @property
    def va(self) -> int:
        return self.vpn * self.page_size

    def describe(self) -> str:
        rights = ("RW" if self.rw else "RO") + (" US" if self.us else " S") + (
            " XD" if self.xd else "")
        return (
            f"{self.va:#x} -> {self.frame:#x} ({self.page_size >> 10} KiB, {rights}"
            f"{', D' if self.dirty else ''}{', G' if self.global_ else ''})"
        )


class Tlb:
    """Per-page translation cache with hit/miss counters."""

    def __init__(self, capacity: int = 64) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError("TLB capacity must be a positive int")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int], TlbEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[TlbEntry]:
        """Cached entries, least recently used first."""
        return list(self._entries.values())

    def lookup(self, va: int) -> TlbEntry | None:
        """The entry covering ``va`` (any page size), refreshing its LRU position."""
        for size in _SIZES:
            key = (size, va // size)
            e = self._entries.get(key)
            if e is not None:
                self._entries.move_to_end(key)
                return e
        return None

    def insert(self, entry: TlbEntry) -> None:
        self.invalidate(entry.va)  # one translation per address
        self._entries[(entry.page_size, entry.vpn)] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def invalidate(self, va: int) -> int:
        """INVLPG: drop every entry covering ``va`` (global ones too). Returns how many."""
        n = 0
        for size in _SIZES:
            if self._entries.pop((size, va // size), None) is not None:
                n += 1
        return n

    def flush(self, keep_global: bool) -> int:
        """Drop all entries, or all non-global ones. Returns how many were dropped."""
        self.flushes += 1
        if not keep_global:
            n = len(self._entries)
            self._entries.clear()
            return n
        drop = [k for k, e in self._entries.items() if not e.global_]
        for k in drop:
            del self._entries[k]
        return len(drop)

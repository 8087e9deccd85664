"""The x86-64 page walk (Intel SDM vol. 3A ch. 4), bit for bit, over `PhysicalMemory`.

`Mmu.translate` is the architectural answer of a fresh walk: it reads the entries the hardware
reads, checks P, reserved bits (by MAXPHYADDR, PS and EFER.NXE), combines the rights over all
levels (R/W and U/S ANDed, XD ORed), applies CR0.WP, SMEP and SMAP (with RFLAGS.AC), and on a
successful access sets A in every entry used and D in the leaf on a write. `Mmu.translate_many`
does the same for a numpy array of addresses without a Python loop per address and leaves memory
in exactly the state the sequential loop leaves it. `Mmu.access` goes through the TLB model first.

Modelling choices (documented in docs/paging.md):
- Faulting walks set A in the non-leaf entries passed before the failing level; the failing
  entry, and the leaf of a refused access, are left unchanged (x86-64-paging.md §5).
- A paging-structure entry outside emulated RAM reads as 0 (not present), as QEMU's unassigned
  memory does. A *final* physical address beyond RAM is reported as is (ok, with that pa).
- Protection keys: CR4.PKE is accepted and ignored (as if PKRU = 0: no key denies anything;
  the error code's PK bit is never set). Implicit supervisor accesses and shadow stacks (the
  SS error-code bit) are not modelled.
- CR4.LA57 is fixed while EFER.LMA = 1 (SDM vol. 3A §2.5): an Mmu keeps the paging mode it
  was created with, and a MOV to CR4 that would change it raises `GeneralProtectionFault`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .physmem import PhysicalMemory
from .pte import (
    CR0_PE,
    CR0_PG,
    CR0_WP,
    CR4_LA57,
    CR4_PAE,
    CR4_PCIDE,
    CR4_PGE,
    CR4_SMAP,
    CR4_SMEP,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    LEVEL_NAMES,
    LEVEL_SHIFT,
    PG_A,
    PG_M,
    PG_PS,
    PGEX_I,
    PGEX_P,
    PGEX_RSV,
    PGEX_U,
    PGEX_W,
    TABLE_NAME,
    decode_entry,
    format_error_code,
    format_flags,
    reserved_mask,
)
from .tlb import Tlb, TlbEntry

__all__ = [
    "ACCESS_KINDS",
    "DEFAULT_CR0",
    "DEFAULT_CR4",
    "DEFAULT_EFER",
    "GeneralProtectionFault",
    "Mmu",
    "Translations",
    "VECTOR_GP",
    "VECTOR_PF",
    "Walk",
    "WalkStep",
]

#: What FreeBSD/amd64 runs user processes with (the minimum the issue names).
DEFAULT_CR0 = CR0_PG | CR0_WP | CR0_PE
DEFAULT_CR4 = CR4_PAE
DEFAULT_EFER = EFER_LME | EFER_LMA | EFER_NXE

VECTOR_GP = 13
VECTOR_PF = 14


class GeneralProtectionFault(ValueError):
    """An instruction the CPU refuses with #GP(0) (vector 13), such as a MOV to CR4 that would
    switch between 4- and 5-level paging while long mode is active. Nothing was changed.
    (A ValueError, so code catching the MOV-to-CR3 #GP as ValueError catches this too.)"""

    vector = VECTOR_GP

ACCESS_KINDS = ("r", "w", "x")
_ACCESS_WORDS = {"r": "read", "w": "write", "x": "fetch"}
_SIZE_NAME = {1 << 12: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}
_LEAF_SIZE = {"PTE": 1 << 12, "PDE": 1 << 21, "PDPTE": 1 << 30}


@dataclass
class WalkStep:
    """One level of a walk: the entry read (``raw``, as read) and, if this walk set A/D in it,
    the value written back (``written``)."""

    level: str
    table_pa: int
    index: int
    entry_pa: int
    raw: int
    flags: dict[str, Any]
    written: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level, "table_pa": self.table_pa, "index": self.index,
            "entry_pa": self.entry_pa, "raw": self.raw, "flags": dict(self.flags),
            "written": self.written,
        }


@dataclass
class Walk:
    """The outcome of one translation.

    ``ok``: the access is allowed; ``pa``/``page_size`` then give the result. On a fault,
    ``vector`` is 14 (#PF, with ``error_code`` and ``cr2``) or 13 (#GP(0) for a non-canonical
    address: error code 0, ``cr2`` None, no steps). ``writable``/``user``/``xd`` are the rights
    combined over all levels when the walk reached a leaf. ``source`` is "walk" or "tlb".
    """

    va: int
    access: str
    cpl: int
    cr3: int
    levels: int
    ok: bool = False
    pa: int | None = None
    page_size: int | None = None
    vector: int | None = None
    error_code: int | None = None
    cr2: int | None = None
    steps: list[WalkStep] = field(default_factory=list)
    writable: bool | None = None
    user: bool | None = None
    xd: bool | None = None
    reason: str = ""
    source: str = "walk"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "va", "access", "cpl", "cr3", "levels", "ok", "pa", "page_size", "vector",
            "error_code", "cr2", "writable", "user", "xd", "reason", "source")}
        d["steps"] = [s.to_dict() for s in self.steps]
        return d

    def format(self) -> str:
        """A deterministic, Bochs/OSTEP-like text walk for lessons."""
        who = "user" if self.cpl == 3 else "supervisor"
        lines = [
            f"{_ACCESS_WORDS[self.access]} {self.va:#018x} by {who} (CPL {self.cpl}), "
            f"CR3 {self.cr3:#x}, {self.levels}-level paging"
            + (" [TLB hit]" if self.source == "tlb" else "")
        ]
        for s in self.steps:
            tname = TABLE_NAME[s.level]
            line = (
                f"  {s.level:<5} {tname:<4} {s.table_pa:#x}[{s.index:3d}] @ {s.entry_pa:#x}"
                f" = {s.raw:#018x}  {format_flags(s.flags)}"
            )
            if s.flags["P"]:
                leaf = s.level == "PTE" or s.flags.get("PS")
                line += f"  -> {'frame' if leaf else TABLE_NAME[_next_level(s.level)]}"
                line += f" {s.flags['addr']:#x}"
            if s.written is not None:
                set_bits = s.written & ~s.raw
                what = "+".join(n for b, n in ((PG_A, "A"), (PG_M, "D")) if set_bits & b)
                line += f"  (sets {what} -> {s.written:#x})"
            lines.append(line)
        if self.ok:
            lines.append(f"  => PA {self.pa:#x} ({_SIZE_NAME[self.page_size or 4096]} page)")
        elif self.vector == VECTOR_GP:
            lines.append(f"  => #GP(0), vector 13: {self.reason}")
        else:
            lines.append(
                f"  => #PF, vector 14, error code {self.error_code:#x} "
                f"({format_error_code(self.error_code or 0)}), CR2 {self.cr2:#x}: {self.reason}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _next_level(level: str) -> str:
    return LEVEL_NAMES[LEVEL_NAMES.index(level) + 1]


@dataclass
class Translations:
    """Result arrays of `Mmu.translate_many` (one element per address). ``vector`` is 0 when
    ``ok``, 14 for #PF, 13 for #GP; ``pa``/``page_size`` are 0 where not ok; ``error_code`` is
    the #PF error code (0 otherwise)."""

    ok: np.ndarray
    pa: np.ndarray
    page_size: np.ndarray
    vector: np.ndarray
    error_code: np.ndarray

    def __len__(self) -> int:
        return len(self.ok)


class Mmu:
    """One CPU's paging state: CR0, CR3, CR4, EFER, RFLAGS.AC, and a TLB.

    Writing ``mmu.cr3`` is MOV to CR3 (drops non-global TLB entries; global ones survive while
    CR4.PGE = 1; with CR4.PCIDE, bit 63 set means "no flush" and is not stored). Writing
    ``mmu.cr4`` flushes everything when PGE toggles or PCIDE is cleared; changing CR4.LA57
    while EFER.LMA = 1 raises `GeneralProtectionFault` (#GP(0)) and changes nothing, so an Mmu
    keeps the paging mode (4- or 5-level) it was created with. CR0, EFER and ``ac`` are plain
    attributes. Only IA-32e paging (CR0.PG, CR4.PAE, EFER.LME) is modelled.
    """

    def __init__(
        self,
        physmem: PhysicalMemory,
        cr3: int = 0,
        cr0: int = DEFAULT_CR0,
        cr4: int = DEFAULT_CR4,
        efer: int = DEFAULT_EFER,
        ac: bool = False,
        tlb_capacity: int = 64,
        pdpe1gb: bool = True,
    ) -> None:
        if not isinstance(physmem, PhysicalMemory):
            raise TypeError("physmem must be a PhysicalMemory")
        self.physmem = physmem
        self.cr0 = cr0
        self.efer = efer
        self.ac = bool(ac)
        self.pdpe1gb = pdpe1gb  # CPUID.80000001H:EDX[26]: 1 GiB pages supported
        self.tlb = Tlb(tlb_capacity)
        self._cr4 = int(cr4)
        self._cr3 = 0
        self._set_cr3(cr3, flush=False)
        self._trace: Any = None
        self._touched: list[int] = []

    # ---- control registers ---------------------------------------------------------------
    @property
    def cr3(self) -> int:
        return self._cr3

    @cr3.setter
    def cr3(self, value: int) -> None:
        self._set_cr3(value, flush=True)

    def _set_cr3(self, value: int, flush: bool) -> None:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError("CR3 must be an int")
        value = int(value)
        noflush = False
        if self._cr4 & CR4_PCIDE and value >> 63:
            noflush = True
            value &= ~(1 << 63)
        if value < 0 or value >> self.physmem.maxphyaddr:
            raise ValueError(
                f"MOV to CR3 with {value:#x} raises #GP: bits 63:{self.physmem.maxphyaddr} "
                "(above MAXPHYADDR) must be 0"
            )
        self._cr3 = value
        if flush and not noflush:
            n = self.tlb.flush(keep_global=bool(self._cr4 & CR4_PGE))
            if self._trace is not None:
                self._trace.record(self, "tlb_flush", f"MOV to CR3 {value:#x}: {n} TLB entries "
                                   "dropped" + (" (global ones kept)" if self._cr4 & CR4_PGE
                                                else ""), reason="cr3", va=None, dropped=n)

    @property
    def cr4(self) -> int:
        return self._cr4

    @cr4.setter
    def cr4(self, value: int) -> None:
        value = int(value)
        old = self._cr4
        if (old ^ value) & CR4_LA57 and self.efer & EFER_LMA:
            # Intel SDM vol. 3A §2.5 (CR4.LA57 "cannot be modified in IA-32e mode") and the
            # MOV to CR4 #GP(0) conditions: the number of paging levels is fixed while long
            # mode is on. Refuse before touching anything (CR4 and the TLB stay as they are).
            now, then = ("5", "4") if old & CR4_LA57 else ("4", "5")
            raise GeneralProtectionFault(
                f"MOV to CR4 raises #GP(0) (general protection, vector 13): CR4.LA57 cannot "
                f"change while the CPU is in long mode (EFER.LMA = 1), so this Mmu stays with "
                f"{now}-level paging. To walk {then}-level tables, create a new Mmu with "
                f"cr4={'DEFAULT_CR4 | CR4_LA57' if then == '5' else 'DEFAULT_CR4'} "
                "(FreeBSD picks the mode per process when it creates the pmap)."
            )
        self._cr4 = value
        if (old ^ value) & (CR4_PGE | CR4_LA57) or (old & CR4_PCIDE and not value & CR4_PCIDE):
            n = self.tlb.flush(keep_global=False)
            if self._trace is not None:
                self._trace.record(self, "tlb_flush", f"MOV to CR4: whole TLB flushed ({n})",
                                   reason="cr4", va=None, dropped=n)

    @property
    def la57(self) -> bool:
        return bool(self._cr4 & CR4_LA57)

    @property
    def levels(self) -> int:
        return 5 if self._cr4 & CR4_LA57 else 4

    def is_canonical(self, va: int) -> bool:
        top = va >> (56 if self._cr4 & CR4_LA57 else 47)
        return top == 0 or top == (0xFF if self._cr4 & CR4_LA57 else 0x1FFFF)

    # ---- TLB management ------------------------------------------------------------------
    def invlpg(self, va: int) -> int:
        """INVLPG: drop the TLB entries for ``va``'s page (global ones too)."""
        va = _check_va(va)
        n = self.tlb.invalidate(va)
        if self._trace is not None:
            self._trace.record(self, "tlb_flush", f"INVLPG {va:#x}: {n} entr"
                               f"{'y' if n == 1 else 'ies'} dropped", reason="invlpg", va=va,
                               dropped=n)
        return n

    def flush_tlb(self, keep_global: bool = True) -> int:
        """Drop all (non-global, with ``keep_global``) TLB entries: pmap_invalidate_all."""
        n = self.tlb.flush(keep_global=keep_global and bool(self._cr4 & CR4_PGE))
        if self._trace is not None:
            self._trace.record(self, "tlb_flush", f"TLB flush: {n} entries dropped",
                               reason="all", va=None, dropped=n)
        return n

    # ---- the walk --------------------------------------------------------------------------
    def _check_mode(self) -> None:
        if not (self.cr0 & CR0_PG and self._cr4 & CR4_PAE and self.efer & EFER_LME):
            raise ValueError(
                "vmlab models IA-32e (4- and 5-level) paging only: CR0.PG, CR4.PAE and "
                "EFER.LME must all be set"
            )

    def _error_base(self, access: str, cpl: int) -> int:
        ec = 0
        if access == "w":
            ec |= PGEX_W
        if cpl == 3:
            ec |= PGEX_U
        if access == "x" and (self.efer & EFER_NXE or self._cr4 & CR4_SMEP):
            ec |= PGEX_I
        return ec

    def _denied(self, rw: bool, us: bool, xd: bool, access: str, cpl: int) -> str:
        """Why the combined rights refuse the access ('' if allowed). SDM §4.6."""
        if cpl == 3:
            if not us:
                return "user access to a supervisor-mode address (U/S = 0 at some level)"
            if access == "w" and not rw:
                return "user write to a read-only page (R/W = 0 at some level)"
            if access == "x" and xd:
                return "fetch from an XD page"
            return ""
        if access == "x":
            if xd:
                return "fetch from an XD page"
            if self._cr4 & CR4_SMEP and us:
                return "SMEP: supervisor fetch from a user-mode address"
            return ""
        if self._cr4 & CR4_SMAP and us and not self.ac:
            return "SMAP: supervisor data access to a user-mode address with RFLAGS.AC = 0"
        if access == "w" and self.cr0 & CR0_WP and not rw:
            return "supervisor write to a read-only page with CR0.WP = 1"
        return ""

    def translate(self, va: int, access: str = "r", cpl: int = 3) -> Walk:
        """Walk the tables for one access; set A/D in memory as the hardware does.

        ``access`` is 'r', 'w' or 'x'; ``cpl`` 0..3 (3 = user). The TLB is neither used nor
        changed."""
        va = _check_va(va)
        _check_access(access, cpl)
        self._check_mode()
        pm = self.physmem
        m = pm.maxphyaddr
        amask = (1 << m) - 1
        nxe = bool(self.efer & EFER_NXE)
        levels = LEVEL_NAMES[-self.levels:]
        w = Walk(va, access, cpl, self._cr3, self.levels)
        tr = self._trace
        if not self.is_canonical(va):
            w.vector = VECTOR_GP
            w.error_code = 0
            w.reason = "non-canonical address (no page walk; CR2 is not written)"
            if tr is not None:
                tr.record(self, "walk_fault", f"#GP(0): {va:#x} is not canonical",
                          va=va, vector=VECTOR_GP, error_code=0, cr2=None, reason=w.reason)
            return w
        frames = pm.frames
        size = pm.size
        table = self._cr3 & amask & ~0xFFF
        rw = us = True
        xd = False
        passed: list[int] = []  # entry addresses of non-leaf entries passed
        ec = self._error_base(access, cpl)
        leaf_step: WalkStep | None = None
        for name in levels:
            idx = (va >> LEVEL_SHIFT[name]) & 511
            epa = table + 8 * idx
            raw = int(frames[epa >> 3]) if epa < size else 0
            step = WalkStep(name, table, idx, epa, raw, decode_entry(raw, name, m))
            w.steps.append(step)
            if tr is not None:
                tr.record(self, "walk_level", f"{name}[{idx}] at {epa:#x} = {raw:#018x}: "
                          f"{format_flags(step.flags)}", level=name, table_pa=table,
                          index=idx, entry_pa=epa, raw=raw)
            if not raw & 1:
                w.error_code = ec
                w.reason = f"{name} not present (P = 0)"
                break
            ps = bool(raw & PG_PS)
            if raw & reserved_mask(name, ps, m, nxe, self.pdpe1gb):
                w.error_code = ec | PGEX_P | PGEX_RSV
                w.reason = f"reserved bit set in {name}"
                break
            rw = rw and bool(raw & 2)
            us = us and bool(raw & 4)
            xd = xd or (nxe and bool(raw >> 63))
            if name == "PTE" or (ps and name in ("PDPTE", "PDE")):
                leaf_step = step
                break
            passed.append(len(w.steps) - 1)
            table = raw & amask & ~0xFFF
        if leaf_step is not None:
            w.writable, w.user, w.xd = rw, us, xd
            why = self._denied(rw, us, xd, access, cpl)
            if why:
                w.error_code = ec | PGEX_P
                w.reason = why
        # A in the non-leaf entries passed (success or fault); A (+D on write) in the leaf on
        # success only.
        writes = [(w.steps[i], PG_A) for i in passed]
        if leaf_step is not None and w.error_code is None:
            writes.append((leaf_step, PG_A | (PG_M if access == "w" else 0)))
        for step, bits in writes:
            cur = int(frames[step.entry_pa >> 3])
            if cur & bits != bits:
                frames[step.entry_pa >> 3] = np.uint64(cur | bits)
                step.written = cur | bits
        if tr is not None and any(s.written is not None for s in w.steps):
            tr.mark_dirty(self)
        if tr is not None:
            self._touched = [s.entry_pa for s in w.steps]
        if w.error_code is not None:
            w.vector = VECTOR_PF
            w.cr2 = va
            if tr is not None:
                tr.record(self, "walk_fault", f"#PF error {w.error_code:#x} "
                          f"({format_error_code(w.error_code)}): {w.reason}", va=va,
                          vector=VECTOR_PF, error_code=w.error_code, cr2=va, reason=w.reason)
            return w
        assert leaf_step is not None
        psize = _LEAF_SIZE[leaf_step.level]
        w.ok = True
        w.page_size = psize
        w.pa = (leaf_step.raw & amask & ~(psize - 1)) | (va & (psize - 1))
        if tr is not None:
            tr.record(self, "walk_done", f"{va:#x} -> PA {w.pa:#x} ({_SIZE_NAME[psize]} page)",
                      va=va, pa=w.pa, page_size=psize,
                      set_bits=[s.entry_pa for s in w.steps if s.written is not None])
        return w

    def translate_many(
        self, vas: Any, access: str = "r", cpl: int = 3, set_ad: bool = True
    ) -> Translations:
        """`translate` for an array of addresses, vectorised with numpy.

        Results agree with a loop of `translate` element for element. With ``set_ad`` (the
        default) memory ends exactly as after that loop: A/D bits never change what a walk
        decides (they are never reserved, never address bits), so every walk can be decided on
        the initial memory and the A/D updates OR-ed in afterwards. No trace steps.

        ``vas``: an integer numpy array, or a list/tuple of Python ints (any 64-bit value,
        kernel addresses above 2**63 included); empty input gives empty result arrays."""
        _check_access(access, cpl)
        self._check_mode()
        v = _as_addresses(vas)
        n = v.size
        pm = self.physmem
        m = pm.maxphyaddr
        nxe = bool(self.efer & EFER_NXE)
        frames = pm.frames
        nwords = np.uint64(frames.size)
        u = np.uint64
        amask_tbl = u(((1 << m) - 1) & ~0xFFF)
        if self.la57:
            hi = v >> u(56)
            canon = (hi == 0) | (hi == 0xFF)
        else:
            hi = v >> u(47)
            canon = (hi == 0) | (hi == 0x1FFFF)
        table = np.full(n, u(self._cr3) & amask_tbl, dtype=np.uint64)
        active = canon.copy()
        all_active = bool(active.all())
        all_ones = u((1 << 64) - 1)
        and_acc = np.full(n, all_ones, dtype=np.uint64)
        or_acc = np.zeros(n, dtype=np.uint64)
        reached = np.zeros(n, dtype=bool)
        leaf_epa = np.zeros(n, dtype=np.uint64)
        leaf_raw = np.zeros(n, dtype=np.uint64)
        psize = np.zeros(n, dtype=np.uint64)
        # 0: walking / reached a leaf, 1: not present, 2: reserved bit
        status = np.zeros(n, dtype=np.uint8)
        base = self._error_base(access, cpl)
        zero = u(0)
        ad_writes: list[np.ndarray] = []  # entry word indices needing A (non-leaf)
        for name in LEVEL_NAMES[-self.levels:]:
            idx = (v >> u(LEVEL_SHIFT[name])) & u(511)
            widx = (table >> u(3)) + idx
            if n and int(widx.max()) >= int(nwords):
                inmem = widx < nwords
                raw = frames[np.minimum(widx, nwords - u(1))]
                raw[~inmem] = 0  # outside RAM reads as 0
            else:
                raw = frames[widx]
            if not all_active:
                raw = np.where(active, raw, zero)
            present = (raw & u(1)) != 0
            np.copyto(status, 1, where=active & ~present)
            if name in ("PDPTE", "PDE"):
                ps = (raw & u(PG_PS)) != 0
                rmask = np.where(
                    ps,
                    u(reserved_mask(name, True, m, nxe, self.pdpe1gb)),
                    u(reserved_mask(name, False, m, nxe, self.pdpe1gb)),
                )
            else:
                ps = None
                rmask = u(reserved_mask(name, False, m, nxe, self.pdpe1gb))
            good = present  # inactive lanes read 0, so present implies active
            rsv = (raw & rmask) != 0
            if rsv.any():
                rsv &= present
                np.copyto(status, 2, where=rsv)
                good = present & ~rsv
            # only lanes still walking at this level combine its rights (R/W, U/S ANDed;
            # XD ORed): AND/OR the raw entries themselves
            and_acc &= np.where(good, raw, all_ones)
            if nxe:
                or_acc |= np.where(good, raw, zero)
            if name == "PTE":
                leaf = good
            elif ps is not None:
                leaf = good & ps
            else:
                leaf = None
            if leaf is not None and leaf.any():
                np.copyto(leaf_epa, widx, where=leaf)
                np.copyto(leaf_raw, raw, where=leaf)
                np.copyto(psize, u(_LEAF_SIZE[name]), where=leaf)
                reached |= leaf
                nonleaf = good & ~leaf
            else:
                nonleaf = good
            if set_ad:
                need = nonleaf & ((raw & u(PG_A)) == 0)
                if need.any():
                    ad_writes.append(widx[need])
            table = raw & amask_tbl
            active = nonleaf
            all_active = False
        rw = (and_acc & u(2)) != 0
        us = (and_acc & u(4)) != 0
        xd = (or_acc >> u(63)) != 0
        # combined rights (SDM §4.6), vectorised like Mmu._denied
        if cpl == 3:
            deny = ~us
            if access == "w":
                deny |= ~rw
            elif access == "x":
                deny |= xd
        elif access == "x":
            deny = xd | (us if self._cr4 & CR4_SMEP else False)
        else:
            deny = us & bool(self._cr4 & CR4_SMAP and not self.ac)
            if access == "w" and self.cr0 & CR0_WP:
                deny = deny | ~rw
        deny = np.asarray(deny, dtype=bool) & reached
        ok = reached & ~deny
        ec = np.where(
            status == 1, np.uint32(base),
            np.where(status == 2, np.uint32(base | PGEX_P | PGEX_RSV),
                     np.where(deny, np.uint32(base | PGEX_P), np.uint32(0))),
        ).astype(np.uint32)
        off = psize - u(1)
        pa = np.where(ok, (leaf_raw & u((1 << m) - 1) & ~off) | (v & off), zero)
        vector = np.where(ok, 0, np.where(canon, VECTOR_PF, VECTOR_GP)).astype(np.uint8)
        if set_ad:
            for w in ad_writes:
                frames[_unique_words(w, frames.size)] |= u(PG_A)
            bits = u(PG_A | (PG_M if access == "w" else 0))
            need = ok & ((leaf_raw & bits) != bits)
            if need.any():
                frames[_unique_words(leaf_epa[need], frames.size)] |= bits
            if self._trace is not None:
                self._trace.mark_dirty(self)
        return Translations(ok, pa, np.where(ok, psize, zero), vector, ec)

    # ---- through the TLB -------------------------------------------------------------------
    def access(self, va: int, access: str = "r", cpl: int = 3) -> Walk:
        """An access as the CPU does it: the TLB first; a walk on a miss (or on a write through
        an entry cached with D = 0, which re-reads the tables to set D). A hit whose cached
        rights refuse the access faults (P = 1) and drops the entry, as a #PF does."""
        va = _check_va(va)
        _check_access(access, cpl)
        self._check_mode()
        tr = self._trace
        if not self.is_canonical(va):
            return self.translate(va, access, cpl)
        e = self.tlb.lookup(va)
        reason = "not cached"
        if e is not None:
            why = self._denied(e.rw, e.us, e.xd, access, cpl)
            if why or not (access == "w" and not e.dirty):
                self.tlb.hits += 1
                w = Walk(va, access, cpl, self._cr3, self.levels, source="tlb",
                         writable=e.rw, user=e.us, xd=e.xd)
                if why:
                    self.tlb.invalidate(va)
                    w.vector, w.cr2, w.reason = VECTOR_PF, va, why + " (cached rights)"
                    w.error_code = self._error_base(access, cpl) | PGEX_P
                    if tr is not None:
                        tr.record(self, "tlb_hit", f"TLB hit for {va:#x}, but the cached "
                                  f"rights refuse it: #PF {w.error_code:#x}", va=va, pa=None,
                                  page_size=e.page_size, ok=False)
                    return w
                w.ok = True
                w.page_size = e.page_size
                w.pa = e.frame | (va & (e.page_size - 1))
                if tr is not None:
                    tr.record(self, "tlb_hit", f"TLB hit: {va:#x} -> PA {w.pa:#x} (no walk)",
                              va=va, pa=w.pa, page_size=e.page_size, ok=True)
                return w
            reason = "write through an entry cached with D = 0: the CPU re-walks to set D"
        self.tlb.misses += 1
        if tr is not None:
            tr.record(self, "tlb_miss", f"TLB miss for {va:#x}: {reason}", va=va, reason=reason)
        w = self.translate(va, access, cpl)
        if w.ok:
            leaf = w.steps[-1]
            assert w.page_size is not None and w.pa is not None
            self.tlb.insert(TlbEntry(
                vpn=va // w.page_size, page_size=w.page_size,
                frame=w.pa & ~(w.page_size - 1), rw=bool(w.writable), us=bool(w.user),
                xd=bool(w.xd), dirty=bool((leaf.written or leaf.raw) & PG_M),
                global_=bool(leaf.raw & 0x100),
            ))
        else:
            self.tlb.invalidate(va)
        return w

    # ---- tracing ---------------------------------------------------------------------------
    def _trace_snapshot(self) -> tuple[tuple[int, int], ...]:
        """The entries the last walk touched, as (entry_pa, current raw value)."""
        pm = self.physmem
        return tuple((pa, pm.read_u64(pa)) for pa in self._touched if pa < pm.size)

    def __repr__(self) -> str:
        return (f"Mmu(cr3={self._cr3:#x}, cr0={self.cr0:#x}, cr4={self._cr4:#x}, "
                f"efer={self.efer:#x}, ac={self.ac}, tlb={len(self.tlb)} entries)")


def _unique_words(idx: np.ndarray, nwords: int) -> np.ndarray:
    """Distinct word indices (a scatter into a lazily zeroed mask beats sorting for big
    batches; an OR is idempotent, so duplicates are only a cost)."""
    if idx.size < 4096:
        return idx
    mask = np.zeros(nwords, dtype=bool)
    mask[idx] = True
    return np.flatnonzero(mask)


def _as_addresses(vas: Any) -> np.ndarray:
    """``vas`` as a flat uint64 array. Lists/tuples of Python ints are converted exactly: numpy
    would infer float64 for [2**63 + x, small] (losing bits), so non-integer inference falls
    back to checking each element as an int. Floats, bools and strings are refused."""
    try:
        v = np.asarray(vas)
    except OverflowError:  # a value beyond 64 bits; _check_va names it below
        v = np.array(vas, dtype=object)
    if v.size == 0:
        return np.zeros(0, dtype=np.uint64)
    kind = v.dtype.kind
    if kind == "u":
        return v.astype(np.uint64, copy=False).ravel()
    if kind == "i":
        if v.min() < 0:
            raise ValueError("linear addresses must be non-negative 64-bit values")
        return v.astype(np.uint64).ravel()
    if kind == "O" or (kind == "f" and not isinstance(vas, np.ndarray)):
        flat = np.array(vas, dtype=object).ravel()
        return np.fromiter((_check_va(x) for x in flat), dtype=np.uint64, count=flat.size)
    raise TypeError(f"vas must be integers (got a {v.dtype} array)")


def _check_va(va: Any) -> int:
    if not isinstance(va, (int, np.integer)) or isinstance(va, bool):
        raise TypeError("a linear address must be an int")
    va = int(va)
    if not 0 <= va < 1 << 64:
        raise ValueError(f"linear address {va:#x} is not a 64-bit value")
    return va


def _check_access(access: Any, cpl: Any) -> None:
    if access not in ACCESS_KINDS:
        raise ValueError(f"access must be one of 'r', 'w', 'x', not {access!r}")
    if not isinstance(cpl, (int, np.integer)) or isinstance(cpl, bool) or not 0 <= cpl <= 3:
        raise ValueError(f"cpl must be 0, 1, 2 or 3 (3 = user mode), not {cpl!r}")

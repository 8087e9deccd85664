"""x86-64 paging-structure entry bits, control-register bits and decoding.

Hardware bits follow the Intel SDM vol. 3A ch. 4 (tables 4-15..4-20); the names are FreeBSD's
(sys/amd64/include/pte.h: X86_PG_*, PG_*; sys/amd64/include/pmap.h: PG_W, PG_MANAGED,
PG_PROMOTED; PGEX_* from sys/x86/include/psl.h / trap.h).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CR0_PE",
    "CR0_PG",
    "CR0_WP",
    "CR4_LA57",
    "CR4_PAE",
    "CR4_PCIDE",
    "CR4_PGE",
    "CR4_PKE",
    "CR4_SMAP",
    "CR4_SMEP",
    "EFER_LMA",
    "EFER_LME",
    "EFER_NXE",
    "LEVEL_NAMES",
    "PGEX_I",
    "PGEX_P",
    "PGEX_PK",
    "PGEX_RSV",
    "PGEX_U",
    "PGEX_W",
    "PG_A",
    "PG_FRAME",
    "PG_G",
    "PG_M",
    "PG_MANAGED",
    "PG_NC_PCD",
    "PG_NC_PWT",
    "PG_NX",
    "PG_PDE_PAT",
    "PG_PROMOTED",
    "PG_PS",
    "PG_PS_FRAME",
    "PG_PS_PDP_FRAME",
    "PG_PTE_PAT",
    "PG_RW",
    "PG_U",
    "PG_V",
    "PG_W",
    "decode_entry",
    "format_error_code",
    "format_flags",
    "reserved_mask",
]

# ---- entry bits (pte.h / pmap.h) ---------------------------------------------------------
PG_V = 0x001
PG_RW = 0x002
PG_U = 0x004
PG_NC_PWT = 0x008
PG_NC_PCD = 0x010
PG_A = 0x020
PG_M = 0x040
PG_PS = 0x080
PG_PTE_PAT = 0x080
PG_G = 0x100
PG_AVAIL1 = 0x200  # bit 9: unused by FreeBSD amd64
PG_MANAGED = 0x400  # bit 10 (X86_PG_AVAIL2)
PG_W = 0x800  # bit 11 (X86_PG_AVAIL3): wired
PG_PDE_PAT = 0x1000
PG_PROMOTED = 1 << 54
PG_NX = 1 << 63
PG_FRAME = 0x000F_FFFF_FFFF_F000
PG_PS_FRAME = 0x000F_FFFF_FFE0_0000
PG_PS_PDP_FRAME = 0x000F_FFFF_C000_0000

# ---- #PF error code -----------------------------------------------------------------------
PGEX_P = 0x01
PGEX_W = 0x02
PGEX_U = 0x04
PGEX_RSV = 0x08
PGEX_I = 0x10
PGEX_PK = 0x20

# ---- control registers --------------------------------------------------------------------
CR0_PE = 1 << 0
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_PGE = 1 << 7
CR4_LA57 = 1 << 12
CR4_PCIDE = 1 << 17
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21
CR4_PKE = 1 << 22
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11

#: Level names from the root down, for 5-level paging; 4-level paging uses the last four.
LEVEL_NAMES: tuple[str, ...] = ("PML5E", "PML4E", "PDPTE", "PDE", "PTE")
#: Index shift of each level (bits 56:48, 47:39, 38:30, 29:21, 20:12).
LEVEL_SHIFT: dict[str, int] = {"PML5E": 48, "PML4E": 39, "PDPTE": 30, "PDE": 21, "PTE": 12}
#: Name of the table an entry of this level lives in.
TABLE_NAME: dict[str, str] = {
    "PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT",
}


def reserved_mask(level: str, ps: bool, maxphyaddr: int, nxe: bool, pdpe1gb: bool = True) -> int:
    """Bits that must be 0 in a present entry of ``level`` (SDM 4.5, tables 4-15..4-20).

    Bits 51:M everywhere; bit 63 when EFER.NXE = 0; PS (bit 7) in PML5E/PML4E; bits 20:13 in a
    2 MiB PDE; bits 29:13 in a 1 GiB PDPTE; PS in a PDPTE without 1 GiB-page support.
    """
    mask = ((1 << 52) - 1) & ~((1 << maxphyaddr) - 1)
    if not nxe:
        mask |= PG_NX
    if level in ("PML5E", "PML4E"):
        mask |= PG_PS
    elif level == "PDPTE" and ps:
        mask |= PG_PS if not pdpe1gb else 0x3FFF_E000  # bits 29:13
    elif level == "PDE" and ps:
        mask |= 0x1F_E000  # bits 20:13
    return mask


def decode_entry(raw: int, level: str, maxphyaddr: int = 52) -> dict[str, Any]:
    """The fields of ``raw`` as an entry of ``level``: hardware flags (only those the level
    defines), FreeBSD's software bits, and ``addr`` (next table or page frame)."""
    f: dict[str, Any] = {
        "P": raw & 1,
        "RW": (raw >> 1) & 1,
        "US": (raw >> 2) & 1,
        "PWT": (raw >> 3) & 1,
        "PCD": (raw >> 4) & 1,
        "A": (raw >> 5) & 1,
    }
    leaf = level == "PTE" or (level in ("PDPTE", "PDE") and raw & PG_PS)
    if level in ("PDPTE", "PDE"):
        f["PS"] = (raw >> 7) & 1
    amask = (1 << maxphyaddr) - 1
    if leaf:
        f["D"] = (raw >> 6) & 1
        f["G"] = (raw >> 8) & 1
        f["PAT"] = (raw >> 7) & 1 if level == "PTE" else (raw >> 12) & 1
        size_mask = {"PTE": 0xFFF, "PDE": (1 << 21) - 1, "PDPTE": (1 << 30) - 1}[level]
        f["addr"] = raw & amask & ~size_mask
        f["PK"] = (raw >> 59) & 0xF
    else:
        f["addr"] = raw & amask & ~0xFFF
    f["MANAGED"] = (raw >> 10) & 1
    f["WIRED"] = (raw >> 11) & 1
    f["XD"] = (raw >> 63) & 1
    return f


_FLAG_ORDER = ("P", "RW", "US", "PWT", "PCD", "A", "D", "PS", "PAT", "G", "MANAGED", "WIRED", "XD")


def format_flags(flags: dict[str, Any]) -> str:
    """Set flags by name, in bit order (``P RW US A D MANAGED XD``); ``-`` if none."""
    names = [n for n in _FLAG_ORDER if flags.get(n)]
    if flags.get("PK"):
        names.append(f"PK={flags['PK']}")
    return " ".join(names) if names else "-"


def format_error_code(code: int) -> str:
    """``P W U RSVD I/D`` names of a #PF error code's set bits (``-`` when 0)."""
    names = [
        n
        for bit, n in ((PGEX_P, "P"), (PGEX_W, "W"), (PGEX_U, "U"), (PGEX_RSV, "RSVD"),
                       (PGEX_I, "I/D"), (PGEX_PK, "PK"))
        if code & bit
    ]
    return " ".join(names) if names else "-"

"""What every importer produces: an `ImportedMap` of `ImportedEntry` rows plus `ParseIssue`s.

An imported map is a read-only picture of a real address space (Linux ``/proc/PID/maps``,
FreeBSD ``procstat -v``, QEMU ``info mem``). It keeps everything the source printed (paths,
object types, reference and shadow counts, smaps sizes) and can be turned into a
`vmlab.core.snapshot.MapSnapshot` so the same views that draw the simulated vm_map draw it.

Accounting rule: every input line is an entry's line (or one of its smaps detail lines), a
recognised non-entry line (header, blank, prompt: `ImportedMap.skipped`) or a `ParseIssue`.
Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vmlab.core.constants import MAP_ENTRY, VM_INHERIT, VM_PROT
from vmlab.core.snapshot import ENTRY_DTYPE, MapSnapshot

__all__ = [
    "ADDRESS_LIMIT",
    "FLAG_NAMES",
    "MAX_DECIMAL_DIGITS",
    "ImportedEntry",
    "ImportedMap",
    "ParseIssue",
    "TP_CODES",
    "display_path",
]

#: Addresses are 64-bit: anything at or above this does not fit and is reported.
ADDRESS_LIMIT = 1 << 64

#: Longest decimal field accepted (2**64-1 has 20 digits). Checked before int(): CPython refuses
#: to convert more than 4,300 digits (sys.int_max_str_digits) and the sources never print more
#: than a 64-bit number (Linux %lu inodes and kB sizes, procstat's %d counts).
MAX_DECIMAL_DIGITS = 20


def decimal_field(tok: str, what: str) -> int | str:
    """``tok`` as a non-negative decimal int, or the reason it is not one (a `ParseIssue`
    reason naming ``what``). Over-long fields are rejected before ``int()`` sees them."""
    if not tok.isascii() or not tok.isdigit():
        return f"{what} {tok[:24]!r} is not a decimal number"
    if len(tok) > MAX_DECIMAL_DIGITS:
        return (f"{what} has {len(tok)} digits; a 64-bit number has at most "
                f"{MAX_DECIMAL_DIGITS}")
    return int(tok)


def json_error(exc: BaseException, text: str) -> tuple[int, str]:
    """(line, one-line reason) for a failed ``json.loads(text)``.

    Besides syntax errors (JSONDecodeError, with a line) the decoder raises RecursionError for
    arrays/objects nested deeper than Python's recursion limit and a plain ValueError for a
    number with more digits than ``sys.get_int_max_str_digits()`` (4,300 by default).
    """
    if isinstance(exc, RecursionError):
        return 1, ("not valid JSON here: arrays/objects nested too deeply (Python's decoder "
                   f"stops near {sys.getrecursionlimit()} levels)")
    if isinstance(exc, json.JSONDecodeError):
        return exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})"
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit:
        m = re.search(rf"[0-9]{{{limit + 1},}}", text)
        if m:
            return (text.count("\n", 0, m.start()) + 1,
                    f"not valid JSON here: a number of {m.end() - m.start()} digits (Python "
                    f"reads at most {limit}; a 64-bit number has {MAX_DECIMAL_DIGITS})")
    return 1, f"not valid JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


#: Flag names an entry may carry, with what they mean and where they come from.
FLAG_NAMES: dict[str, str] = {
    "cow": "copy-on-write (procstat C: MAP_ENTRY_COW)",
    "needs_copy": "needs copy (procstat N: MAP_ENTRY_NEEDS_COPY)",
    "superpages": "backed by superpages (procstat S; Linux VmFlags ht)",
    "grows_up": "stack grows up (procstat U: MAP_ENTRY_GROWS_UP)",
    "grows_down": "stack grows down (procstat D; Linux VmFlags gd, or [stack] without smaps)",
    "wired": "user-wired, mlock(2) (procstat W; Linux VmFlags lo)",
    "guard": "guard entry (CheriBSD G in the C column; procstat TP gd)",
    "unmapped": "CheriBSD unmapped reservation (libxo is_unmapped)",
    "hascap": "CheriBSD: pages may hold capabilities (c)",
    "read_cap": "CheriBSD PRT R: capability loads allowed",
    "write_cap": "CheriBSD PRT W: capability stores allowed",
    "sysvshm": "System V shared memory segment",
    "posixshm": "POSIX shared memory object",
    "deleted": "Linux: the mapped file was deleted ( (deleted) suffix)",
    "user": "QEMU info mem u: user-accessible page-table range",
}

#: procstat's two-letter TP codes by kve_type long name (usr.bin/procstat/procstat_vm.c).
TP_CODES: dict[str, str] = {
    "none": "--",
    "default": "df",
    "vnode": "vn",
    "swap": "sw",
    "device": "dv",
    "physical": "ph",
    "dead": "dd",
    "scatter/gather": "sg",
    "managed_device": "md",
    "guard": "gd",
    "quarantined": "qu",
    "unknown": "??",
    # Linux and QEMU kinds, shown the way FreeBSD 14 would show the nearest object type.
    "file": "vn",
    "anon": "sw",
    "heap": "sw",
    "stack": "sw",
    "shmem": "sw",
}

_EMPTY: frozenset[str] = frozenset()


def display_path(path: str) -> str:
    """A path made safe for one table line: newline as ``\\012`` (as Linux prints it) and other
    control characters as ``\\xNN``."""
    if path.isprintable():
        return path
    out = []
    for ch in path:
        if ch == "\n":
            out.append("\\012")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


@dataclass(frozen=True)
class ParseIssue:
    """One input line that could not be imported: its 1-based number, why, and its text."""

    line_no: int
    reason: str
    text: str = ""

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}"


@dataclass(slots=True)
class ImportedEntry:
    """One mapping as the source printed it.

    ``protection`` is VM_PROT bits; ``prot_text`` the column as printed (``r-xp``, ``r--R-``,
    ``-rw``). ``shared`` is None when the source does not say (procstat, QEMU). ``type`` is the
    object type: procstat's long kve_type names (``vnode``, ``swap``, ``physical``, ``guard``...)
    for FreeBSD, ``file``/``anon``/``heap``/``stack``/``vdso``/``vvar``/``vsyscall``/``shmem``/
    ``special`` for Linux, ``pagetable`` for QEMU. Counts and smaps fields are None when absent.
    ``line_no`` is the entry's line; ``last_line`` the last line that belongs to it (smaps).
    """

    start: int
    end: int
    protection: int
    prot_text: str
    shared: bool | None = None
    offset: int | None = None
    path: str = ""
    type: str = ""
    flags: frozenset[str] = _EMPTY
    pid: int | None = None
    resident: int | None = None
    private_resident: int | None = None
    ref_count: int | None = None
    shadow_count: int | None = None
    device: str | None = None
    inode: int | None = None
    smaps: dict[str, int] | None = None
    vm_flags: tuple[str, ...] | None = None
    source: str = ""
    line_no: int = 0
    last_line: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def prt(self) -> str:
        """Protection as procstat's PRT letters (``r-x``)."""
        p = self.protection
        return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")

    @property
    def tp(self) -> str:
        """procstat's two-letter TP column for this entry."""
        return TP_CODES.get(self.type, "--")

    @property
    def flag_text(self) -> str:
        """procstat's 5-letter FLAG column (C N S U/D W, FreeBSD 12+ layout), from `eflags`
        plus the superpage flag. A guard shows only in TP (``gd``), as FreeBSD 14 prints it."""
        e = self.eflags
        return (
            ("C" if e & MAP_ENTRY.COW else "-")
            + ("N" if e & MAP_ENTRY.NEEDS_COPY else "-")
            + ("S" if "superpages" in self.flags else "-")
            + ("U" if e & MAP_ENTRY.GROWS_UP else "D" if e & MAP_ENTRY.GROWS_DOWN else "-")
            + ("W" if e & MAP_ENTRY.USER_WIRED else "-")
        )

    @property
    def eflags(self) -> int:
        """The vm_map_entry eflags this entry would have in FreeBSD.

        Flags the source carries map one to one (C → MAP_ENTRY_COW, N → NEEDS_COPY, D/U →
        GROWS_DOWN/UP, W → USER_WIRED, guard → GUARD). A Linux private *file* mapping also gets
        COW: FreeBSD's vm_mmap_object (sys/vm/vm_mmap.c) passes MAP_COPY_ON_WRITE for every
        mapping that is neither MAP_ANON nor MAP_SHARED; private anonymous memory does not.
        """
        f = self.flags
        e = MAP_ENTRY.NONE
        if "cow" in f or (self.shared is False and self.type == "file"):
            e |= MAP_ENTRY.COW
        if "needs_copy" in f:
            e |= MAP_ENTRY.NEEDS_COPY
        if "grows_down" in f:
            e |= MAP_ENTRY.GROWS_DOWN
        if "grows_up" in f:
            e |= MAP_ENTRY.GROWS_UP
        if "wired" in f:
            e |= MAP_ENTRY.USER_WIRED
        if "guard" in f or self.type == "guard":
            e |= MAP_ENTRY.GUARD
        return int(e)

    @property
    def path_text(self) -> str:
        """The path column as the source printed it (`` (deleted)`` put back)."""
        return self.path + " (deleted)" if "deleted" in self.flags else self.path

    @property
    def name(self) -> str:
        """What to call the mapping in a legend or tooltip."""
        if self.path:
            return self.path + (" (deleted)" if "deleted" in self.flags else "")
        return {"anon": "[anon]", "swap": "[anon]", "guard": "[guard]"}.get(self.type, "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (integers, strings, lists, None)."""
        return {
            "start": self.start,
            "end": self.end,
            "size": self.end - self.start,
            "prot": self.prt,
            "protection": self.protection,
            "prot_text": self.prot_text,
            "shared": self.shared,
            "offset": self.offset,
            "flags": sorted(self.flags),
            "type": self.type,
            "tp": self.tp,
            "path": self.path,
            "name": self.name,
            "pid": self.pid,
            "resident": self.resident,
            "private_resident": self.private_resident,
            "ref_count": self.ref_count,
            "shadow_count": self.shadow_count,
            "device": self.device,
            "inode": self.inode,
            "smaps": dict(self.smaps) if self.smaps is not None else None,
            "vm_flags": list(self.vm_flags) if self.vm_flags is not None else None,
            "source": self.source,
            "line": self.line_no,
        }


@dataclass
class ImportedMap:
    """A parsed address space: entries in address order, issues in line order.

    ``format`` is ``linux``, ``procstat``, ``procstat-json`` or ``qemu``; ``skipped`` lists the
    recognised non-entry lines as (line number, what it was).
    """

    entries: list[ImportedEntry]
    issues: list[ParseIssue]
    format: str
    source_name: str = ""
    pid: int | None = None
    line_count: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ImportedEntry]:
        return iter(self.entries)

    @property
    def ok(self) -> bool:
        """True when every line was understood."""
        return not self.issues

    def finish(self) -> ImportedMap:
        """Sort entries by address (as integers) and turn overlapping entries into issues.

        Real maps never overlap (each is a vm_map or a VMA tree), so an overlap means corrupted
        or concatenated input: the later line is rejected, with the line it collides with.
        """
        ents = self.entries
        if any(ents[i].start > ents[i + 1].start for i in range(len(ents) - 1)):
            ents.sort(key=lambda e: (e.start, e.line_no))
        kept: list[ImportedEntry] = []
        rejected = False
        for e in ents:
            if kept and e.start < kept[-1].end:
                p = kept[-1]
                self.issues.append(
                    ParseIssue(
                        e.line_no,
                        f"range {e.start:#x}-{e.end:#x} overlaps {p.start:#x}-{p.end:#x} "
                        f"from line {p.line_no}",
                        "",
                    )
                )
                self.skipped.extend(
                    (n, f"detail of rejected line {e.line_no}")
                    for n in range(e.line_no + 1, e.last_line + 1)
                )
                rejected = True
                continue
            kept.append(e)
        if rejected:
            self.entries = kept
        self.issues.sort(key=lambda i: i.line_no)
        return self

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per entry (address order), with ``id`` = the snapshot entry id.

        Views use these for tooltips and legends: ``path``, ``name``, ``type``, ``flags``,
        counts and smaps sizes are all here, keyed by the same id as `to_snapshot`'s rows.
        """
        out = []
        for i, e in enumerate(self.entries):
            d = e.to_dict()
            d["id"] = i
            out.append(d)
        return out

    def to_snapshot(self, map_id: int = 0, max_address: int | None = None) -> MapSnapshot:
        """A `MapSnapshot` of this map for the address-space views.

        Entries get ids 0..n-1 in address order and no tree (left = right = root = -1: the
        source has no splay tree). ``min`` is 0; ``max`` is ``max_address`` or else the highest
        end (so kernel and vsyscall ranges above the user limit stay in view), 2**64-1 when
        empty. ``max_protection`` is not printed by any source and is set to ``protection``;
        inheritance is VM_INHERIT_SHARE for shared mappings, else COPY (vm_mmap.c's
        MAP_INHERIT_SHARE for MAP_SHARED). ``object`` numbers distinct backing objects (same
        device/inode/path share one); -1 for none. ``max_free`` is what FreeBSD keeps in a leaf:
        the larger of the gaps before and after the entry (vm_map.c, vm_map_entry_max_free_*).
        ``size`` sums non-guard entries, as vm_map.size does.
        """
        ents = self.entries
        n = len(ents)
        top = ents[-1].end if n else ADDRESS_LIMIT - 1
        vmax = max_address if max_address is not None else min(top, ADDRESS_LIMIT - 1)
        arr = np.zeros(n, dtype=ENTRY_DTYPE)
        arr["id"] = np.arange(n, dtype=np.int64)
        arr["left"] = -1
        arr["right"] = -1
        if n:
            starts = [e.start for e in ents]
            ends = [min(e.end, ADDRESS_LIMIT - 1) for e in ents]
            arr["start"] = starts
            arr["end"] = ends
            arr["offset"] = [e.offset or 0 for e in ents]
            prot = [e.protection & int(VM_PROT.ALL) for e in ents]
            arr["protection"] = prot
            arr["max_protection"] = prot
            arr["inheritance"] = [
                int(VM_INHERIT.SHARE) if e.shared else int(VM_INHERIT.COPY) for e in ents
            ]
            arr["eflags"] = [e.eflags for e in ents]
            arr["wired_count"] = [1 if "wired" in e.flags else 0 for e in ents]
            objs: dict[tuple[Any, ...], int] = {}
            obj_ids = []
            for i, e in enumerate(ents):
                if e.type in ("", "none", "guard", "pagetable"):
                    obj_ids.append(-1)
                    continue
                key = (e.device, e.inode, e.path) if e.path else ("anon", i)
                obj_ids.append(objs.setdefault(key, len(objs)))
            arr["object"] = obj_ids
            # Leaf max_free: the larger adjacent gap (previous end / next start, or min / max).
            hi = max(vmax, ends[-1])
            mf = []
            for i in range(n):
                before = starts[i] - (ends[i - 1] if i else 0)
                after = (starts[i + 1] if i + 1 < n else hi) - ends[i]
                mf.append(max(before, after, 0))
            arr["max_free"] = mf
        size = sum(e.end - e.start for e in ents if "guard" not in e.flags and e.type != "guard")
        return MapSnapshot(
            map_id=map_id,
            min=0,
            max=vmax,
            timestamp=0,
            nentries=n,
            size=size,
            anon_loc=0,
            flags=0,
            lock_mode="unlocked",
            lock_holders=(),
            root=-1,
            entries=arr,
        )

    def table(self) -> str:
        """A ``procstat -v``-style table, one row per mapping (START/END as 0x-prefixed hex).

        Columns the source does not have print as ``-``. PID is the map's pid when known.
        """
        lines = [
            f"{'PID':>5} {'START':>18} {'END':>18} {'PRT':<3} {'RES':>4} {'PRES':>4} "
            f"{'REF':>3} {'SHD':>3} {'FLAG':<5} {'TP':<2} PATH"
        ]

        def num(v: int | None, w: int) -> str:
            return f"{'-' if v is None else v:>{w}}"

        for e in self.entries:
            prt = e.prt
            res, pres = e.resident, e.private_resident
            if res is None and e.smaps is not None and "Rss" in e.smaps:
                res = e.smaps["Rss"] // 4
                pres = (e.smaps.get("Private_Clean", 0) + e.smaps.get("Private_Dirty", 0)) // 4
            pid = e.pid if e.pid is not None else self.pid
            lines.append(
                f"{num(pid, 5)} {e.start:#18x} {e.end:#18x} {prt} {num(res, 4)} {num(pres, 4)} "
                f"{num(e.ref_count, 3)} {num(e.shadow_count, 3)} {e.flag_text} {e.tp:<2} "
                f"{display_path(e.path_text)}".rstrip()
            )
        return "\n".join(lines) + "\n"

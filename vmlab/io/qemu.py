"""QEMU monitor ``info mem`` (x86 targets, target/i386/monitor.c mem_print()).

One line per run of pages with the same (user, write, present) bits::

    0000000000400000-0000000000401000 0000000000001000 ur-

``%016lx-%016lx %016lx %c%c%c``: start, end, size, then ``u``/``-``, a literal ``r`` and
``w``/``-``. There is no execute column (QEMU merges ranges without looking at NX), so
EXECUTE is never set here. Addresses are canonical (sign-extended), so kernel ranges print as
``ffff8000...``; they are kept. ``PG disabled`` (paging off) and ``(qemu)`` prompt lines are
recognised and skipped.

This is a page-table view, not a vm_map: the FreeBSD counterpart is pmap_mincore()/the pmap
walk, and there are no objects, offsets or paths.
"""

from __future__ import annotations

from vmlab.core.constants import VM_PROT

from .model import ADDRESS_LIMIT, ImportedEntry, ImportedMap, ParseIssue

__all__ = ["parse_qemu_info_mem"]

_HEX = "0123456789abcdefABCDEF"


def _hex(tok: str) -> int | None:
    return int(tok, 16) if tok and not tok.strip(_HEX) else None


def _row(line: str, no: int) -> ImportedEntry | str:
    parts = line.split()
    if len(parts) != 3:
        return f"expected 'start-end size urw', found {len(parts)} field{'s' * (len(parts) != 1)}"
    rng, size_t, prot_t = parts
    s, sep, e = rng.partition("-")
    start, end, size = _hex(s), _hex(e), _hex(size_t)
    if not sep or start is None or end is None:
        return f"address range {rng[:40]!r} is not 'hex-hex'"
    if size is None:
        return f"size {size_t[:24]!r} is not hex"
    if start >= ADDRESS_LIMIT or end >= ADDRESS_LIMIT:
        return f"address range {rng[:40]!r} does not fit in 64 bits"
    if start >= end:
        return f"empty or reversed range {start:#x}-{end:#x} (start must be below end)"
    if size != end - start:
        return f"size {size:#x} does not match end - start = {end - start:#x}"
    if len(prot_t) != 3 or prot_t[0] not in "u-" or prot_t[1] not in "r-" or prot_t[2] not in "w-":
        return f"protection {prot_t[:12]!r} is not 'urw' letters (u|-, r, w|-)"
    prot = (VM_PROT.READ if prot_t[1] == "r" else 0) | (VM_PROT.WRITE if prot_t[2] == "w" else 0)
    return ImportedEntry(
        start=start,
        end=end,
        protection=int(prot),
        prot_text=prot_t,
        type="pagetable",
        flags=frozenset({"user"}) if prot_t[0] == "u" else frozenset(),
        source="qemu",
        line_no=no,
        last_line=no,
    )


def parse_qemu_info_mem(text: str, source_name: str = "") -> ImportedMap:
    """Parse the QEMU monitor's ``info mem`` output into an `ImportedMap`."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    entries: list[ImportedEntry] = []
    issues: list[ParseIssue] = []
    skipped: list[tuple[int, str]] = []
    for no, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        st = line.strip()
        if not st:
            skipped.append((no, "blank"))
        elif st == "PG disabled":
            skipped.append((no, "paging disabled"))
        elif st.startswith("(qemu)"):
            skipped.append((no, "monitor prompt"))
        else:
            got = _row(line, no)
            if isinstance(got, str):
                issues.append(ParseIssue(no, got, line[:200]))
            else:
                entries.append(got)
    return ImportedMap(entries, issues, "qemu", source_name, None, len(lines), skipped).finish()

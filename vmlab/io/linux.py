"""Linux ``/proc/PID/maps`` and ``/proc/PID/smaps``.

Line layout (fs/proc/task_mmu.c, show_vma_header_prefix() and show_map_vma())::

    start-end perms offset major:minor inode <pad to 73 columns> name

``start``/``end``/``offset`` are lowercase hex of at least 8 digits, not fixed width (kernel
addresses such as [vsyscall] have 16). ``perms`` is r/w/x then ``s`` (VM_MAYSHARE) or ``p``.
The name is a path, a pseudo-name (``[heap]``, ``[stack]``, ``[vdso]``, ``[vvar]``,
``[vsyscall]``, ``[anon:name]``, ``[anon_shmem:name]``, ``[stack:tid]``) or empty for
anonymous memory. Paths are printed raw except that a newline becomes ``\\012`` and a deleted
file gets `` (deleted)``; both are undone here, which is ambiguous for a file whose real name
contains ``\\012`` or ends in `` (deleted)`` (the kernel gives no way to tell).

smaps adds ``Key:  value kB`` lines after each header and a ``VmFlags:`` line
(fs/proc/task_mmu.c, show_smap() and show_smap_vma_flags()).

The FreeBSD counterpart of this file is the kern.proc.vmmap sysctl that procstat reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from vmlab.core.constants import VM_PROT

from .model import ADDRESS_LIMIT, ImportedEntry, ImportedMap, ParseIssue, decimal_field

__all__ = ["parse_linux_maps"]

_HEX = "0123456789abcdefABCDEF"
_DEC = "0123456789"

# perms column → (VM_PROT bits, shared?)
_PERMS: dict[str, tuple[int, bool]] = {}
for _r in "r-":
    for _w in "w-":
        for _x in "x-":
            for _s in "sp":
                _PERMS[_r + _w + _x + _s] = (
                    int(
                        (VM_PROT.READ if _r == "r" else 0)
                        | (VM_PROT.WRITE if _w == "w" else 0)
                        | (VM_PROT.EXECUTE if _x == "x" else 0)
                    ),
                    _s == "s",
                )

_PSEUDO = {
    "[heap]": "heap",
    "[stack]": "stack",
    "[vdso]": "vdso",
    "[vvar]": "vvar",
    "[vvar_vclock]": "vvar",
    "[vsyscall]": "vsyscall",
}

# smaps VmFlags mnemonics (fs/proc/task_mmu.c show_smap_vma_flags) that vmlab shows as flags.
_VMFLAG_MAP = {"gd": "grows_down", "gu": "grows_up", "lo": "wired", "ht": "superpages"}
_INFERRED_STACK = frozenset({"grows_down"})


def _classify(path: str) -> str:
    """Linux kind of mapping from its name column."""
    if not path:
        return "anon"
    if path[0] == "[" and path[-1] == "]":
        kind = _PSEUDO.get(path)
        if kind:
            return kind
        if path.startswith("[anon:"):
            return "anon"
        if path.startswith("[anon_shmem:"):
            return "shmem"
        if path.startswith("[stack:"):
            return "stack"
        return "special"
    return "file"


def _is_hex(s: str) -> bool:
    return bool(s) and not s.strip(_HEX)


def _issue(issues: list[ParseIssue], no: int, reason: str, line: str) -> None:
    issues.append(ParseIssue(no, reason, line[:200]))


def _parse_header(parts: list[str], no: int) -> ImportedEntry | str:
    """One maps line already split into at most 6 fields → entry, or the reason it is bad."""
    if len(parts) < 5:
        return (
            f"expected 'start-end perms offset dev inode [path]', found {len(parts)} field"
            f"{'' if len(parts) == 1 else 's'}"
        )
    rng, perms, off, dev, ino = parts[0], parts[1], parts[2], parts[3], parts[4]
    s, sep, e = rng.partition("-")
    if not sep or not _is_hex(s) or not _is_hex(e):
        return f"address range {rng[:40]!r} is not 'hex-hex'"
    start = int(s, 16)
    end = int(e, 16)
    if end >= ADDRESS_LIMIT or start >= ADDRESS_LIMIT:
        return f"address range {rng[:40]!r} does not fit in 64 bits"
    if start >= end:
        return f"empty or reversed range {start:#x}-{end:#x} (start must be below end)"
    pv = _PERMS.get(perms)
    if pv is None:
        return f"permissions {perms[:12]!r} are not four letters like 'r-xp'"
    if not _is_hex(off):
        return f"offset {off[:24]!r} is not hex"
    offset = int(off, 16)
    if offset >= ADDRESS_LIMIT:
        return f"offset {off[:24]!r} does not fit in 64 bits"
    major, csep, minor = dev.partition(":")
    if not csep or not _is_hex(major) or not _is_hex(minor):
        return f"device {dev[:24]!r} is not 'major:minor' in hex"
    inode = decimal_field(ino, "inode")
    if isinstance(inode, str):
        return inode
    path = parts[5] if len(parts) > 5 else ""
    flags: frozenset[str] = frozenset()
    if path:
        if path.endswith(" (deleted)"):
            path = path[:-10]
            flags = frozenset({"deleted"})
        if "\\012" in path:
            path = path.replace("\\012", "\n")
    kind = _classify(path)
    if kind == "stack":
        # No smaps: Linux's main stack VMA is VM_GROWSDOWN (fs/exec.c setup_arg_pages,
        # VM_STACK_FLAGS). smaps' VmFlags replaces this guess when present.
        flags = flags | _INFERRED_STACK
    return ImportedEntry(
        start,
        end,
        pv[0],
        perms,
        pv[1],
        offset,
        path,
        kind,
        flags,
        None,
        None,
        None,
        None,
        None,
        dev,
        inode,
        None,
        None,
        "linux",
        no,
        no,
    )


def parse_linux_maps(
    text: str | Iterable[str], source_name: str = "", pid: int | None = None
) -> ImportedMap:
    """Parse ``/proc/PID/maps`` or ``/proc/PID/smaps`` text into an `ImportedMap`.

    Counterpart: FreeBSD's kern_proc_vmmap_out (sys/kern/kern_proc.c) produces the same facts
    for procstat. Every line becomes an entry, an smaps detail of the entry above it, a blank
    (skipped) or a `ParseIssue` with its 1-based line number.
    """
    lines = text.split("\n") if isinstance(text, str) else [ln.rstrip("\n") for ln in text]
    if lines and lines[-1] == "":
        lines.pop()
    entries: list[ImportedEntry] = []
    issues: list[ParseIssue] = []
    skipped: list[tuple[int, str]] = []
    cur: ImportedEntry | None = None
    rejected = 0  # line number of the last rejected mapping line, owner of its smaps fields
    append = entries.append
    no = 0
    for no, line in enumerate(lines, 1):  # noqa: B007 - no is used after the loop
        if line and line[-1] == "\r":
            line = line[:-1]
        parts = line.split(None, 5)
        if not parts:
            skipped.append((no, "blank"))
            continue
        first = parts[0]
        if first[-1] == ":":
            # smaps detail line: "Key:   123 kB", "THPeligible:  0", "VmFlags: rd wr ..."
            if cur is None:
                if rejected:
                    skipped.append((no, f"detail of rejected line {rejected}"))
                else:
                    _issue(issues, no, f"smaps field {first[:40]!r} before any mapping line", line)
                continue
            reason = _smaps_field(cur, first[:-1], line.split()[1:])
            if reason:
                _issue(issues, no, reason, line)
            else:
                cur.last_line = no
            continue
        got = _parse_header(parts, no)
        if isinstance(got, str):
            _issue(issues, no, got, line)
            cur = None
            rejected = no
            continue
        append(got)
        cur = got
    return ImportedMap(
        entries, issues, "linux", source_name, pid, len(lines), skipped
    ).finish()


def _smaps_field(entry: ImportedEntry, key: str, values: list[str]) -> str | None:
    """Store one smaps field on ``entry``; return the reason when it is malformed."""
    if key == "VmFlags":
        vmf = tuple(values)
        if any(len(v) != 2 or not v.isascii() or not v.isalpha() for v in vmf):
            return "VmFlags must be two-letter mnemonics"
        entry.vm_flags = vmf
        derived = {_VMFLAG_MAP[v] for v in vmf if v in _VMFLAG_MAP}
        entry.flags = (entry.flags - _INFERRED_STACK) | derived
        return None
    if not key or not key.replace("_", "").isalnum() or not key.isascii():
        return f"smaps field name {key[:40]!r} is not a word"
    if len(values) == 2 and values[1] == "kB" or len(values) == 1:
        got = decimal_field(values[0], f"smaps field {key!r} value")
        if isinstance(got, str):
            return got
        if entry.smaps is None:
            entry.smaps = {}
        entry.smaps[key] = got
        return None
    return f"smaps field {key!r} should be 'number kB' or 'number'"

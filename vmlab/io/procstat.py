"""FreeBSD ``procstat -v`` (``procstat vm``) text and ``procstat --libxo json vm``.

Text layout (usr.bin/procstat/procstat_vm.c, procstat_vm(); ptrwidth = 18 on 64-bit)::

      PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH
     1234           0x400000           0x500000 r--    1    1   1   0 CN--- vn /tmp/carrick

Variants accepted, all in the same parser:

- FLAG of 2 (``CN``, FreeBSD 7-9), 4 (``CN-D``, before the W column) or 5 letters
  (``C N S U/D W``, FreeBSD 12+), and CheriBSD's 6 (``G`` for guard in the C column, trailing
  ``c`` = may hold capabilities). Letters are read by meaning, not position.
- PRT of 3 letters, or CheriBSD's 5 (``r--R-``: capability read/write).
- CheriBSD's verbose RESERV column after END, ``-`` as PID, ``sysvshm(...)``/``posixshm@``
  prefixes on PATH (kept as printed, with a flag).
- TP codes ``--`` ``df`` ``vn`` ``sw`` ``dv`` ``ph`` ``dd`` ``sg`` ``md`` ``gd`` ``qu`` ``??``.

The JSON form has ``kve_start``/``kve_end`` (``%#jx``), ``kve_protection{read,write,exec}``,
counts, ``kve_flags{copy_on_write,needs_copy,super_pages,grows_up,grows_down,wired}``,
``kve_type`` as a long name and ``kve_path``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from vmlab.core.constants import VM_PROT

from .model import (
    ADDRESS_LIMIT,
    ImportedEntry,
    ImportedMap,
    ParseIssue,
    decimal_field,
    json_error,
)

__all__ = ["parse_procstat", "parse_procstat_json"]

#: TP code → kve_type long name (procstat_vm.c's str/lstr pairs).
TP_NAMES = {
    "--": "none",
    "df": "default",
    "vn": "vnode",
    "sw": "swap",
    "dv": "device",
    "ph": "physical",
    "dd": "dead",
    "sg": "scatter/gather",
    "md": "managed_device",
    "gd": "guard",
    "qu": "quarantined",
    "??": "unknown",
}

_FLAG_LETTERS = {
    "C": "cow",
    "G": "guard",
    "N": "needs_copy",
    "S": "superpages",
    "U": "grows_up",
    "D": "grows_down",
    "W": "wired",
    "c": "hascap",
}

_JSON_FLAGS = {
    "copy_on_write": "cow",
    "needs_copy": "needs_copy",
    "super_pages": "superpages",
    "grows_up": "grows_up",
    "grows_down": "grows_down",
    "wired": "wired",
    "is_guard": "guard",
    "is_unmapped": "unmapped",
    "sysvshm": "sysvshm",
    "hascap": "hascap",
}

_HEX = "0123456789abcdefABCDEF"
_FIELDS = "PID START END PRT RES PRES REF SHD FLAG TP [PATH]"


def _addr(tok: str) -> int | None:
    """``%#jx`` → int (C prints zero as plain ``0``); None if it is not that."""
    if tok == "0":
        return 0
    if len(tok) > 2 and tok[0] == "0" and tok[1] in "xX" and not tok[2:].strip(_HEX):
        return int(tok[2:], 16)
    return None


def _prot(prt: str) -> tuple[int, frozenset[str]] | None:
    """PRT column → (VM_PROT bits, CheriBSD capability flags)."""
    if len(prt) not in (3, 5):
        return None
    r, w, x = prt[0], prt[1], prt[2]
    if r not in "r-" or w not in "w-" or x not in "x-":
        return None
    extra: set[str] = set()
    if len(prt) == 5:
        if prt[3] not in "R-" or prt[4] not in "W-":
            return None
        if prt[3] == "R":
            extra.add("read_cap")
        if prt[4] == "W":
            extra.add("write_cap")
    p = (VM_PROT.READ if r == "r" else 0) | (VM_PROT.WRITE if w == "w" else 0)
    p |= VM_PROT.EXECUTE if x == "x" else 0
    return int(p), frozenset(extra)




def _parse_row(line: str, no: int) -> ImportedEntry | str:
    head = line.split(None, 3)
    if len(head) < 4:
        return f"expected {_FIELDS}, found {len(head)} field{'s' if len(head) != 1 else ''}"
    pid_t, start_t, end_t, rest = head
    if pid_t == "-":
        pid = None
    else:
        got = decimal_field(pid_t, "PID")
        if isinstance(got, str):
            return f"{got} (expected {_FIELDS})"
        pid = got
    start, end = _addr(start_t), _addr(end_t)
    if start is None or end is None:
        bad = start_t if start is None else end_t
        return f"address {bad[:40]!r} is not 0x-prefixed hex"
    if start >= ADDRESS_LIMIT or end >= ADDRESS_LIMIT:
        return f"address range {start_t[:40]}-{end_t[:40]} does not fit in 64 bits"
    if start >= end:
        return f"empty or reversed range {start:#x}-{end:#x} (START must be below END)"
    if rest.startswith("0x"):  # CheriBSD -v: RESERV column
        rest = rest.split(None, 1)[1] if " " in rest else ""
    cols = rest.split(None, 6)
    if len(cols) < 7:
        return f"expected {_FIELDS}, found {len(cols) + 3} fields"
    prt, res_t, pres_t, ref_t, shd_t, flag_t, tail = cols
    pv = _prot(prt)
    if pv is None:
        return f"PRT {prt[:12]!r} is not 'rwx' letters (3, or 5 on CheriBSD)"
    counts: list[int] = []
    for name, tok in zip(("RES", "PRES", "REF", "SHD"), (res_t, pres_t, ref_t, shd_t),
                         strict=True):
        got = decimal_field(tok, name)
        if isinstance(got, str):
            return got
        counts.append(got)
    if not 2 <= len(flag_t) <= 6:
        return f"FLAG {flag_t[:12]!r} should be 2 to 6 letters like 'CN---'"
    flags = set(pv[1])
    for ch in flag_t:
        if ch == "-":
            continue
        name = _FLAG_LETTERS.get(ch)
        if name is None:
            return f"FLAG {flag_t!r} has unknown letter {ch!r}"
        flags.add(name)
    tp_t, _, path = tail.partition(" ")
    kind = TP_NAMES.get(tp_t)
    if kind is None:
        return f"TP {tp_t[:12]!r} is not a procstat object type ({' '.join(TP_NAMES)})"
    path = path.lstrip(" ")
    if path.startswith("sysvshm("):
        flags.add("sysvshm")
    elif path.startswith("posixshm@"):
        flags.add("posixshm")
    if kind == "guard":
        flags.add("guard")
    return ImportedEntry(
        start=start,
        end=end,
        protection=pv[0],
        prot_text=prt,
        path=path,
        type=kind,
        flags=frozenset(flags),
        pid=pid,
        resident=counts[0],
        private_resident=counts[1],
        ref_count=counts[2],
        shadow_count=counts[3],
        source="procstat",
        line_no=no,
        last_line=no,
    )


def parse_procstat(text: str, source_name: str = "") -> ImportedMap:
    """Parse ``procstat -v`` text (the output of procstat_vm(), usr.bin/procstat/procstat_vm.c).

    The header line (``PID START END ...``) and blank lines are skipped and listed; every other
    line is a mapping or a `ParseIssue`. Rows of a second PID are rejected: an ImportedMap is
    one address space (run ``procstat -v`` once per process).
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    entries: list[ImportedEntry] = []
    issues: list[ParseIssue] = []
    skipped: list[tuple[int, str]] = []
    map_pid: int | None = None
    seen_pid = False
    for no, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        stripped = line.strip()
        if not stripped:
            skipped.append((no, "blank"))
            continue
        if stripped.startswith("PID") and "START" in stripped:
            skipped.append((no, "header"))
            continue
        got = _parse_row(line, no)
        if isinstance(got, str):
            issues.append(ParseIssue(no, got, line[:200]))
            continue
        # CheriBSD prints "-" (kve_pid 0) for entries of a colocated address space: same map.
        if got.pid is not None and not seen_pid:
            map_pid, seen_pid = got.pid, True
        elif got.pid is not None and got.pid != map_pid:
            issues.append(
                ParseIssue(
                    no,
                    f"row of PID {got.pid}, but this map is PID {map_pid} "
                    "(import one process at a time)",
                    line[:200],
                )
            )
            continue
        entries.append(got)
    return ImportedMap(entries, issues, "procstat", source_name, map_pid, len(lines),
                       skipped).finish()


# --- libxo JSON ------------------------------------------------------------------------------

# libxo may emit %#jx values unquoted (0x1000), which is not JSON; quote them before parsing.
_BARE_HEX = re.compile(r'(?<=[:\[,])(\s*)(0x[0-9a-fA-F]+)(?=\s*[,}\]])')


def _jpid(v: Any) -> int | None:
    """A libxo ``process_id`` (number or decimal string), None when it is not one."""
    if isinstance(v, str):
        v = decimal_field(v.strip(), "process_id")
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < ADDRESS_LIMIT:
        return v
    return None


def _walk(node: Any, pid: int | None) -> Iterator[tuple[dict[str, Any], int | None]]:
    """Every dict that looks like a kinfo_vmentry, in document order, with its process_id.

    Iterative (a stack of iterators, not recursion): a document nested as deeply as the JSON
    decoder allows must not exhaust Python's recursion limit here.
    """
    stack: list[tuple[Iterator[Any], int | None]] = [(iter((node,)), pid)]
    while stack:
        it, cur = stack[-1]
        for v in it:
            if isinstance(v, dict):
                if "kve_start" in v or "kve_end" in v:
                    yield v, cur
                    continue
                p = _jpid(v["process_id"]) if "process_id" in v else None
                stack.append((iter(v.values()), cur if p is None else p))
                break
            if isinstance(v, list):
                stack.append((iter(v), cur))
                break
        else:
            stack.pop()


def _jint(v: Any, what: str) -> int | str:
    """A libxo number (JSON number, decimal string or ``0x`` hex string) → int, or why not."""
    if isinstance(v, bool):
        return f"{what} is not a number"
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        v = v.strip()
        if v[:2] in ("0x", "0X"):
            if v[2:] and not v[2:].strip(_HEX):
                return int(v[2:], 16)  # base 16 has no digit limit in CPython
            return f"{what} {v[:24]!r} is not hex"
        if v.isascii() and v.isdigit():
            return decimal_field(v, what)
    return f"{what} is not a number"


def _short(v: int) -> str:
    """A number for a message: in full when small, else its sign and size in bits."""
    if -(1 << 80) < v < 1 << 80:
        return f"{v:#x}" if v >= 0 else str(v)
    return f"{'-' if v < 0 else ''}(a {abs(v).bit_length()}-bit number)"


def _jbool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    return None


def _json_entry(d: dict[str, Any], pid: int | None, no: int) -> ImportedEntry | str:
    if "kve_start" not in d or "kve_end" not in d:
        return "kve_start/kve_end missing"
    start, end = _jint(d["kve_start"], "kve_start"), _jint(d["kve_end"], "kve_end")
    if isinstance(start, str):
        return start
    if isinstance(end, str):
        return end
    for key, v in (("kve_start", start), ("kve_end", end)):
        if not 0 <= v < ADDRESS_LIMIT:
            return f"{key} {_short(v)} does not fit in 64 bits"
    if start >= end:
        return f"empty or reversed range {start:#x}-{end:#x}"
    prot_d = d.get("kve_protection", {})
    if not isinstance(prot_d, dict):
        return "kve_protection is not an object"
    prot = 0
    text = ""
    for key, bit, letter in (("read", 1, "r"), ("write", 2, "w"), ("exec", 4, "x")):
        b = _jbool(prot_d.get(key, False))
        if b is None:
            return f"kve_protection.{key} is not true/false"
        prot |= bit if b else 0
        text += letter if b else "-"
    flags: set[str] = set()
    for key, bit in (("read_cap", "read_cap"), ("write_cap", "write_cap")):
        if _jbool(prot_d.get(key)):
            flags.add(bit)
    flag_d = d.get("kve_flags", {})
    if not isinstance(flag_d, dict):
        return "kve_flags is not an object"
    for key, val in flag_d.items():
        b = _jbool(val)
        if b is None:
            return f"kve_flags.{key} is not true/false"
        if b and key in _JSON_FLAGS:
            flags.add(_JSON_FLAGS[key])
    counts = {}
    for key in ("kve_resident", "kve_private_resident", "kve_ref_count", "kve_shadow_count"):
        if key in d:
            v = _jint(d[key], key)
            if isinstance(v, str):
                return v
            if not 0 <= v < ADDRESS_LIMIT:
                return f"{key} {_short(v)} does not fit in 64 bits"
            counts[key] = v
    kind = d.get("kve_type", "none")
    if not isinstance(kind, str):
        return "kve_type is not a string"
    if kind == "guard":
        flags.add("guard")
    path = d.get("kve_path", "")
    if not isinstance(path, str):
        return "kve_path is not a string"
    return ImportedEntry(
        start=start,
        end=end,
        protection=prot,
        prot_text=text,
        path=path,
        type=kind,
        flags=frozenset(flags),
        pid=pid,
        resident=counts.get("kve_resident"),
        private_resident=counts.get("kve_private_resident"),
        ref_count=counts.get("kve_ref_count"),
        shadow_count=counts.get("kve_shadow_count"),
        source="procstat-json",
        line_no=no,
        last_line=no,
    )


def _snippet(d: Any) -> str:
    """The start of a JSON object for a ParseIssue; never raises (deep or odd values)."""
    try:
        return json.dumps(d)[:200]
    except (ValueError, TypeError, RecursionError):
        return "{...}"


def parse_procstat_json(text: str, source_name: str = "") -> ImportedMap:
    """Parse ``procstat --libxo json vm PID`` (procstat_vm()'s libxo fields).

    Each object with ``kve_start`` is one mapping; its line number is the line of its
    ``kve_start`` key. A JSON syntax error is one issue at the decoder's line. Accounting is
    per mapping object, not per line (JSON may put everything on one line).
    """
    line_count = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    issues: list[ParseIssue] = []
    err: BaseException | None = None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        err = exc  # the first error is the one to report (line numbers of the text as given)
        if not isinstance(exc, RecursionError):
            try:
                doc = json.loads(_BARE_HEX.sub(r'\1"\2"', text))
                err = None
            except (ValueError, RecursionError):
                pass
    if err is not None:
        ln, reason = json_error(err, text)
        bad = text.split("\n", ln)[ln - 1][:200] if text else ""
        issues.append(ParseIssue(ln, reason, bad))
        return ImportedMap([], issues, "procstat-json", source_name, None, line_count)
    # Line of each "kve_start" key, in document order (json keeps that order).
    starts = [m.start() for m in re.finditer(r'"kve_start"', text)]
    line_of = []
    if starts:
        nl_before = 0
        pos = 0
        for s in starts:
            nl_before += text.count("\n", pos, s)
            pos = s
            line_of.append(nl_before + 1)
    entries: list[ImportedEntry] = []
    pids: set[int | None] = set()
    found = 0
    map_pid = None
    for i, (d, pid) in enumerate(_walk(doc, None)):
        found += 1
        no = line_of[i] if i < len(line_of) else 1
        got = _json_entry(d, pid, no)
        if isinstance(got, str):
            issues.append(ParseIssue(no, got, _snippet(d)))
            continue
        if not pids:
            map_pid = pid
        pids.add(pid)
        if pid != map_pid:
            issues.append(ParseIssue(no, f"mapping of PID {pid}, but this map is PID {map_pid} "
                                     "(import one process at a time)", _snippet(d)))
            continue
        entries.append(got)
    if not found:
        issues.append(ParseIssue(1, "no procstat vm entries (objects with kve_start) found"))
    return ImportedMap(entries, issues, "procstat-json", source_name, map_pid, line_count).finish()

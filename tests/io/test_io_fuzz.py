"""Hypothesis: bad input never crashes an importer and is never dropped silently."""

from __future__ import annotations

import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iohelpers import assert_accounted

from vmlab.io import (
    FORMATS,
    MAX_DECIMAL_DIGITS,
    UnknownFormatError,
    import_text,
    parse_linux_maps,
    parse_procstat,
    parse_procstat_json,
    parse_qemu_info_mem,
)

#: CPython's int() limit on decimal digits (0 = no limit, before Python 3.11).
_INT_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 1 << 60)() or 1 << 60

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

PAGE = 0x1000


def linux_line(start: int, end: int, perms: str, path: str) -> str:
    head = f"{start:08x}-{end:08x} {perms} 00000000 00:00 0 "
    return head + (" " * max(0, 73 - len(head)) + path if path else "")


def procstat_line(start: int, end: int, prot: str, flags: str, tp: str, path: str) -> str:
    return f"  123 {start:#18x} {end:#18x} {prot}    1    1   1   0 {flags} {tp} {path}"


valid_ranges = st.lists(
    st.tuples(st.integers(1, 2**20), st.integers(1, 64)), min_size=1, max_size=12
).map(
    # Turn (gap, length) pairs in pages into sorted, non-overlapping ranges.
    lambda pairs: [
        (s * PAGE, (s + n) * PAGE)
        for s, n in zip(
            [sum(g + n for g, n in pairs[:i]) + pairs[i][0] for i in range(len(pairs))],
            [n for _, n in pairs],
            strict=True,
        )
    ]
)

path_chars = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    max_size=30,
)
# Not representable in maps: a literal "\012" reads back as a newline (linux.py says why).
safe_path = path_chars.filter(lambda p: p == p.strip() and not p.endswith(" (deleted)")
                              and "\\012" not in p).map(
    lambda p: "/" + p if p else p
)


def mutate(line: str, how: int, junk: str) -> str:
    """A broken version of a valid line: truncated, fields dropped/doubled, junk, huge, reversed."""
    parts = line.split()
    if how == 0:
        return line[: max(1, len(line) // 3)]
    if how == 1:
        return " ".join(parts[:2])
    if how == 2:
        return junk
    if how == 3:
        return "f" * 40 + "-" + "f" * 41 + " " + " ".join(parts[1:])
    if how == 4:  # reversed range
        a, _, b = parts[0].partition("-")
        return f"{b}-{a} " + " ".join(parts[1:])
    return "\x00\x01\x7f" + line[::-1]


@SETTINGS
@given(
    ranges=valid_ranges,
    perms=st.lists(st.sampled_from(["r-xp", "rw-s", "---p", "r--p"]), min_size=12, max_size=12),
    paths=st.lists(safe_path, min_size=12, max_size=12),
    bad=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 5), st.text(max_size=60)), max_size=6
    ),
)
def test_linux_roundtrip_with_bad_lines(ranges, perms, paths, bad):
    good = [linux_line(s, e, perms[i], paths[i]) for i, (s, e) in enumerate(ranges)]
    lines = list(good)
    bad_positions = []
    for pos, how, junk in bad:
        victim = good[pos % len(good)]
        broken = mutate(victim, how, junk)
        if not broken.strip() or "\n" in broken or "\r" in broken:
            continue
        if broken.split()[0].endswith(":"):
            # "Key: ..." is an smaps detail line: an issue alone, but after another rejected
            # line it is that line's (skipped) detail, so the expected count depends on order.
            continue
        if parse_linux_maps(broken).issues == []:  # e.g. junk that happens to be valid or blank
            continue
        at = pos % (len(lines) + 1)
        lines.insert(at, broken)
        bad_positions = [p + 1 if p >= at else p for p in bad_positions] + [at]
    m = parse_linux_maps("\n".join(lines) + "\n")
    assert_accounted(m)
    assert sorted(i.line_no for i in m.issues) == sorted(p + 1 for p in bad_positions)
    assert [(e.start, e.end, e.prot_text, e.path) for e in m] == [
        (s, e, perms[i], paths[i]) for i, (s, e) in enumerate(ranges)
    ]


@SETTINGS
@given(
    ranges=valid_ranges,
    flags=st.lists(st.sampled_from(["-----", "CN---", "---D-", "CN--", "CN", "C---W"]),
                   min_size=12, max_size=12),
    tps=st.lists(st.sampled_from(["vn", "sw", "df", "--", "ph", "gd"]), min_size=12, max_size=12),
    paths=st.lists(safe_path, min_size=12, max_size=12),
    bad=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 5), st.text(max_size=60)), max_size=6
    ),
)
def test_procstat_roundtrip_with_bad_lines(ranges, flags, tps, paths, bad):
    good = [procstat_line(s, e, "rw-", flags[i], tps[i], paths[i]) for i, (s, e) in
            enumerate(ranges)]
    lines = ["  PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH"]
    lines += good
    n_bad = 0
    for pos, how, junk in bad:
        broken = mutate(good[pos % len(good)], how, junk)
        if "\n" in broken or "\r" in broken or not broken.strip():
            continue
        if parse_procstat(broken).issues == []:
            continue
        lines.insert(1 + pos % len(lines), broken)
        n_bad += 1
    m = parse_procstat("\n".join(lines))
    assert_accounted(m)
    assert len(m.issues) == n_bad
    assert [(e.start, e.end, e.path) for e in m] == [
        (s, e, paths[i]) for i, (s, e) in enumerate(ranges)
    ]


junk_text = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.lists(
        st.sampled_from([
            "00400000-00452000 r-xp 00000000 08:02 173521 /bin/x",
            "Size: 4 kB", "VmFlags: rd wr", "  1 0x1000 0x2000 r-- 1 1 1 0 ----- vn /a",
            "0000000000400000-0000000000401000 0000000000001000 ur-", "PG disabled", "",
            "ffffffffffffffffffff-0 r--p 0 0:0 0", "99999999999999999999999", "{", "}",
            # decimal fields past CPython's int() limit of 4,300 digits
            "00400000-00452000 r-xp 00000000 08:02 " + "9" * 5000 + " /x", "Rss: " + "7" * 4301
            + " kB", "  " + "1" * 4400 + " 0x1000 0x2000 r-- 1 1 1 0 ----- vn /a",
            "  1 0x1000 0x2000 r-- " + "5" * 9000 + " 1 1 0 ----- vn /a", "[" * 3000,
        ]),
        max_size=30,
    ).map("\n".join),
)


@SETTINGS
@given(text=junk_text)
def test_any_text_any_parser_never_crashes(text):
    for parser in (parse_linux_maps, parse_procstat, parse_qemu_info_mem):
        m = parser(text)
        assert_accounted(m)
    j = parse_procstat_json(text)
    assert j.issues or j.entries  # JSON: no entries always means an issue
    for fmt in ("auto", *FORMATS):
        try:
            m = import_text(text, fmt)
        except UnknownFormatError:
            assert fmt == "auto"
            continue
        if m.format != "procstat-json":
            assert_accounted(m)
        else:
            assert m.entries or m.issues
        snap = m.to_snapshot()
        assert snap.nentries == len(m)


# --- huge decimal fields and deeply nested JSON --------------------------------------------

#: Decimal field lengths around the 20-digit cap and CPython's 4,300-digit int() limit.
huge_digits = st.one_of(
    st.sampled_from([MAX_DECIMAL_DIGITS + 1, 4300, 4301, 5000, 20000]),
    st.integers(MAX_DECIMAL_DIGITS + 1, 12000),
)
digit = st.sampled_from("0123456789")

LINUX_OK = "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/x"
PROCSTAT_OK = "  123           0x400000           0x401000 r-x    1    1   1   0 CN--- vn /bin/x"


def _assert_one_digit_issue(m, line_no: int, n: int) -> None:
    """Exactly one issue, on ``line_no``, saying how many digits the field had."""
    assert [i.line_no for i in m.issues] == [line_no], m.issues
    assert f"{n} digits" in m.issues[0].reason, m.issues[0].reason


@SETTINGS
@given(n=huge_digits, d=digit, where=st.sampled_from(["inode", "smaps", "vmflags-line"]))
def test_linux_huge_decimal_fields_are_line_issues(n, d, where):
    big = d * n
    if where == "inode":
        text = f"{LINUX_OK}\n00500000-00501000 rw-p 00000000 08:02 {big} /y\n"
        bad = 2
    else:
        text = f"{LINUX_OK}\nSize: 4 kB\nRss: {big} kB\nVmFlags: rd ex\n"
        bad = 3
    for fmt in ("auto", "linux"):
        m = import_text(text, fmt)
        assert_accounted(m)
        _assert_one_digit_issue(m, bad, n)
        assert m.entries[0].path == "/usr/bin/x"


@SETTINGS
@given(n=huge_digits, d=digit, col=st.integers(0, 4))
def test_procstat_huge_decimal_fields_are_line_issues(n, d, col):
    # columns: PID RES PRES REF SHD
    parts = PROCSTAT_OK.split()
    idx = [0, 4, 5, 6, 7][col]
    parts[idx] = d * n
    text = PROCSTAT_OK + "\n  " + " ".join(parts) + "\n"
    for fmt in ("auto", "procstat"):
        m = import_text(text, fmt)
        assert_accounted(m)
        _assert_one_digit_issue(m, 2, n)
        assert len(m) == 1


@SETTINGS
@given(n=huge_digits, d=digit,
       key=st.sampled_from(["kve_resident", "kve_private_resident", "kve_ref_count",
                            "kve_shadow_count", "kve_start", "kve_end", "process_id"]),
       literal=st.booleans())
def test_procstat_json_huge_numbers_are_issues(n, d, key, literal):
    big = ("1" if literal else d) + d * (n - 1)  # a JSON number cannot start with 0
    value = big if literal else f'"{big}"'
    good = '{"kve_start": "0x1000", "kve_end": "0x2000", "kve_resident": "1"}'
    if key == "process_id":
        bad = f'{{"process_id": {value}, "vm": [{{"kve_start": "0x3000", "kve_end": "0x4000"}}]}}'
    else:
        fields = {"kve_start": '"0x3000"', "kve_end": '"0x4000"', key: value}
        bad = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    text = f'{{"procstat": {{"vm": [\n{good},\n{bad}\n]}}}}'
    m = import_text(text, "procstat-json")
    if literal and len(big) > _INT_DIGITS:
        # The decoder itself refuses the number: one issue for the document, at its line.
        assert m.entries == [] and [i.line_no for i in m.issues] == [3]
        assert f"a number of {n} digits" in m.issues[0].reason
    elif key == "process_id":
        # Not a process id: the mappings are kept, without a PID (nothing else depends on it).
        assert m.issues == [] and len(m) == 2 and m.pid is None
    elif literal:
        reason = m.issues[0].reason
        assert len(m) == 1 and [i.line_no for i in m.issues] == [3]
        assert reason.startswith(f"{key} ") and reason.endswith(" does not fit in 64 bits")
        assert len(reason) < 80  # the number is summarised, not printed in full
    else:
        assert len(m) == 1 and [i.line_no for i in m.issues] == [3]
        assert f"{n} digits" in m.issues[0].reason


@SETTINGS
@given(depth=st.one_of(st.integers(1, 3000), st.sampled_from([990, 1000, 5000, 100000])),
       opener=st.sampled_from(["[", '{"a":', '{"vm":[']), closed=st.booleans())
def test_deeply_nested_json_is_one_issue(depth, opener, closed):
    closer = {"[": "]", '{"a":': "}", '{"vm":[': "]}"}[opener]
    text = opener * depth + ('{"kve_start": "0x1000", "kve_end": "0x2000"}' + closer * depth
                             if closed else "")
    for fmt in ("auto", "procstat-json"):
        m = import_text(text, fmt)
        if m.issues:
            assert m.entries == [] and len(m.issues) == 1 and m.issues[0].line_no == 1
            assert m.issues[0].reason.startswith("not valid JSON"), m.issues[0].reason
        else:
            # shallow enough for the decoder: the one mapping is found at any depth
            assert closed and [(e.start, e.end) for e in m] == [(0x1000, 0x2000)]

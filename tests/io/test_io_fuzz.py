"""Hypothesis: bad input never crashes an importer and is never dropped silently."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iohelpers import assert_accounted

from vmlab.io import (
    FORMATS,
    UnknownFormatError,
    import_text,
    parse_linux_maps,
    parse_procstat,
    parse_procstat_json,
    parse_qemu_info_mem,
)

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
safe_path = path_chars.filter(lambda p: p == p.strip() and not p.endswith(" (deleted)")).map(
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

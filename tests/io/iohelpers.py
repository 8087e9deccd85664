"""Shared helpers for the importer tests (imported by name: pytest puts tests/io on sys.path)."""

from __future__ import annotations

from pathlib import Path

from vmlab.io import ImportedMap

FIXTURES = Path(__file__).parent / "fixtures"


def covered_lines(m: ImportedMap) -> set[int]:
    """Line numbers the import accounted for: entries (with smaps details), skipped, issues."""
    out: set[int] = set()
    for e in m.entries:
        out.update(range(e.line_no, e.last_line + 1))
    out.update(n for n, _ in m.skipped)
    out.update(i.line_no for i in m.issues)
    return out


def assert_accounted(m: ImportedMap) -> None:
    """Nothing dropped silently: every input line is an entry, a skipped line or an issue."""
    assert covered_lines(m) == set(range(1, m.line_count + 1))
    for i in m.issues:
        assert 1 <= i.line_no <= max(m.line_count, 1)
        assert i.reason
    starts = [e.start for e in m.entries]
    assert starts == sorted(starts)
    for a, b in zip(m.entries, m.entries[1:], strict=False):
        assert a.end <= b.start
    for e in m.entries:
        assert 0 <= e.start < e.end < 1 << 64 or e.end == (1 << 64) - 1


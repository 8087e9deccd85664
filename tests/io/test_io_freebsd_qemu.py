from __future__ import annotations

import pytest
from iohelpers import FIXTURES, assert_accounted

from vmlab.core.constants import (
    MAP_ENTRY,
    SHAREDPAGE_LA48,
    USRSTACK,
    VM_INHERIT,
    VM_MAXUSER_ADDRESS_LA48,
    VM_PROT,
)
from vmlab.io import (
    detect_format,
    import_file,
    import_text,
    load_sample,
    parse_procstat,
    parse_procstat_json,
    parse_qemu_info_mem,
    sample_path,
)


def test_sample_text_and_json_agree():
    txt = load_sample("freebsd14-hello")
    js = load_sample("freebsd14-hello-json")
    assert txt.format == "procstat" and js.format == "procstat-json"
    assert txt.issues == [] and js.issues == []
    assert txt.pid == js.pid == 4711
    assert_accounted(txt)
    assert len(txt) == len(js) == 19
    keys = ("start", "end", "protection", "type", "path", "flags", "resident",
            "private_resident", "ref_count", "shadow_count")
    for a, b in zip(txt, js, strict=True):
        assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}


def test_sample_layout_is_freebsd14_amd64():
    m = load_sample()
    assert m.skipped == [(1, "header")]
    text = m.entries[0]
    assert (text.start, text.end, text.path) == (0x200000, 0x201000, "/home/student/hello")
    assert text.flags == {"cow", "needs_copy"} and text.type == "vnode" and text.tp == "vn"
    shared_page = m.entries[-1]
    assert (shared_page.start, shared_page.end) == (SHAREDPAGE_LA48, VM_MAXUSER_ADDRESS_LA48)
    assert shared_page.type == "physical" and shared_page.protection == VM_PROT.READ | 4
    stack = m.entries[-2]
    assert stack.end == USRSTACK and stack.size == 0x20000 and stack.flags == {"grows_down"}
    gap = m.entries[-3]
    assert gap.type == "guard" and gap.end == stack.start and gap.start == USRSTACK - (512 << 20)
    assert any(e.path == "/lib/libc.so.7" and e.protection == 5 for e in m)


def test_old_4_letter_and_2_letter_flags():
    m = import_file(FIXTURES / "procstat_old4.txt")
    assert m.issues == [] and len(m) == 3
    libc = m.entries[0]
    assert libc.start == 0x20A9757A000 and libc.resident == 336 and libc.private_resident == 356
    assert libc.ref_count == 55 and libc.shadow_count == 26 and libc.flags == {"cow", "needs_copy"}
    assert m.entries[1].type == "default" and m.entries[1].path == ""
    assert m.entries[2].flags == {"grows_down"}
    m2 = import_file(FIXTURES / "procstat_2letter.txt")
    assert m2.issues == [] and [e.flags for e in m2] == [{"cow", "needs_copy"}, {"cow"}, set()]


def test_cheribsd_wide_columns():
    m = import_file(FIXTURES / "procstat_cheri.txt")
    assert m.issues == [], m.issues
    true, heap, guard, quar, shm = m.entries
    assert true.prot_text == "r--R-" and true.protection == VM_PROT.READ
    assert "read_cap" in true.flags and "write_cap" not in true.flags
    assert {"read_cap", "write_cap", "hascap"} <= heap.flags
    assert "guard" in guard.flags and guard.type == "guard"
    assert quar.type == "quarantined"
    assert shm.pid is None and shm.path == "sysvshm(42:7)" and "sysvshm" in shm.flags


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (" 4711 0x1000 0x2000 r-- 1 1 1 0 ----- zz", "TP 'zz'"),
        (" 4711 0x1000 0x2000 r-- 1 1 1 0 --Q-- vn /x", "unknown letter 'Q'"),
        (" 4711 0x1000 0x2000 rwxq 1 1 1 0 ----- vn /x", "PRT"),
        (" 4711 0x1000 0x2000 r-- x 1 1 0 ----- vn /x", "RES 'x'"),
        (" 4711 0x2000 0x1000 r-- 1 1 1 0 ----- vn /x", "reversed"),
        (" 4711 1000 0x2000 r-- 1 1 1 0 ----- vn /x", "0x-prefixed"),
        (" 4711 0x1000 0x2000 r-- 1 1", "found"),
        ("procstat: sysctl: kern.proc.pid: 9: No such process", "PID"),
        (" 4712 0x3000 0x4000 r-- 1 1 1 0 ----- vn /x", "PID 4712, but this map is PID 4711"),
        (" 4711 0x" + "f" * 17 + " 0x" + "f" * 18 + " r-- 1 1 1 0 ----- vn /x", "64 bits"),
    ],
)
def test_procstat_bad_rows(row, reason):
    text = " 4711 0x5000 0x6000 r-- 1 1 1 0 ----- vn /ok\n" + row + "\n"
    m = parse_procstat(text)
    assert len(m) == 1 and len(m.issues) == 1
    assert m.issues[0].line_no == 2 and reason in m.issues[0].reason, m.issues[0].reason


def test_procstat_json_bare_hex_and_string_booleans():
    m = import_file(FIXTURES / "procstat_bare_hex.json")
    assert m.format == "procstat-json" and m.issues == [] and m.pid == 77
    sh, stack = m.entries
    assert (sh.start, sh.end, sh.line_no) == (0x400000, 0x401000, 2)
    assert sh.protection == VM_PROT.READ | VM_PROT.EXECUTE and sh.flags == {"cow", "needs_copy"}
    assert stack.protection == VM_PROT.RW and stack.flags == {"grows_down"} and stack.line_no == 3


def test_procstat_json_errors():
    bad = parse_procstat_json('{"procstat": {"vm": [\n{"kve_start": "0x10"\n')
    assert len(bad.issues) == 1 and bad.issues[0].reason.startswith("not valid JSON")
    assert bad.issues[0].line_no >= 2
    none = parse_procstat_json('{"procstat": {}}')
    assert none.issues[0].reason.startswith("no procstat vm entries")
    rev = parse_procstat_json('[{"kve_start": "0x2000", "kve_end": "0x1000"}]')
    assert "reversed" in rev.issues[0].reason and len(rev) == 0


def test_qemu_info_mem():
    m = import_file(FIXTURES / "qemu_info_mem.txt")
    assert m.format == "qemu" and m.issues == []
    assert m.skipped == [(1, "monitor prompt")]
    assert [(e.start, e.end) for e in m] == [
        (0x400000, 0x401000),
        (0xC0000000, 0xC009B000),
        (0xC009B000, 0xC009D000),
        (0xFFFF800000000000, 0xFFFF800000200000),  # kernel range kept
    ]
    user = m.entries[0]
    assert user.flags == {"user"} and user.protection == VM_PROT.READ  # never EXECUTE: no X column
    assert m.entries[1].protection == VM_PROT.RW and m.entries[1].flags == set()
    bad = parse_qemu_info_mem(
        "0000000000400000-0000000000401000 0000000000002000 ur-\nPG disabled\n"
    )
    assert "does not match" in bad.issues[0].reason and bad.skipped == [(2, "paging disabled")]


def test_detect():
    assert detect_format((FIXTURES / "linux_edge.maps").read_text()) == "linux"
    assert detect_format((FIXTURES / "linux_sample.smaps").read_text()) == "linux"
    assert detect_format(sample_path("freebsd14-hello").read_text()) == "procstat"
    assert detect_format(sample_path("freebsd14-hello-json").read_text()) == "procstat-json"
    assert detect_format((FIXTURES / "qemu_info_mem.txt").read_text()) == "qemu"
    assert detect_format("hello world\n") is None
    with pytest.raises(ValueError, match="cannot tell the format"):
        import_text("hello\n")
    with pytest.raises(ValueError, match="unknown format"):
        import_text("x", format="windows")


def test_snapshot_of_sample():
    m = load_sample()
    snap = m.to_snapshot()
    ents = snap.entries
    n = len(m)
    assert snap.nentries == n and list(ents["id"]) == list(range(n))
    assert (ents["left"] == -1).all() and (ents["right"] == -1).all() and snap.root == -1
    assert snap.min == 0 and snap.max == VM_MAXUSER_ADDRESS_LA48
    assert [int(s) for s in ents["start"]] == [e.start for e in m]
    # Gaps the overview draws are exactly the holes between imported entries.
    holes = [(a.end, b.start) for a, b in zip(m.entries, m.entries[1:], strict=False)
             if a.end < b.start]
    assert snap.gaps() == [(0, 0x200000), *holes]
    stack = n - 2
    assert ents["eflags"][stack] == MAP_ENTRY.GROWS_DOWN
    assert ents["eflags"][n - 3] == MAP_ENTRY.GUARD and ents["object"][n - 3] == -1
    assert ents["eflags"][0] == MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY
    assert ents["inheritance"][0] == VM_INHERIT.COPY
    # Text segments of the same file share one object; anonymous entries each have their own.
    assert ents["object"][0] == ents["object"][1] == ents["object"][3]
    assert ents["object"][4] != ents["object"][9]
    assert snap.size == sum(e.size for e in m if e.type != "guard")
    # Leaf max_free: larger adjacent gap. Entry 4 ([0x204000,0x205000)) sits before the big hole.
    assert int(ents["max_free"][4]) == 0x28B5C8E2E000 - 0x205000
    assert int(ents["max_free"][0]) == 0x200000
    rows = m.rows()
    assert rows[0]["id"] == 0 and rows[0]["path"] == "/home/student/hello"
    assert rows[-1]["type"] == "physical" and rows[-1]["tp"] == "ph"


def test_snapshot_keeps_vsyscall_and_shared_inheritance():
    m = import_file(FIXTURES / "linux_edge.maps")
    snap = m.to_snapshot()
    assert snap.max == 0xFFFFFFFFFF601000
    assert int(snap.entries["start"][-1]) == 0xFFFFFFFFFF600000
    shared = [i for i, e in enumerate(m) if e.shared][0]
    assert snap.entries["inheritance"][shared] == VM_INHERIT.SHARE
    # A private file mapping is COW in FreeBSD terms (vm_mmap_object); private anon is not.
    assert snap.entries["eflags"][0] & MAP_ENTRY.COW
    heap = [i for i, e in enumerate(m) if e.type == "heap"][0]
    assert not snap.entries["eflags"][heap] & MAP_ENTRY.COW
    empty = parse_procstat("").to_snapshot()
    assert empty.nentries == 0 and empty.max == (1 << 64) - 1 and empty.gaps() == [(0, empty.max)]

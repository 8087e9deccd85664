from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from iohelpers import FIXTURES, assert_accounted

from vmlab import cli
from vmlab.core.constants import VM_PROT
from vmlab.io import import_file, import_pid, import_text, parse_linux_maps

LIVE = Path("/proc/self/maps").exists()


@pytest.mark.skipif(not LIVE, reason="no /proc")
def test_own_maps_imports_every_line():
    text = Path("/proc/self/maps").read_text()
    m = import_text(text)
    assert m.format == "linux"
    assert m.issues == []
    assert len(m) == len(text.splitlines())
    assert_accounted(m)
    kinds = {e.type for e in m}
    assert "file" in kinds
    # The Python binary itself is mapped from a file, executable somewhere.
    assert any(e.protection & VM_PROT.EXECUTE and e.type == "file" for e in m)


@pytest.mark.skipif(not LIVE, reason="no /proc")
def test_own_smaps_sizes_match_ranges():
    m = import_file("/proc/self/smaps")
    assert m.issues == []
    assert_accounted(m)
    assert len(m) > 5
    for e in m:
        assert e.smaps is not None and e.vm_flags is not None
        if e.smaps.get("KernelPageSize") == 4:
            assert e.smaps["Size"] * 1024 == e.end - e.start
        assert e.smaps["Rss"] <= e.smaps["Size"]
    stacks = [e for e in m if e.path == "[stack]"]
    assert stacks and "grows_down" in stacks[0].flags and "gd" in stacks[0].vm_flags


@pytest.mark.skipif(not LIVE, reason="no /proc")
def test_other_live_processes():
    done = 0
    for d in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            text = (d / "maps").read_text(errors="surrogateescape")
        except OSError:
            continue
        m = parse_linux_maps(text)
        assert m.issues == [], (d, m.issues[:3])
        assert_accounted(m)
        done += 1
        if done >= 10:
            break


# Skip only where there is no /proc at all; in CI (Linux) this must run.
_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.mark.skipif(not LIVE and not _CI, reason="no /proc")
@pytest.mark.parametrize("via", ["api", "cli"])
def test_child_process_we_spawn(via, capsys):
    """Another live process (issue 7): a child this test starts, by PID, through import_pid
    and through `vmlab import PID --json`."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        # Wait for the child to run Python code: Popen returns as soon as execve closed the
        # close-on-exec pipe, which is before the ELF loader has mapped the new image
        # (fs/exec.c begin_new_exec, then fs/binfmt_elf.c load_elf_binary); seen here as a
        # map holding only [stack] and [vsyscall].
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        exe = os.readlink(f"/proc/{child.pid}/exe")
        assert exe == os.path.realpath(sys.executable)
        if via == "api":
            m = import_pid(child.pid)
            assert m.pid == child.pid and m.format == "linux" and m.issues == []
            assert m.source_name == f"/proc/{child.pid}/smaps"
            assert_accounted(m)
            rows = [(e.path, e.type, e.protection, e.smaps) for e in m]
        else:
            assert cli.main(["import", str(child.pid), "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            prot = {"r": VM_PROT.READ, "w": VM_PROT.WRITE, "x": VM_PROT.EXECUTE}
            rows = [(r["path"], r["type"], sum(prot[c] for c in r["prot"] if c != "-"),
                     r["smaps"]) for r in out]
        assert child.poll() is None  # still alive: this was a live process's map
        mine = [r for r in rows if r[0] == exe]
        assert mine, f"{exe} not among {sorted({r[0] for r in rows})}"
        assert all(t == "file" for _, t, _, _ in mine)
        assert any(p & VM_PROT.EXECUTE for _, _, p, _ in mine)  # its text is mapped r-x
        assert any(path == "[stack]" for path, *_ in rows)
        assert all(sm is not None and "Rss" in sm for *_, sm in rows)  # smaps was read
    finally:
        child.kill()
        child.wait()


def test_manpage_sample():
    m = import_file(FIXTURES / "linux_manpage.maps")
    assert m.issues == [] and len(m) == 16
    first = m.entries[0]
    assert (first.start, first.end) == (0x400000, 0x452000)
    assert first.protection == VM_PROT.READ | VM_PROT.EXECUTE and first.shared is False
    assert first.offset == 0 and first.device == "08:02" and first.inode == 173521
    assert first.path == "/usr/bin/dbus-daemon" and first.type == "file"
    anon = m.entries[8]
    assert anon.path == "" and anon.type == "anon" and anon.inode == 0
    guard = m.entries[10]
    assert guard.protection == VM_PROT.NONE and guard.offset == 0x1AC000
    assert [e.type for e in m if e.path.startswith("[")] == [
        "heap", "heap", "stack", "stack", "vdso"
    ]


def test_edge_names():
    m = import_file(FIXTURES / "linux_edge.maps")
    assert m.issues == []
    assert m.skipped == [(4, "blank")]
    by = {e.line_no: e for e in m}
    assert by[1].path == "/home/stu dent/my prog"
    assert by[5].path == "/dev/zero" and "deleted" in by[5].flags and by[5].shared is True
    assert by[5].path_text == "/dev/zero (deleted)"
    assert by[6].path == "/tmp/line\nbreak"
    assert by[7].path == "[anon:jemalloc arena]" and by[7].type == "anon"
    assert by[8].type == "shmem"
    assert by[9].path == "/tmp/trailing space "
    assert by[10].type == "stack" and "grows_down" in by[10].flags
    assert by[11].type == "vvar" and by[12].type == "vdso"
    vs = by[13]
    assert vs.type == "vsyscall" and vs.start == 0xFFFFFFFFFF600000
    assert vs.protection == VM_PROT.EXECUTE
    # The table escapes the newline the way the kernel prints it.
    assert "/tmp/line\\012break" in m.table()


def test_smaps_fixture_fields():
    m = import_file(FIXTURES / "linux_sample.smaps")
    assert m.issues == [] and len(m) == 4
    assert_accounted(m)
    heap = m.entries[1]
    assert heap.smaps["Size"] == 132 and heap.smaps["Rss"] == 12
    assert heap.smaps["THPeligible"] == 0
    assert heap.vm_flags == ("rd", "wr", "mr", "mw", "me", "ac")
    assert "grows_down" not in heap.flags
    assert "wired" in m.entries[2].flags  # VmFlags lo
    assert "grows_down" in m.entries[3].flags  # VmFlags gd
    assert heap.last_line == heap.line_no + 16


def test_addresses_compare_as_integers():
    text = (
        "100000000-100001000 r--p 00000000 00:00 0\n"
        "ffffe000-fffff000 r--p 00000000 00:00 0\n"
    )
    m = parse_linux_maps(text)
    assert [e.start for e in m] == [0xFFFFE000, 0x100000000]
    assert [e.line_no for e in m] == [2, 1]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("00400000-00452000 r-xp", "found 2 fields"),
        ("00400000 r-xp 00000000 08:02 1 /x", "is not 'hex-hex'"),
        ("00500000-00400000 r-xp 00000000 08:02 1 /x", "reversed"),
        ("00400000-00400000 r-xp 00000000 08:02 1 /x", "empty"),
        ("00400000-00452000 r-xq 00000000 08:02 1 /x", "permissions"),
        ("00400000-00452000 rwx 00000000 08:02 1 /x", "permissions"),
        ("00400000-00452000 r-xp 0000zz00 08:02 1 /x", "offset"),
        ("00400000-00452000 r-xp 00000000 0802 1 /x", "device"),
        ("00400000-00452000 r-xp 00000000 08:02 -1 /x", "inode"),
        ("0x400000-0x452000 r-xp 00000000 08:02 1 /x", "hex-hex"),
        ("1" + "0" * 16 + "-2" + "0" * 16 + " r-xp 00000000 08:02 1 /x", "64 bits"),
    ],
)
def test_bad_lines_have_reasons(line, reason):
    text = "00001000-00002000 r--p 00000000 00:00 0\n" + line + "\n"
    m = parse_linux_maps(text)
    assert len(m) == 1
    assert len(m.issues) == 1
    issue = m.issues[0]
    assert issue.line_no == 2 and reason in issue.reason, issue.reason
    assert issue.text == line
    assert str(issue).startswith("line 2: ")


def test_smaps_field_before_any_mapping():
    m = parse_linux_maps("Rss: 4 kB\n")
    assert len(m) == 0 and "before any mapping line" in m.issues[0].reason


def test_overlap_is_rejected_with_both_lines():
    text = (
        "00001000-00003000 r--p 00000000 00:00 0\n"
        "00002000-00004000 r--p 00000000 00:00 0\n"
    )
    m = parse_linux_maps(text)
    assert len(m) == 1 and m.issues[0].line_no == 2
    assert "overlaps 0x1000-0x3000 from line 1" in m.issues[0].reason
    assert_accounted(m)


def test_smaps_details_of_rejected_header_are_accounted():
    text = "zz-1000 rw-p 00000000 00:00 0\nSize: 4 kB\nRss: 0 kB\n"
    m = parse_linux_maps(text)
    assert [i.line_no for i in m.issues] == [1]
    assert m.skipped == [(2, "detail of rejected line 1"), (3, "detail of rejected line 1")]
    assert_accounted(m)


def test_bad_smaps_value_is_an_issue():
    text = "00001000-00002000 rw-p 00000000 00:00 0\nSize: four kB\nRss: 4 kB\n"
    m = parse_linux_maps(text)
    assert len(m) == 1 and [i.line_no for i in m.issues] == [2]
    assert m.entries[0].smaps == {"Rss": 4}
    assert_accounted(m)

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from iohelpers import FIXTURES

from vmlab import cli
from vmlab.io import sample_path

SAMPLE = str(sample_path("freebsd14-hello"))


def test_import_table(capsys):
    assert cli.main(["import", SAMPLE]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == ""
    assert lines[0].split() == [
        "PID", "START", "END", "PRT", "RES", "PRES", "REF", "SHD", "FLAG", "TP", "PATH"
    ]
    assert len(lines) == 1 + 19
    row = lines[1].split()
    assert row[:3] == ["4711", "0x200000", "0x201000"] and row[-1] == "/home/student/hello"
    assert lines[-1].split()[1:3] == ["0x7ffffffff000", "0x800000000000"]


def test_import_json_shape(capsys):
    assert cli.main(["import", str(FIXTURES / "linux_edge.maps"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 12
    for r in rows:
        assert isinstance(r["start"], int) and isinstance(r["end"], int) and r["start"] < r["end"]
        assert {"prot", "flags", "type", "path", "shared", "offset"} <= r.keys()
    vs = rows[-1]
    assert vs["start"] == 0xFFFFFFFFFF600000 and vs["prot"] == "--x" and vs["type"] == "vsyscall"
    assert rows[3]["flags"] == ["deleted"] and rows[3]["path"] == "/dev/zero"


def test_rejected_lines_go_to_stderr_and_exit_1(tmp_path, capsys):
    f = tmp_path / "maps"
    f.write_text(
        "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
        "garbage here\n"
        "00500000-00400000 r-xp 00000000 08:02 1 /x\n"
    )
    assert cli.main(["import", str(f)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert err.splitlines() == [
        "line 2: expected 'start-end perms offset dev inode [path]', found 2 fields",
        "line 3: empty or reversed range 0x500000-0x400000 (start must be below end)",
    ]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["import", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        cli.main(["import", SAMPLE, "--format", "windows"])
    assert ex.value.code == 2
    with pytest.raises(SystemExit) as ex:
        cli.main([])
    assert ex.value.code == 2
    with pytest.raises(SystemExit) as ex:
        cli.main(["import", SAMPLE, "--html"])  # --html needs an output path
    assert ex.value.code == 2


def test_unknown_format_exit_1(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("just some notes\n")
    assert cli.main(["import", str(f)]) == 1
    assert "cannot tell the format" in capsys.readouterr().err
    assert cli.main(["import", str(f), "--format", "qemu"]) == 1
    assert capsys.readouterr().err.startswith("line 1: ")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="no /proc")
def test_import_pid(capsys):
    assert cli.main(["import", str(os.getpid()), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["smaps"] is not None for r in rows)  # smaps was readable
    assert cli.main(["import", "999999999"]) == 2
    assert "cannot read process 999999999" in capsys.readouterr().err


def test_import_stdin(monkeypatch, capsys):
    data = sample_path("freebsd14-hello-json").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert cli.main(["import", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 20


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as ex:
        cli.main(["import", "--help"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    assert "vmlab import /proc/self/maps" in out and "exit status" in out
    with pytest.raises(SystemExit):
        cli.main(["lab", "--help"])
    assert "vmlab lab" in capsys.readouterr().out


def test_lab_runs_jupyterlab_on_loopback_with_token(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_call(cmd, cwd=None):
        calls.append((cmd, cwd))
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    monkeypatch.setenv("VMLAB_TOKEN", "t0ken")
    assert cli.main(["lab", "--notebooks", str(tmp_path), "--port", "8899", "--no-browser"]) == 0
    (cmd, cwd), = calls
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--IdentityProvider.token=t0ken" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd and "--ServerApp.port=8899" in cmd
    assert Path(cwd) == tmp_path
    monkeypatch.delenv("VMLAB_TOKEN")
    calls.clear()
    assert cli.main(["lab"]) == 0  # default: the repo's notebooks/ folder
    tok = [a for a in calls[0][0] if a.startswith("--IdentityProvider.token=")][0]
    assert len(tok.split("=", 1)[1]) == 32
    assert Path(calls[0][1]).name == "notebooks"
    assert cli.main(["lab", "--notebooks", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path):
    exe = Path(sys.executable).parent / "vmlab"
    if not exe.exists():
        pytest.skip("console script not installed")
    ok = subprocess.run([str(exe), "import", SAMPLE], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("  PID")
    f = tmp_path / "bad.txt"
    f.write_text("  1 0x1000 0x2000 r-- 1 1 1 0 ----- vn /a\n  1 0x3000 0x2000 r--\n")
    bad = subprocess.run([str(exe), "import", str(f)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("line 2: ")
    assert subprocess.run([str(exe)], capture_output=True).returncode == 2

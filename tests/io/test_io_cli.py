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


# --- audit fixes: empty input, huge numbers, nested JSON, `vmlab lab` ----------------------


_HEADER = "  PID   START      END PRT  RES PRES REF SHD FLAG  TP PATH\n"


@pytest.mark.parametrize(("fmt", "text"), [
    *((fmt, text) for fmt in ("linux", "procstat", "qemu", "auto") for text in ("", "\n\n")),
    ("procstat", _HEADER), ("auto", _HEADER),  # (a bad line 1 for linux and qemu)
])
def test_no_mappings_is_exit_1_not_an_empty_table(tmp_path, capsys, fmt, text):
    f = tmp_path / "empty.txt"
    f.write_text(text)
    assert cli.main(["import", str(f), "--format", fmt]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no table header pretending to be a result
    if fmt == "auto" and "PID" not in text:
        assert err == (f"vmlab import: cannot tell the format of {f}; pass one of linux, "
                       "procstat, procstat-json, qemu\n")
    else:
        want = fmt if fmt != "auto" else "procstat"
        assert err == f"vmlab import: no mappings found in {f} (format {want})\n"


def test_no_mappings_on_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert cli.main(["import", "-", "--format", "linux", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "vmlab import: no mappings found in standard input (format linux)\n"


HUGE = "9" * 5000


@pytest.mark.parametrize(("text", "reason"), [
    (f"00400000-00452000 r-xp 00000000 08:02 {HUGE} /x\n",
     "line 1: inode has 5000 digits; a 64-bit number has at most 20"),
    (f"00400000-00452000 r-xp 00000000 08:02 1 /x\nRss: {HUGE} kB\n",
     "line 2: smaps field 'Rss' value has 5000 digits; a 64-bit number has at most 20"),
    (f"  {HUGE} 0x1000 0x2000 r-- 1 1 1 0 ----- vn /a\n",
     "line 1: PID has 5000 digits; a 64-bit number has at most 20 (expected PID START END PRT "
     "RES PRES REF SHD FLAG TP [PATH])"),
    (f"  1 0x1000 0x2000 r-- 1 1 {HUGE} 0 ----- vn /a\n",
     "line 1: REF has 5000 digits; a 64-bit number has at most 20"),
    (f'[{{"kve_start": "0x1000", "kve_end": "0x2000",\n "kve_resident": "{HUGE}"}}]',
     "line 1: kve_resident has 5000 digits; a 64-bit number has at most 20"),
    (f'[{{"kve_start": "0x1000",\n "kve_end": {HUGE}}}]',
     "line 2: not valid JSON here: a number of 5000 digits (Python reads at most 4300; a "
     "64-bit number has 20)"),
    ("[" * 100000 + "\n",
     "line 1: not valid JSON here: arrays/objects nested too deeply (Python's decoder stops "
     f"near {sys.getrecursionlimit()} levels)"),
])
def test_huge_numbers_and_deep_json_are_one_line_errors(tmp_path, capsys, text, reason):
    f = tmp_path / "in.txt"
    f.write_text(text)
    assert cli.main(["import", str(f)]) == 1
    out, err = capsys.readouterr()
    assert err == reason + "\n"
    assert "Traceback" not in out + err


def _nb_checkout(root: Path) -> Path:
    nb = root / "notebooks"
    nb.mkdir(parents=True)
    (nb / "01_intro.ipynb").write_text("{}")
    return nb


def test_lab_command_adds_allow_root_only_as_root(tmp_path):
    base = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=tk", f"--ServerApp.root_dir={tmp_path}"]
    assert cli.lab_command(tmp_path, "tk", as_root=False) == base
    assert cli.lab_command(tmp_path, "tk", 8899, True, as_root=True) == base + [
        "--ServerApp.port=8899", "--no-browser", "--allow-root"]


@pytest.mark.parametrize("uid", [0, 1000])
def test_lab_as_root_passes_allow_root_like_make_lab(monkeypatch, tmp_path, uid):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, cwd=None: calls.append(cmd) or 0)
    monkeypatch.setattr(cli.os, "geteuid", lambda: uid)
    assert cli.main(["lab", "--notebooks", str(tmp_path)]) == 0
    assert ("--allow-root" in calls[0]) == (uid == 0)
    # The Makefile does the same (ROOT_OK) — keep the two in step.
    make = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert '[ "$$(id -u)" = 0 ] && echo --allow-root' in make


def test_lab_after_a_plain_install_finds_the_checkout_or_says_what_to_do(
        monkeypatch, tmp_path, capsys):
    """A non-editable install: the package sits in site-packages, without the notebooks."""
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, cwd=None: calls.append(cwd) or 0)
    monkeypatch.delenv("VMLAB_NOTEBOOKS", raising=False)
    site = tmp_path / "site-packages" / "vmlab"
    site.mkdir(parents=True)
    monkeypatch.setattr(cli, "__file__", str(site / "cli.py"))
    elsewhere = tmp_path / "home"
    (elsewhere / "notebooks").mkdir(parents=True)  # a notebooks/ without notebooks: not ours
    monkeypatch.chdir(elsewhere)
    assert cli.find_notebooks() is None
    assert cli.main(["lab"]) == 2
    err = capsys.readouterr().err
    assert err == (f"vmlab lab: lessons folder not found (looked in {tmp_path}/site-packages/"
                   f"notebooks, {elsewhere}/notebooks); the notebooks are not installed with "
                   "the package: pass --notebooks DIR (the notebooks/ folder of a vmlab "
                   "checkout) or set VMLAB_NOTEBOOKS\n")
    assert calls == []
    checkout = tmp_path / "checkout"
    nb = _nb_checkout(checkout)
    monkeypatch.chdir(checkout)  # run from the checkout: its notebooks/ is found
    assert cli.main(["lab"]) == 0
    assert calls == [nb]
    assert capsys.readouterr().err == (f"vmlab lab: serving {nb} on 127.0.0.1 (token in the "
                                       "URL below)\n")
    monkeypatch.setenv("VMLAB_NOTEBOOKS", str(tmp_path / "nope"))  # explicit: nothing else
    assert cli.notebook_candidates() == [tmp_path / "nope"]
    assert cli.main(["lab"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vmlab lab: lessons folder not found (looked in {tmp_path}/nope);")


def test_lab_help_says_where_the_notebooks_come_from(capsys):
    with pytest.raises(SystemExit):
        cli.main(["lab", "--help"])
    out = capsys.readouterr().out
    assert "--notebooks DIR" in out and "--allow-root" in out and "VMLAB_NOTEBOOKS" in out


def test_console_script_errors_are_one_line(tmp_path):
    exe = Path(sys.executable).parent / "vmlab"
    if not exe.exists():
        pytest.skip("console script not installed")
    f = tmp_path / "f"
    f.write_text(f"00400000-00452000 r-xp 00000000 08:02 {HUGE} /x\n")
    d = tmp_path / "d.json"
    d.write_text("[" * 100000 + "\n")
    e = tmp_path / "empty.txt"
    e.write_text("")
    for argv, code in ([str(exe), "import", str(f)], 1), ([str(exe), "import", str(d)], 1), \
            ([str(exe), "import", str(e), "--format", "linux"], 1), \
            ([str(exe), "replay", str(d)], 2):
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == code, (argv, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr

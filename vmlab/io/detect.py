"""Format detection and the one-call entry points: `import_text`, `import_file`, `import_pid`.

Detection looks at the first non-blank lines only (so it is cheap on big files):

- ``{`` or ``[`` first → ``procstat-json``;
- ``hex-hex perms ...`` with perms like ``r-xp`` → ``linux`` (maps or smaps);
- a ``PID ... START`` header, or ``pid 0x... 0x...`` rows → ``procstat``;
- ``hex-hex hexsize urw`` or ``PG disabled`` → ``qemu``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from .linux import parse_linux_maps
from .model import ImportedMap
from .procstat import parse_procstat, parse_procstat_json
from .qemu import parse_qemu_info_mem

__all__ = [
    "FORMATS",
    "SAMPLES",
    "UnknownFormatError",
    "detect_format",
    "import_file",
    "import_pid",
    "import_text",
    "load_sample",
    "sample_path",
]

FORMATS = ("linux", "procstat", "procstat-json", "qemu")

#: Shipped samples (vmlab/data/): name → file.
SAMPLES = {
    "freebsd14-hello": "freebsd14-hello.procstat-v.txt",
    "freebsd14-hello-json": "freebsd14-hello.procstat-vm.json",
}

_LINUX = re.compile(r"[0-9a-fA-F]+-[0-9a-fA-F]+\s+[r-][w-][x-][sp]\s")
_QEMU = re.compile(r"[0-9a-fA-F]+-[0-9a-fA-F]+\s+[0-9a-fA-F]+\s+[u-][r-][w-]\s*$")
_PROCSTAT = re.compile(r"\s*(\d+|-)\s+0x[0-9a-fA-F]+\s+0x[0-9a-fA-F]+\s")
_PROCSTAT_HDR = re.compile(r"\s*PID\s+START\s+END\s")


class UnknownFormatError(ValueError):
    """The text matches none of the formats vmlab reads."""


def detect_format(text: str, probe_lines: int = 50) -> str | None:
    """The format of ``text`` (one of FORMATS), or None when nothing matches."""
    head = text.lstrip()
    if head[:1] in ("{", "["):
        return "procstat-json"
    seen = 0
    for line in text.split("\n", probe_lines * 4)[: probe_lines * 4]:
        if not line.strip():
            continue
        if _LINUX.match(line):
            return "linux"
        if _PROCSTAT_HDR.match(line) or _PROCSTAT.match(line):
            return "procstat"
        if _QEMU.match(line) or line.strip() == "PG disabled":
            return "qemu"
        seen += 1
        if seen >= probe_lines:
            break
    return None


_PARSERS = {
    "linux": parse_linux_maps,
    "procstat": parse_procstat,
    "procstat-json": parse_procstat_json,
    "qemu": parse_qemu_info_mem,
}


def import_text(text: str, format: str = "auto", source_name: str = "") -> ImportedMap:
    """Parse ``text`` in ``format`` (or detect it) into an `ImportedMap`.

    Raises UnknownFormatError when ``format="auto"`` and nothing matches, ValueError for an
    unknown format name. Bad lines never raise: they become the map's ``issues``.
    """
    fmt = format
    if fmt == "auto":
        fmt = detect_format(text) or ""
        if not fmt:
            raise UnknownFormatError(
                f"cannot tell the format of {source_name or 'the input'}; pass one of "
                f"{', '.join(FORMATS)}"
            )
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown format {format!r}; use auto or one of {', '.join(FORMATS)}")
    return parser(text, source_name=source_name)


def _read(path: str | os.PathLike[str]) -> str:
    # surrogateescape: a path with bytes that are not UTF-8 survives the round trip.
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def import_file(path: str | os.PathLike[str], format: str = "auto") -> ImportedMap:
    """Import a saved maps/smaps/procstat/QEMU file (``-`` is not special here)."""
    return import_text(_read(path), format, source_name=str(path))


def import_pid(pid: int, format: str = "auto") -> ImportedMap:
    """Import a live process: ``/proc/PID/smaps`` when readable, else ``/proc/PID/maps``,
    else (FreeBSD without linprocfs) the output of ``procstat -v PID``.

    Raises OSError (FileNotFoundError, PermissionError...) when none of these can be read.
    """
    base = Path("/proc") / str(int(pid))
    first_error: OSError | None = None
    for name in ("smaps", "maps"):
        try:
            text = _read(base / name)
        except OSError as exc:
            first_error = first_error or exc
            continue
        m = import_text(text, "linux" if format == "auto" else format, str(base / name))
        m.pid = int(pid)
        return m
    procstat = shutil.which("procstat")
    if procstat:
        out = subprocess.run(
            [procstat, "-v", str(int(pid))], capture_output=True, check=False, timeout=30
        )
        if out.returncode == 0 and out.stdout:
            text = out.stdout.decode("utf-8", "surrogateescape")
            fmt = "procstat" if format == "auto" else format
            return import_text(text, fmt, f"procstat -v {pid}")
    assert first_error is not None
    raise first_error


def sample_path(name: str) -> Path:
    """Filesystem path of a shipped sample (see SAMPLES)."""
    if name not in SAMPLES:
        raise KeyError(f"no sample {name!r}; samples: {', '.join(SAMPLES)}")
    return Path(str(resources.files("vmlab") / "data" / SAMPLES[name]))


def load_sample(name: str = "freebsd14-hello") -> ImportedMap:
    """A shipped sample as an ImportedMap (default: FreeBSD 14 ``procstat -v`` of a small
    amd64 program)."""
    m = import_file(sample_path(name))
    m.source_name = name
    return m


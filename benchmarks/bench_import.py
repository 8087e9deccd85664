"""Import speed: a 65,530-line /proc/PID/maps (Linux's default vm.max_map_count) and a
procstat -v of the same size, against a naive regex-per-line baseline run in the same process.

The goal (issue 7) is under one second for the Linux file. The baseline only matches each line
with one regular expression and builds a dict; it validates nothing beyond the regex, records
no issues and produces no entries for the views, so it is a floor, not a competitor.

Run: .venv/bin/python benchmarks/bench_import.py
"""

from __future__ import annotations

import random
import re
import time

from vmlab.io import parse_linux_maps, parse_procstat

N = 65_530
REPEAT = 5

_NAIVE = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+)\s+([r-][w-][x-][sp])\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)"
    r"\s+(\d+)\s*(.*)$"
)


def naive_linux(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        m = _NAIVE.match(line)
        if m:
            out.append(
                {
                    "start": int(m[1], 16),
                    "end": int(m[2], 16),
                    "perms": m[3],
                    "offset": int(m[4], 16),
                    "dev": m[5],
                    "inode": int(m[6]),
                    "path": m[7],
                }
            )
    return out


def make_linux(n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    addr = 0x555555554000
    lines = []
    libs = ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/home/student/data file.bin", "", "", "[anon:arena]"]
    for i in range(n - 1):
        size = rnd.choice((1, 1, 2, 4, 16, 33)) * 0x1000
        path = rnd.choice(libs)
        perms = rnd.choice(("r--p", "r-xp", "rw-p", "---p", "rw-s"))
        ino = 0 if not path.startswith("/") else 1000 + (i % 97)
        dev = "fe:00" if ino else "00:00"
        head = f"{addr:08x}-{addr + size:08x} {perms} {i * 0x1000 & 0xFFFFFFF:08x} {dev} {ino} "
        lines.append(head + (" " * max(0, 73 - len(head)) + path if path else ""))
        addr += size + rnd.choice((0, 0, 0x1000))
    head = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 "
    lines.append(head + " " * (73 - len(head)) + "[vsyscall]")
    return "\n".join(lines) + "\n"


def make_procstat(n: int, seed: int = 2) -> str:
    rnd = random.Random(seed)
    addr = 0x200000
    out = ["  PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH"]
    for _ in range(n - 1):
        size = rnd.choice((1, 2, 4, 16)) * 0x1000
        tp, path = rnd.choice((("vn", "/lib/libc.so.7"), ("sw", ""), ("vn", "/usr/bin/a b")))
        out.append(f" 4711 {addr:#18x} {addr + size:#18x} rw-    1    1   1   0 CN--- {tp} {path}")
        addr += size + 0x1000
    return "\n".join(out) + "\n"


def best(fn, *args) -> tuple[float, object]:
    times = []
    result = None
    for _ in range(REPEAT):
        t = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    text = make_linux(N)
    assert text.count("\n") == N
    t_naive, rows = best(naive_linux, text)
    t_ours, m = best(parse_linux_maps, text)
    assert len(rows) == N and len(m) == N and not m.issues  # type: ignore[arg-type]
    t_snap, _ = best(m.to_snapshot)  # type: ignore[attr-defined]
    print(f"linux maps, {N} lines (best of {REPEAT}):")
    print(f"  naive regex-per-line baseline: {t_naive * 1e3:8.1f} ms")
    print(f"  vmlab parse_linux_maps:        {t_ours * 1e3:8.1f} ms"
          f"   ratio {t_ours / t_naive:.2f}x baseline   goal < 1000 ms: "
          f"{'met' if t_ours < 1 else 'MISSED'}")
    print(f"  ImportedMap.to_snapshot:       {t_snap * 1e3:8.1f} ms"
          f"   (parse + snapshot {(t_ours + t_snap) * 1e3:.1f} ms)")
    ptext = make_procstat(N)
    t_proc, pm = best(parse_procstat, ptext)
    assert len(pm) == N - 1 and not pm.issues  # type: ignore[arg-type]
    print(f"procstat -v, {N} lines: parse_procstat {t_proc * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

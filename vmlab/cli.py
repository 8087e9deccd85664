"""The ``vmlab`` command.

Subcommands (argparse subparsers; each adds itself in ``_add_<name>``):

- ``vmlab import FILE|PID``: read a real address space and print it as a ``procstat -v`` table
  or as JSON.
- ``vmlab replay SCENARIO.json``: replay a scenario into a trace, optionally as HTML.
- ``vmlab lab``: start JupyterLab on the lessons (the same as ``make lab``).
- ``vmlab exercise --seed N [--topic T] [--count K] [--solve]``: seeded OSTEP-style problems.

Exit codes scripts can rely on: 0 success; 1 the input had lines that could not be imported
(each reported on stderr as ``line N: reason``) or its format could not be recognised;
2 usage errors (bad arguments, unreadable file or process); 3 an internal error (a bug: one
line on stderr, the traceback with ``VMLAB_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from vmlab import __version__

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_ISSUES",
    "EXIT_OK",
    "EXIT_USAGE",
    "find_notebooks",
    "lab_command",
    "main",
    "notebook_candidates",
]

EXIT_OK = 0
EXIT_ISSUES = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

_IMPORT_EXAMPLES = """\
examples:
  vmlab import /proc/self/maps            # this shell's own address space
  vmlab import $$ --json                  # a live process by PID (Linux /proc)
  vmlab import saved.txt --format procstat
  procstat -v 1234 | vmlab import -       # FreeBSD: read standard input

exit status: 0 all lines imported, 1 some lines rejected (listed on stderr as
'line N: reason') or format not recognised, 2 usage error (bad argument, unreadable input)
"""

_LAB_EXAMPLES = """\
examples:
  vmlab lab                               # JupyterLab on the lessons, 127.0.0.1, random token
  VMLAB_TOKEN=secret vmlab lab --port 8899
  vmlab lab --notebooks ~/my-lessons

The lessons are not installed with the package. Without --notebooks, vmlab lab serves
$VMLAB_NOTEBOOKS if set, else notebooks/ of the checkout vmlab runs from (a source checkout or
'pip install -e .'), else ./notebooks; after 'pip install .' run it from the checkout or pass
--notebooks DIR. As root (uid 0) it adds --allow-root, like 'make lab'.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with EXIT_USAGE (argparse's own default is also 2; kept explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="print a real process's memory map (Linux maps/smaps, procstat -v, QEMU info mem)",
        description="Import a memory map and print it as a procstat -v style table "
        "(START and END as 0x-prefixed hex) or as JSON.",
        epilog=_IMPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="FILE|PID",
        help="a file, '-' for standard input, or a process id (reads /proc/PID/smaps or maps)",
    )
    p.add_argument(
        "--format",
        choices=("auto", "linux", "procstat", "procstat-json", "qemu"),
        default="auto",
        help="input format (default: auto-detect)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per mapping"
    )
    p.add_argument(
        "--html", metavar="OUT.html",
        help="also write a standalone interactive page (works offline) to OUT.html",
    )
    p.set_defaults(func=_cmd_import)


def _add_lab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="start JupyterLab on the vmlab lessons (like 'make lab')",
        description="Start JupyterLab on the lesson notebooks, listening on 127.0.0.1 only, "
        "with a token from $VMLAB_TOKEN or a fresh random one.",
        epilog=_LAB_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--notebooks", metavar="DIR",
                   help="folder to serve (default: $VMLAB_NOTEBOOKS, else the checkout's "
                   "notebooks/, else ./notebooks)")
    p.add_argument("--port", type=int, help="port (default: JupyterLab's, 8888 or next free)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=_cmd_lab)


_EXERCISE_EXAMPLES = """\
examples:
  vmlab exercise --seed 7                       # one problem (topic chosen by the seed)
  vmlab exercise --seed 7 --topic findspace --solve
  vmlab exercise --seed 1 --count 10 --topic insert --topic clip > set.txt
  vmlab exercise --seed 1 --count 5 --markdown --solve > answers.md
  vmlab exercise --list                         # the topics

The same seed prints the same problem on every machine and Python version. Problem i of a set
uses seed N+i-1 and the topic list in turn.

exit status: 0 ok, 2 usage error (unknown topic, bad seed or count)
"""


def _add_exercise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "exercise",
        help="print OSTEP-style problems from a seed (--solve for the answers)",
        description="Print seeded vm_map / page-walk problems; the answers come from "
        "running vmlab's model of FreeBSD 14.",
        epilog=_EXERCISE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed of the first problem (a non-negative integer; required "
                   "unless --list)")
    p.add_argument("--topic", action="append", metavar="T",
                   help="topic (repeat for several; default: all). See --list")
    p.add_argument("--count", type=int, default=1, metavar="K",
                   help="number of problems (default 1)")
    p.add_argument("--solve", action="store_true", help="print the answers and explanations")
    p.add_argument("--markdown", action="store_true", help="Markdown instead of plain text")
    p.add_argument("--list", action="store_true", help="list the topics and exit")
    p.set_defaults(func=_cmd_exercise)


def _cmd_exercise(args: argparse.Namespace) -> int:
    from vmlab.exercises import TOPICS, problem_set

    if args.list:
        for name, what in TOPICS.items():
            print(f"{name:<10} {what}")
        return EXIT_OK
    if args.seed is None or args.seed < 0:
        print("vmlab exercise: --seed N is required (a non-negative integer)", file=sys.stderr)
        return EXIT_USAGE
    if args.count < 1 or args.count > 1000:
        print("vmlab exercise: --count must be between 1 and 1000", file=sys.stderr)
        return EXIT_USAGE
    bad = [t for t in args.topic or () if t not in TOPICS]
    if bad:
        print(f"vmlab exercise: unknown topic {bad[0]!r}; topics: {', '.join(TOPICS)}",
              file=sys.stderr)
        return EXIT_USAGE
    seeds = range(args.seed, args.seed + args.count)
    text = problem_set(seeds, args.topic, solutions=args.solve, markdown=args.markdown,
                       title="vmlab exercises" + (" with solutions" if args.solve else ""))
    _write(sys.stdout, text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmlab",
        description="vmlab: a teaching lab for FreeBSD's vm_map and x86-64 paging.",
        epilog="example: vmlab import /proc/self/maps",
    )
    parser.add_argument("--version", action="version", version=f"vmlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_import(sub)
    _add_lab(sub)
    _add_exercise(sub)
    _add_replay(sub)
    return parser


def _write(stream: object, text: str) -> None:
    # Paths may hold bytes that are not UTF-8 (kept as surrogates): never crash printing them.
    try:
        stream.write(text)  # type: ignore[attr-defined]
    except UnicodeEncodeError:
        enc = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(enc, "backslashreplace").decode(enc))  # type: ignore[attr-defined]


def _cmd_import(args: argparse.Namespace) -> int:
    from vmlab.io import UnknownFormatError, import_pid, import_text

    src: str = args.source
    try:
        if src == "-":
            data = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
            imported = import_text(data, args.format, "<stdin>")
        elif src.isdigit() and not os.path.exists(src):
            imported = import_pid(int(src), args.format)
        else:
            with open(src, "rb") as f:
                data = f.read().decode("utf-8", "surrogateescape")
            imported = import_text(data, args.format, src)
    except UnknownFormatError as exc:
        print(f"vmlab import: {exc}", file=sys.stderr)
        return EXIT_ISSUES
    except OSError as exc:
        what = f"process {src}" if src.isdigit() else src
        print(f"vmlab import: cannot read {what}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if not imported.entries and not imported.issues:
        # Empty input, or only blank/header lines: as with --format auto (which cannot even
        # tell the format), nothing was imported, and a script must not read that as success.
        where = "standard input" if src == "-" else imported.source_name or src
        print(f"vmlab import: no mappings found in {where} (format {imported.format})",
              file=sys.stderr)
        return EXIT_ISSUES
    if args.json:
        _write(sys.stdout, json.dumps([e.to_dict() for e in imported.entries], indent=1) + "\n")
    else:
        _write(sys.stdout, imported.table())
    if args.html and _write_html(imported, args.html, "vmlab import") != EXIT_OK:
        return EXIT_USAGE
    for issue in imported.issues:
        _write(sys.stderr, f"{issue}\n")
    return EXIT_ISSUES if imported.issues else EXIT_OK


def notebook_candidates() -> list[Path]:
    """Where `vmlab lab` looks for the lessons, in order (the first that exists wins).

    The notebooks are not package data (they live in the source tree's ``notebooks/``), so:
    ``$VMLAB_NOTEBOOKS`` when set (then nothing else); ``notebooks/`` of the checkout this
    package runs from (a source checkout or ``pip install -e .``); ``./notebooks`` of the
    current directory when it holds notebooks (a checkout, after a non-editable install).
    """
    env = os.environ.get("VMLAB_NOTEBOOKS")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    return [here.parent / "notebooks", Path.cwd() / "notebooks"]


def find_notebooks() -> Path | None:
    """The lessons folder (see `notebook_candidates`), or None when there is none."""
    cands = notebook_candidates()
    for i, cand in enumerate(cands):
        # ./notebooks of an unrelated project must hold notebooks to count; the checkout's
        # own folder and $VMLAB_NOTEBOOKS are taken as they are.
        if cand.is_dir() and (i == 0 or any(cand.glob("*.ipynb"))):
            return cand
    return None


def lab_command(folder: Path, token: str, port: int | None = None, no_browser: bool = False,
                as_root: bool | None = None) -> list[str]:
    """The argv `vmlab lab` runs: JupyterLab on 127.0.0.1 with a token, serving ``folder``.

    Same options as the Makefile's ``lab`` target, including ``--allow-root`` when running
    as root (uid 0; ``as_root`` None means ask os.geteuid()): Jupyter Server refuses to start
    as root without it (containers and teaching VMs often run as root).
    """
    if as_root is None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}",
    ]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    if no_browser:
        cmd.append("--no-browser")
    if as_root:
        cmd.append("--allow-root")
    return cmd


_REPLAY_EXAMPLES = """\
examples:
  vmlab replay fork-and-cow                       # a shipped scenario, by name
  vmlab replay my.json --html my.html             # the animation as one offline web page
  vmlab replay my.json --trace my-trace.json      # the trace (docs/trace-format.md)
  vmlab replay --list                             # the shipped scenarios
  cat my.json | vmlab replay -                    # standard input (always read as JSON text)

exit status: 0 every step ran and met its "expect", 1 a step's result differed from its
"expect", the kernel would have panicked, or a step could not run because an earlier step
failed to save the $name (or create the process) it uses, 2 usage error or invalid scenario
(not UTF-8, not JSON, or the message names the bad field, e.g. steps[3].args.len)
"""


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a scenario (JSON) into a trace; optionally write an HTML animation",
        description="Replay a scenario file (docs/scenarios.md) on a fresh simulated machine, "
        "print one line per step with its result, and optionally write the trace as JSON or "
        "as a standalone HTML animation.",
        epilog=_REPLAY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", metavar="SCENARIO.json", nargs="?",
                   help="a scenario file, '-' for standard input, or a shipped scenario's name")
    p.add_argument("--html", metavar="OUT.html", help="write the animation to OUT.html")
    p.add_argument("--trace", metavar="OUT.json", help="write the trace JSON to OUT.json")
    p.add_argument("--title", help="title of the HTML page (default: the scenario's)")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    p.set_defaults(func=_cmd_replay)


def _write_html(obj: object, path: str, who: str, title: str | None = None) -> int:
    from vmlab.io.html_export import export_html

    def progress(done: int, total: int) -> None:
        print(f"{who}: drawing step {done} of {total}", file=sys.stderr)

    try:
        export_html(obj, path, title=title, progress=progress)
    except OSError as exc:
        print(f"{who}: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{who}: wrote {path}", file=sys.stderr)
    return EXIT_OK


def _print_results(results: list, quiet: bool) -> None:
    for r in results:
        if not quiet or not r.ok:
            mark = "ok " if r.ok else "FAIL"
            _write(sys.stdout if r.ok else sys.stderr,
                   f"{mark} steps[{r.index}] {r.proc}: {r.message}\n")


def _cmd_replay(args: argparse.Namespace) -> int:
    from vmlab.io import scenario as S

    if args.list:
        for name in S.example_names():
            sc = S.load_example(name)
            print(f"{name:<20} {sc.title}")
        return EXIT_OK
    src = args.scenario
    if src is None:
        print("vmlab replay: give a scenario file (or --list)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if src == "-":
            # Standard input is always the scenario's text, never a file name.
            stdin = getattr(sys.stdin, "buffer", None)
            data = stdin.read() if stdin is not None else sys.stdin.read()
            sc = S.parse_scenario(data, "standard input")
        elif not os.path.exists(src) and src in S.example_names():
            sc = S.load_example(src)
        else:
            sc = S.load_scenario(Path(src))
    except S.ScenarioError as exc:
        print(f"vmlab replay: invalid scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"vmlab replay: cannot read {src}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rep = S.replay(sc, check=False)
    except S.ScenarioReplayError as exc:
        _print_results(exc.results, args.quiet)  # what ran before the replay stopped
        print(f"vmlab replay: {exc}", file=sys.stderr)
        return EXIT_ISSUES
    _print_results(rep.results, args.quiet)
    print(f"vmlab replay: {len(rep.results)} steps, {len(rep.trace)} trace steps, "
          f"{sum(not r.ok for r in rep.results)} failed expectations", file=sys.stderr)
    if args.trace:
        try:
            Path(args.trace).write_text(rep.trace_json(indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"vmlab replay: cannot write {args.trace}: {exc.strerror or exc}",
                  file=sys.stderr)
            return EXIT_USAGE
    if args.html and _write_html(rep, args.html, "vmlab replay", args.title) != EXIT_OK:
        return EXIT_USAGE
    return EXIT_OK if rep.ok else EXIT_ISSUES


def _cmd_lab(args: argparse.Namespace) -> int:
    if args.notebooks:
        folder: Path | None = Path(args.notebooks)
        if not folder.is_dir():
            print(f"vmlab lab: notebooks folder {folder} not found", file=sys.stderr)
            return EXIT_USAGE
    else:
        folder = find_notebooks()
        if folder is None:
            looked = ", ".join(str(c) for c in notebook_candidates())
            print(f"vmlab lab: lessons folder not found (looked in {looked}); the notebooks "
                  "are not installed with the package: pass --notebooks DIR (the notebooks/ "
                  "folder of a vmlab checkout) or set VMLAB_NOTEBOOKS", file=sys.stderr)
            return EXIT_USAGE
    token = os.environ.get("VMLAB_TOKEN") or secrets.token_hex(16)
    cmd = lab_command(folder, token, args.port, args.no_browser)
    print(f"vmlab lab: serving {folder} on 127.0.0.1 (token in the URL below)", file=sys.stderr)
    try:
        return subprocess.call(cmd, cwd=folder)
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as exc:
        print(f"vmlab lab: cannot start JupyterLab: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vmlab`` console script; returns the exit code.

    Errors are one line on stderr and a non-zero exit, never a traceback: each command reports
    what it expects to go wrong; a closed output pipe (``vmlab import ... | head``) ends
    quietly; anything else is reported as an internal error (EXIT_INTERNAL), with the
    traceback only when $VMLAB_DEBUG is set.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away: stop writing (and keep Python from complaining at exit).
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ISSUES
    except KeyboardInterrupt:
        print(f"vmlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("VMLAB_DEBUG"):
            raise
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"vmlab {args.command}: internal error (a bug in vmlab; VMLAB_DEBUG=1 shows the "
              f"traceback): {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

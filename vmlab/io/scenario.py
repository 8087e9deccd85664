"""Scenarios: a JSON list of syscalls and vm_map calls on named processes, replayed into a trace.

A scenario (docs/scenarios.md; JSON Schema in vmlab/data/scenario.schema.json) declares a
machine, some processes, and steps such as::

    {"proc": "p1", "op": "mmap", "args": {"len": "16K", "prot": "PROT_READ|PROT_WRITE",
     "flags": "MAP_ANON|MAP_PRIVATE"}, "save": "a", "expect": 0}
    {"proc": "p1", "op": "fork", "child": "p2"}
    {"proc": "p2", "op": "touch", "args": {"addr": "$a+0x1000", "access": "w"}}

`load_scenario` validates everything it can before anything runs (names, argument types,
expressions, references to saved values, processes that do not exist yet or have exited) and
raises `ScenarioError` naming the bad field (``steps[2].args.len``) and what was expected.
`replay` runs the steps on a fresh `Machine` and records one `Trace`: every step the kernel
functions record, framed by ``scenario_op`` / ``scenario_result`` steps. Replay is
deterministic: the same scenario gives the same trace JSON (process ids, map ids, object ids
and file ids are numbered afresh for each replay; sysctls are restored afterwards).

Operations keep their FreeBSD names and C argument names: the syscalls of
`vmlab.core.syscalls` (sys/vm/vm_mmap.c), ``fork`` (vmspace_fork), ``exit`` (vmspace_free),
the vm_map(9) calls (sys/vm/vm_map.c; the map lock is taken around the ones that need it, as
their callers in the kernel do), ``vm_fault`` and ``touch`` (a user load or store through the
MMU, vm_fault.c's trap path).
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .model import json_error

__all__ = [
    "OPS",
    "SCENARIO_FORMAT",
    "SCENARIO_VERSION",
    "Replay",
    "Scenario",
    "ScenarioError",
    "ScenarioExpectationError",
    "ScenarioReplayError",
    "StepResult",
    "example_names",
    "load_example",
    "load_scenario",
    "parse_scenario",
    "replay",
    "schema",
]

SCENARIO_FORMAT = "vmlab-scenario"
SCENARIO_VERSION = 1

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_SAVE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_PROT_RE = re.compile(r"^[r-][w-][x-]$")
_U64 = (1 << 64) - 1


class ScenarioError(ValueError):
    """The scenario is malformed. ``path`` names the field (``steps[3].args.len``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class ScenarioReplayError(RuntimeError):
    """A step could not run: the kernel would have panicked (a KASSERT) and the step did not
    say ``"expect": "panic"``, or the step uses a ``$name`` (or a process) that an earlier
    step failed to create. ``index`` is the step's index."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"steps[{index}]: {message}")
        self.index = index
        #: the results of the steps that ran before this one (set by `replay`)
        self.results: list[StepResult] = []


class ScenarioExpectationError(ScenarioReplayError):
    """A step's result differs from its ``expect``."""


# ------------------------------------------------------------------------------------------
# constants usable by name in expressions


def _namespace() -> dict[str, int]:
    c = importlib.import_module("vmlab.core.constants")
    sc = importlib.import_module("vmlab.core.syscalls")
    vm_sync = importlib.import_module("vmlab.core.vm_sync")
    vmspace = importlib.import_module("vmlab.core.vmspace")

    ns: dict[str, int] = {"NULL": 0}
    # amd64 limits (sys/amd64/include/vmparam.h), 48-bit addressing as in exec_image
    for n in ("PAGE_SIZE", "PAGE_SHIFT", "NBPDR", "VM_MIN_ADDRESS", "VM_MAXUSER_ADDRESS_LA48",
              "SHAREDPAGE_LA48", "USRSTACK", "MAXTSIZ", "DFLDSIZ", "MAXDSIZ", "DFLSSIZ",
              "MAXSSIZ", "SGROWSIZ"):
        ns[n] = int(getattr(c, n))
    for enum, prefix in ((c.KERN, "KERN_"), (c.VM_PROT, "VM_PROT_"), (c.VM_INHERIT, "VM_INHERIT_"),
                         (c.VM_MAP_PROTECT, "VM_MAP_PROTECT_"), (c.VM_FAULT, "VM_FAULT_")):
        for m in enum:
            ns[prefix + m.name] = int(m.value)
    ns["VM_PROT_NONE"] = 0
    ns["VM_PROT_ALL"] = int(c.VM_PROT.ALL)
    ns["VM_PROT_RW"] = int(c.VM_PROT.READ | c.VM_PROT.WRITE)
    ns["VM_FAULT_NORMAL"] = 0
    for m in c.VMFS:
        ns[f"VMFS_{m.name}"] = int(m.value)
    mman = {n: int(getattr(sc, n)) for n in sc.__all__
            if n.isupper() and isinstance(getattr(sc, n), int)}
    # sys/vm/vm_map.h cow bits (MAP_COPY_ON_WRITE, ...) share the MAP_ prefix with mman.h's
    # flags (MAP_ANON, ...); FreeBSD keeps the two sets of names distinct, so one namespace works.
    for m in c.MAP:
        name = f"MAP_{m.name}"
        if name in mman and mman[name] != int(m.value):
            raise RuntimeError(f"{name} means two things")  # pragma: no cover - guarded by test
        ns[name] = int(m.value)
    ns.update(mman)
    for n in dir(vm_sync):
        if n.startswith("VM_MAP_WIRE_"):
            ns[n] = int(getattr(vm_sync, n))
    for n in ("RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_VMEM", "RLIMIT_AS",
              "RLIM_INFINITY"):
        ns[n] = int(getattr(vmspace, n))
    return ns


_NS: dict[str, int] | None = None


def _names() -> dict[str, int]:
    global _NS
    if _NS is None:
        _NS = _namespace()
    return _NS


def _functions() -> dict[str, Callable[[int], int]]:
    from vmlab.core.constants import VMFS_ALIGNED_SPACE
    from vmlab.core.syscalls import MAP_ALIGNED, PROT_MAX

    return {"MAP_ALIGNED": MAP_ALIGNED, "PROT_MAX": PROT_MAX,
            "VMFS_ALIGNED_SPACE": VMFS_ALIGNED_SPACE}


# ------------------------------------------------------------------------------------------
# expressions: "0x1000", "16K", "PROT_READ|PROT_WRITE", "$a + 4*PAGE_SIZE", "MAP_ALIGNED(21)"

#: Values an argument may take: 64-bit, signed or unsigned (C's int64_t/uint64_t/vm_offset_t).
_I64_MIN = -(1 << 63)
#: Longest number literal read (a 64-bit value with ``_`` separators fits easily); checked
#: before int(), which refuses more than 4,300 decimal digits.
_MAX_LITERAL = 80


def _fits(v: int) -> bool:
    return _I64_MIN <= v <= _U64


_TOKEN = re.compile(r"\s*(?:(\$[A-Za-z_]\w*)|(0[xX][0-9a-fA-F_]+|\d[\d_]*[KMGT]?)|([A-Za-z_]\w*)"
                    r"|([|+\-*()]))")
_SUFFIX = {"K": 10, "M": 20, "G": 30, "T": 40}


class _Expr:
    """A parsed integer expression; ``refs`` are the ``$names`` it reads."""

    def __init__(self, text: str, path: str) -> None:
        self.text, self.path = text, path
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        s = text.rstrip()
        while pos < len(s):
            m = _TOKEN.match(s, pos)
            if m is None:
                raise ScenarioError(path, f"cannot read {text!r} at {s[pos:pos + 12]!r}: "
                                    "expected a number (42, 0x1000, 16K), a constant "
                                    "(PROT_READ), a saved value ($a) or one of | + - * ( )")
            kinds = ("ref", "num", "name", "op")
            kind = next(k for k, g in zip(kinds, m.groups(), strict=True) if g is not None)
            self.tokens.append((kind, m.group(m.lastindex or 0)))
            pos = m.end()
        if not self.tokens:
            raise ScenarioError(path, "empty expression: expected an integer")
        self.refs = {t[1:] for k, t in self.tokens if k == "ref"}
        for k, t in self.tokens:
            if k == "name" and t not in _names() and t not in _functions():
                raise ScenarioError(path, f"unknown constant {t!r} in {text!r} (names are "
                                    "FreeBSD's: PROT_READ, MAP_ANON, VM_PROT_WRITE, KERN_NO_SPACE,"
                                    " MAP_COPY_ON_WRITE, VMFS_OPTIMAL_SPACE, PAGE_SIZE, ...)")
        self.evaluate({r: 0 for r in self.refs})  # syntax check now, not at replay

    def evaluate(self, values: Mapping[str, int]) -> int:
        toks, i = self.tokens, 0

        def fail(msg: str) -> ScenarioError:
            return ScenarioError(self.path, f"in {self.text!r}: {msg}")

        def checked(v: int, what: str) -> int:
            # C arithmetic is 64-bit: a value outside int64/uint64 is a mistake, and keeping
            # it would let "$a*$a*..." grow without bound.
            if not _fits(v):
                raise fail(f"{what} = {v:#x} does not fit in 64 bits")
            return v

        def peek() -> str | None:
            return toks[i][1] if i < len(toks) and toks[i][0] == "op" else None

        def atom() -> int:
            nonlocal i
            if i >= len(toks):
                raise fail("the expression ends too early")
            kind, t = toks[i]
            i += 1
            if kind == "num":
                if len(t) > _MAX_LITERAL:
                    raise fail(f"the number {t[:16]}... ({len(t)} characters) does not fit in "
                               "64 bits")
                t = t.replace("_", "")
                if t[-1] in _SUFFIX:
                    return checked(int(t[:-1]) << _SUFFIX[t[-1]], t)
                return checked(int(t, 0) if t.lower().startswith("0x") else int(t), t)
            if kind == "ref":
                if t[1:] not in values:
                    raise fail(f"{t} has no value")
                return int(values[t[1:]])
            if kind == "name":
                if t in _functions():
                    if peek() != "(":
                        raise fail(f"{t} is a macro: write {t}(n)")
                    i += 1
                    v = orexpr()
                    if peek() != ")":
                        raise fail("missing ')'")
                    i += 1
                    return checked(int(_functions()[t](v)), f"{t}({v})")
                return _names()[t]
            if t == "(":
                v = orexpr()
                if peek() != ")":
                    raise fail("missing ')'")
                i += 1
                return v
            if t == "-":
                return checked(-atom(), "the negation")
            raise fail(f"unexpected {t!r}")

        def product() -> int:
            nonlocal i
            v = atom()
            while peek() == "*":
                i += 1
                v = checked(v * atom(), "a product")
            return v

        def total() -> int:
            nonlocal i
            v = product()
            while peek() in ("+", "-"):
                op = toks[i][1]
                i += 1
                v = checked(v + product() if op == "+" else v - product(),
                            "a sum" if op == "+" else "a difference")
            return v

        def orexpr() -> int:
            nonlocal i
            v = total()
            while peek() == "|":
                i += 1
                v = checked(v | total(), "an or")
            return v

        v = orexpr()
        if i != len(toks):
            raise fail(f"unexpected {toks[i][1]!r}")
        return v


# ------------------------------------------------------------------------------------------
# argument kinds


@dataclass(frozen=True)
class _Arg:
    name: str
    kind: str  # "int" | "prot" | "access" | "str" | "any" | "bool"
    default: Any = ...  # ... = required

    @property
    def required(self) -> bool:
        return self.default is ...


def _int_value(v: Any, path: str, kind: str) -> int | _Expr:
    """A JSON value as an int, or a parsed expression to evaluate at replay time."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        want = "an integer, a hex string, a size ('16K'), a constant expression or '$name'"
        if kind == "prot":
            want += " or 'rwx'-style text"
        raise ScenarioError(path, f"expected {want}, got {json.dumps(v)}")
    if isinstance(v, int):
        if not _fits(v):
            raise ScenarioError(path, f"{v:#x} does not fit in 64 bits (arguments are C's "
                                "64-bit integers)")
        return v
    if kind == "prot" and _PROT_RE.match(v):
        return (1 if v[0] == "r" else 0) | (2 if v[1] == "w" else 0) | (4 if v[2] == "x" else 0)
    e = _Expr(v, path)
    return e if e.refs else e.evaluate({})


def _check_arg(a: _Arg, v: Any, path: str) -> Any:
    if a.kind in ("int", "prot"):
        return _int_value(v, path, a.kind)
    if a.kind == "access":
        if v in ("r", "read"):
            return "r"
        if v in ("w", "write"):
            return "w"
        raise ScenarioError(path, f'expected "r" (a load) or "w" (a store), got {json.dumps(v)}')
    if a.kind == "str":
        if not isinstance(v, str) or not v:
            raise ScenarioError(path, f"expected a non-empty string, got {json.dumps(v)}")
        return v
    if a.kind == "bool":
        if not isinstance(v, bool):
            raise ScenarioError(path, f"expected true or false, got {json.dumps(v)}")
        return v
    if a.kind == "size_or_none":
        return None if v is None else _int_value(v, path, "int")
    return v  # "any": JSON value kept as it is (a page's content)


# ------------------------------------------------------------------------------------------
# operations


@dataclass(frozen=True)
class _Op:
    name: str
    kind: str  # "syscall" | "vm_map" | "access" | "process"
    args: tuple[_Arg, ...]
    result: str  # "errno" | "kern" | "addr" | "bool" | "signal" | "fd"
    saves: str = ""  # what "save" stores ("" = nothing to save)
    doc: str = ""


def _a(name: str, kind: str = "int", default: Any = ...) -> _Arg:
    return _Arg(name, kind, default)


_LEN = (_a("addr"), _a("len"))
OPS: dict[str, _Op] = {op.name: op for op in (
    # syscalls (sys/vm/vm_mmap.c): return an errno, 0 = success
    _Op("mmap", "syscall", (_a("addr", default=0), _a("len"), _a("prot", "prot"), _a("flags"),
                            _a("fd", default=-1), _a("pos", default=0)),
        "errno", "the address", "mmap(2)"),
    _Op("munmap", "syscall", _LEN, "errno", doc="munmap(2)"),
    _Op("mprotect", "syscall", (*_LEN, _a("prot", "prot")), "errno", doc="mprotect(2)"),
    _Op("minherit", "syscall", (*_LEN, _a("inherit")), "errno", doc="minherit(2)"),
    _Op("msync", "syscall", (*_LEN, _a("flags", default=0)), "errno", doc="msync(2)"),
    _Op("madvise", "syscall", (*_LEN, _a("behav")), "errno", doc="madvise(2)"),
    _Op("mlock", "syscall", _LEN, "errno", doc="mlock(2)"),
    _Op("munlock", "syscall", _LEN, "errno", doc="munlock(2)"),
    _Op("open", "syscall", (_a("path", "str"), _a("size", "size_or_none", None),
                            _a("flags", default=2)),
        "fd", "the file descriptor", "open(2) on the simulated disk (size creates the file)"),
    _Op("close", "syscall", (_a("fd"),), "errno", doc="close(2)"),
    _Op("setrlimit", "syscall", (_a("resource"), _a("value"), _a("hard", default=None)),
        "errno", doc="setrlimit(2): soft limit (and hard if given)"),
    _Op("fork", "process", (), "errno", doc="fork(2) → vmspace_fork; the child is named by "
        '"child"'),
    _Op("exit", "process", (), "errno", doc="exit(2) → vmspace_free"),
    # user accesses and faults (sys/vm/vm_fault.c)
    _Op("touch", "access", (_a("addr"), _a("access", "access", "r"), _a("value", "any", None)),
        "signal", doc='a user load ("r") or store ("w") through the MMU; faults as needed'),
    _Op("vm_fault", "vm_map", (_a("addr"), _a("fault_type", "prot"),
                               _a("fault_flags", default=0)), "kern", doc="vm_fault(9)"),
    # vm_map(9) (sys/vm/vm_map.c)
    _Op("vm_map_insert", "vm_map", (_a("offset", default=0), _a("start"), _a("end"),
                                    _a("prot", "prot"), _a("max", "prot", 7),
                                    _a("cow", default=0)),
        "kern", doc="vm_map_insert(9), anonymous (object NULL), map lock held around it"),
    _Op("vm_map_find", "vm_map", (_a("offset", default=0), _a("addr", default=0), _a("length"),
                                  _a("max_addr", default=0), _a("find_space", default=1),
                                  _a("prot", "prot"), _a("max", "prot", 7),
                                  _a("cow", default=0)),
        "kern", "the address", "vm_map_find(9), anonymous"),
    _Op("vm_map_find_min", "vm_map", (_a("offset", default=0), _a("addr", default=0),
                                      _a("length"), _a("min_addr"), _a("max_addr", default=0),
                                      _a("find_space", default=1), _a("prot", "prot"),
                                      _a("max", "prot", 7), _a("cow", default=0)),
        "kern", "the address", "vm_map_find_min, anonymous"),
    _Op("vm_map_fixed", "vm_map", (_a("offset", default=0), _a("start"), _a("length"),
                                   _a("prot", "prot"), _a("max", "prot", 7),
                                   _a("cow", default=0)),
        "kern", doc="vm_map_fixed, anonymous"),
    _Op("vm_map_stack", "vm_map", (_a("addrbos"), _a("max_ssize"), _a("prot", "prot", 3),
                                   _a("max", "prot", 7), _a("cow", default=0x1000)),
        "kern", doc="vm_map_stack (cow defaults to MAP_STACK_GROWS_DOWN)"),
    _Op("vm_map_findspace", "vm_map", (_a("start"), _a("length")), "addr", "the address",
        "vm_map_findspace(9), map lock held around it"),
    _Op("vm_map_lookup_entry", "vm_map", (_a("address"),), "bool", "the entry's start",
        "vm_map_lookup_entry(9), read lock held around it"),
    _Op("vm_map_delete", "vm_map", (_a("start"), _a("end")), "kern",
        doc="vm_map_delete(9), map lock held around it"),
    _Op("vm_map_remove", "vm_map", (_a("start"), _a("end")), "kern", doc="vm_map_remove(9)"),
    _Op("vm_map_protect", "vm_map", (_a("start"), _a("end"), _a("new_prot", "prot"),
                                     _a("new_maxprot", "prot", 0), _a("flags", default=1)),
        "kern", doc="vm_map_protect(9) (flags default VM_MAP_PROTECT_SET_PROT)"),
    _Op("vm_map_inherit", "vm_map", (_a("start"), _a("end"), _a("new_inheritance")), "kern",
        doc="vm_map_inherit(9)"),
    _Op("vm_map_growstack", "vm_map", (_a("addr"),), "kern", doc="vm_map_growstack"),
    _Op("vm_map_wire", "vm_map", (_a("start"), _a("end"), _a("flags", default=0x5)), "kern",
        doc="vm_map_wire(9) (flags default VM_MAP_WIRE_USER|VM_MAP_WIRE_NOHOLES)"),
    _Op("vm_map_unwire", "vm_map", (_a("start"), _a("end"), _a("flags", default=0x5)), "kern",
        doc="vm_map_unwire(9)"),
)}

_STEP_KEYS = {"op", "proc", "args", "save", "child", "expect", "note", "quiet"}
_EXEC_KEYS = {"program": "str", "rodata_pages": "int", "text_pages": "int", "data_pages": "int",
              "bss_pages": "int"}
_SIGNALS = ("ok", "SIGSEGV", "SIGBUS")


# ------------------------------------------------------------------------------------------
# the validated scenario


@dataclass
class ProcessSpec:
    name: str
    exec_image: dict[str, Any] | None = None  # keyword arguments of vmlab.core.exec_image
    min: int | None = None
    max: int | None = None
    rlimits: dict[str, int] = field(default_factory=dict)


@dataclass
class StepSpec:
    index: int
    op: str
    proc: str
    args: dict[str, Any]  # name -> int | _Expr | str | Any
    save: str | None = None
    child: str | None = None
    expect: Any = None  # None | "panic" | {"rv": ..., "value": ...} (values: int | _Expr | str)
    note: str = ""
    quiet: bool = False
    raw_args: dict[str, Any] = field(default_factory=dict)  # as written (for explanations)


@dataclass
class Scenario:
    """A validated scenario. ``raw`` is the JSON document it came from."""

    title: str
    description: str
    physmem: int
    pmap: str
    sysctls: dict[str, int]
    processes: list[ProcessSpec]
    steps: list[StepSpec]
    raw: dict[str, Any]
    source: str = ""


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of scenario files, vmlab/data/scenario.schema.json."""
    text = resources.files("vmlab").joinpath("data/scenario.schema.json").read_text("utf-8")
    return json.loads(text)


def _obj(v: Any, path: str, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ScenarioError(path, f"expected {what} (a JSON object), got {json.dumps(v)[:60]}")
    return v


def _unknown(d: Mapping[str, Any], allowed: set[str] | Mapping[str, Any], path: str,
             hint: str = "") -> None:
    for k in d:
        if k not in allowed:
            sep = "." if path else ""
            raise ScenarioError(f"{path}{sep}{k}", f"unknown key {k!r} (allowed: "
                                f"{', '.join(sorted(allowed))}){hint}")


def _small_int(v: Any, path: str, lo: int = 0, hi: int = 1 << 20) -> int:
    x = _int_value(v, path, "int")
    if isinstance(x, _Expr):
        raise ScenarioError(path, "a saved value ($name) cannot be used here")
    if not lo <= x <= hi:
        raise ScenarioError(path, f"expected an integer in [{lo}, {hi}], got {x}")
    return x


def _parse_expect(op: _Op, v: Any, path: str) -> Any:
    if v == "panic":
        return "panic"
    if isinstance(v, dict):
        _unknown(v, {"rv", "value"}, path)
        rv, val = v.get("rv"), v.get("value", ...)
    else:
        rv, val = v, ...
    out: dict[str, Any] = {}
    if rv is not None:
        p = f"{path}.rv" if isinstance(v, dict) else path
        if op.result == "signal":
            if rv not in _SIGNALS:
                raise ScenarioError(p, f"expected one of {', '.join(_SIGNALS)} or \"panic\", "
                                    f"got {json.dumps(rv)}")
            out["rv"] = rv
        elif op.result == "bool":
            if not isinstance(rv, bool):
                raise ScenarioError(p, f"expected true or false, got {json.dumps(rv)}")
            out["rv"] = rv
        else:
            out["rv"] = _int_value(rv, p, "int")
    if val is not ...:
        if op.result == "signal":
            out["value"] = val  # what a load reads: compared as text
        elif op.saves:
            out["value"] = _int_value(val, f"{path}.value", "int")
        else:
            raise ScenarioError(f"{path}.value", f"{op.name} returns no value to compare")
    if not out:
        raise ScenarioError(path, 'expected a return code, "panic" or {"rv": ..., "value": ...}')
    return out


def _load_process(p: Any, path: str) -> ProcessSpec:
    if isinstance(p, str):
        p = {"name": p}
    p = _obj(p, path, "a process name or {\"name\": ..., \"exec_image\": ...}")
    _unknown(p, {"name", "exec_image", "min", "max", "rlimits"}, path)
    name = p.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ScenarioError(f"{path}.name", "expected a process name (letters, digits, _ . -; "
                            f"starting with a letter), got {json.dumps(name)}")
    spec = ProcessSpec(name)
    ei = p.get("exec_image")
    if ei is not None and ei is not False:
        ei = {} if ei is True else _obj(ei, f"{path}.exec_image", "exec_image options or true")
        _unknown(ei, _EXEC_KEYS, f"{path}.exec_image")
        kw: dict[str, Any] = {}
        for k, v in ei.items():
            kp = f"{path}.exec_image.{k}"
            if _EXEC_KEYS[k] == "str":
                if not isinstance(v, str) or not v.startswith("/"):
                    raise ScenarioError(kp, f"expected an absolute path, got {json.dumps(v)}")
                kw["name"] = v
            else:
                kw[k] = _small_int(v, kp, 0, 4096)
        kw.setdefault("name", f"/bin/{name}")
        spec.exec_image = kw
        if "min" in p or "max" in p:
            raise ScenarioError(f"{path}.min", "min/max are for an empty address space; an "
                                "exec_image process has the amd64 user map")
    for k in ("min", "max"):
        if k in p:
            v = _int_value(p[k], f"{path}.{k}", "int")
            if isinstance(v, _Expr) or not 0 <= v <= _U64:
                raise ScenarioError(f"{path}.{k}", "expected an address in [0, 2**64)")
            setattr(spec, k, v)
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise ScenarioError(f"{path}.max", f"max {spec.max:#x} is below min {spec.min:#x}")
    rl = _obj(p.get("rlimits", {}), f"{path}.rlimits", "{\"RLIMIT_STACK\": value, ...}")
    for k, v in rl.items():
        if k not in ("RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_VMEM", "RLIMIT_AS"):
            raise ScenarioError(f"{path}.rlimits.{k}", "expected RLIMIT_DATA, RLIMIT_STACK, "
                                "RLIMIT_MEMLOCK, RLIMIT_VMEM or RLIMIT_AS")
        spec.rlimits[k] = _small_int(v, f"{path}.rlimits.{k}", 0, (1 << 63) - 1)
    return spec


def _load_step(i: int, s: Any, live: set[str], saved: set[str], gone: set[str]) -> StepSpec:
    path = f"steps[{i}]"
    s = _obj(s, path, "a step")
    op_name = s.get("op")
    if not isinstance(op_name, str) or op_name not in OPS:
        raise ScenarioError(f"{path}.op", f"unknown operation {json.dumps(op_name)}; expected "
                            f"one of: {', '.join(OPS)}")
    op = OPS[op_name]
    hint = " — the operation's arguments go in \"args\": {...}" if any(
        k in {a.name for a in op.args} for k in s) else ""
    _unknown(s, _STEP_KEYS, path, hint)
    proc = s.get("proc")
    if not isinstance(proc, str):
        raise ScenarioError(f"{path}.proc", f"expected the name of a process, got "
                            f"{json.dumps(proc)}")
    if proc not in live:
        why = "has exited" if proc in gone else "does not exist (yet)"
        raise ScenarioError(f"{path}.proc", f"process {proc!r} {why}; live processes: "
                            f"{', '.join(sorted(live)) or 'none'}")
    raw_args = _obj(s.get("args", {}), f"{path}.args", "the operation's arguments")
    known = {a.name: a for a in op.args}
    for k in raw_args:
        if k not in known:
            raise ScenarioError(f"{path}.args.{k}", f"{op_name} has no argument {k!r} "
                                f"(its arguments: {', '.join(known) or 'none'})")
    args: dict[str, Any] = {}
    for a in op.args:
        ap = f"{path}.args.{a.name}"
        if a.name in raw_args:
            v = _check_arg(a, raw_args[a.name], ap)
        elif a.required:
            raise ScenarioError(ap, f"{op_name} needs argument {a.name!r}")
        else:
            v = a.default
        if isinstance(v, _Expr):
            for r in sorted(v.refs - saved):
                raise ScenarioError(ap, f"${r} is not saved by an earlier step (saved so far: "
                                    f"{', '.join('$' + n for n in sorted(saved)) or 'none'})")
        args[a.name] = v
    step = StepSpec(i, op_name, proc, args, raw_args=dict(raw_args))
    if "save" in s:
        sv = s["save"]
        if not op.saves:
            raise ScenarioError(f"{path}.save", f"{op_name} returns nothing to save")
        if not isinstance(sv, str) or not _SAVE_RE.match(sv):
            raise ScenarioError(f"{path}.save", f"expected a name like \"a\" or \"buf1\", got "
                                f"{json.dumps(sv)}")
        step.save = sv
    if op_name == "fork":
        child = s.get("child")
        if not isinstance(child, str) or not _NAME_RE.match(child):
            raise ScenarioError(f"{path}.child", "fork needs \"child\": the new process's name, "
                                f"got {json.dumps(child)}")
        if child in live or child in gone:
            raise ScenarioError(f"{path}.child", f"a process called {child!r} already exists")
        step.child = child
    elif "child" in s:
        raise ScenarioError(f"{path}.child", "only fork takes \"child\"")
    if "expect" in s:
        step.expect = _parse_expect(op, s["expect"], f"{path}.expect")
        if isinstance(step.expect, dict):
            for k, v in step.expect.items():
                if isinstance(v, _Expr) and v.refs - saved:
                    raise ScenarioError(f"{path}.expect.{k}", f"${sorted(v.refs - saved)[0]} "
                                        "is not saved by an earlier step")
    note = s.get("note", "")
    if not isinstance(note, str):
        raise ScenarioError(f"{path}.note", f"expected text, got {json.dumps(note)}")
    step.note = note
    quiet = s.get("quiet", False)
    if not isinstance(quiet, bool):
        raise ScenarioError(f"{path}.quiet", f"expected true or false, got {json.dumps(quiet)}")
    step.quiet = quiet
    if step.save:
        saved.add(step.save)
    if step.child:
        live.add(step.child)
    if op_name == "exit":
        live.discard(proc)
        gone.add(proc)
    return step


#: Deepest nesting of arrays/objects a scenario may have (the schema needs 5; a page's content
#: in "value" may add some). Checked first, so that copying, printing and exporting the
#: document never meet Python's recursion limit.
MAX_DEPTH = 64


def _check_depth(doc: Any) -> None:
    """Raise `ScenarioError` when ``doc`` nests more than MAX_DEPTH levels (iteratively: the
    check itself must not recurse)."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ScenarioError("", f"the document nests arrays/objects more than {MAX_DEPTH} "
                                "levels deep; a scenario needs only a few")
        if isinstance(node, Mapping):
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)


def validate(doc: Any, source: str = "") -> Scenario:
    """Check a decoded JSON document and return the `Scenario` (or raise `ScenarioError`)."""
    _check_depth(doc)
    doc = _obj(doc, "", "a scenario")
    _unknown(doc, {"$schema", "format", "version", "title", "description", "machine",
                   "processes", "steps"}, "")
    if doc.get("format") != SCENARIO_FORMAT:
        raise ScenarioError("format", f'expected "{SCENARIO_FORMAT}", got '
                            f"{json.dumps(doc.get('format'))}")
    v = doc.get("version")
    if v != SCENARIO_VERSION:
        raise ScenarioError("version", f"expected {SCENARIO_VERSION} (the version this vmlab "
                            f"reads), got {json.dumps(v)}")
    for k in ("title", "description"):
        if not isinstance(doc.get(k, ""), str):
            raise ScenarioError(k, f"expected text, got {json.dumps(doc[k])}")
    mach = _obj(doc.get("machine", {}), "machine", "machine settings")
    _unknown(mach, {"physmem", "pmap", "sysctl"}, "machine")
    physmem = _small_int(mach.get("physmem", "16M"), "machine.physmem", 1 << 20, 1 << 30)
    if physmem % 4096:
        raise ScenarioError("machine.physmem", "expected a multiple of the page size (4096)")
    pmap = mach.get("pmap", "amd64")
    if pmap not in ("amd64", "mem"):
        raise ScenarioError("machine.pmap", f'expected "amd64" (x86-64 page tables) or "mem" '
                            f"(a plain dictionary), got {json.dumps(pmap)}")
    from vmlab.core.sysctl import sysctl_names

    known = sysctl_names()
    sysctls = {}
    for k, val in _obj(mach.get("sysctl", {}), "machine.sysctl", "{name: value}").items():
        if k not in known:
            raise ScenarioError(f"machine.sysctl.{k}", f"unknown sysctl; known: "
                                f"{', '.join(known)}")
        sysctls[k] = _small_int(val, f"machine.sysctl.{k}", 0, 1 << 40)
    procs_raw = doc.get("processes")
    if not isinstance(procs_raw, list) or not procs_raw:
        raise ScenarioError("processes", "expected a non-empty list of processes")
    procs = [_load_process(p, f"processes[{i}]") for i, p in enumerate(procs_raw)]
    seen: set[str] = set()
    for i, p in enumerate(procs):
        if p.name in seen:
            raise ScenarioError(f"processes[{i}].name", f"two processes are called {p.name!r}")
        seen.add(p.name)
    steps_raw = doc.get("steps")
    if not isinstance(steps_raw, list):
        raise ScenarioError("steps", "expected a list of steps")
    live, saved, gone = set(seen), set(), set()
    steps = [_load_step(i, s, live, saved, gone) for i, s in enumerate(steps_raw)]
    return Scenario(doc.get("title", ""), doc.get("description", ""), physmem, pmap, sysctls,
                    procs, steps, copy.deepcopy(doc), source)


def parse_scenario(text: str | bytes, name: str = "") -> Scenario:
    """Load and validate a scenario from its JSON text (bytes must be UTF-8), never a path:
    what ``vmlab replay -`` reads from standard input. ``name`` labels error messages.
    Raises `ScenarioError` for text that is not UTF-8, not JSON, nested too deeply or invalid.
    """
    label = name or "scenario"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioError("", f"{label}: not UTF-8 text (byte "
                                f"{exc.object[exc.start]:#04x} at offset {exc.start}); a "
                                "scenario is a JSON file") from None
    if not text.strip():
        raise ScenarioError("", f"{label}: empty; expected a JSON object "
                            f'{{"format": "{SCENARIO_FORMAT}", ...}}')
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError("", f"{label}: not valid JSON: {exc.msg} at line "
                            f"{exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the decoder allows; ValueError: a number of
        # more than 4,300 digits (sys.get_int_max_str_digits()).
        line, reason = json_error(exc, text)
        raise ScenarioError("", f"{label}: line {line}: {reason}") from None
    return validate(doc, name)


def load_scenario(src: str | Path | Mapping[str, Any]) -> Scenario:
    """Load and validate a scenario from a path, a JSON text or an already decoded dict.
    A `str` is JSON text when it starts with ``{``, else a path (use `parse_scenario` for
    text that may be anything). Raises `ScenarioError` (a ValueError) with the path of the bad
    field; a file that cannot be read raises OSError."""
    if isinstance(src, Mapping):
        return validate(dict(src))
    if isinstance(src, Path) or (isinstance(src, str) and not src.lstrip().startswith("{")):
        name = str(src)
        if "\0" in name:
            raise ScenarioError("", f"{name!r}: a file name cannot contain a NUL byte")
        return parse_scenario(Path(src).read_bytes(), name)
    return parse_scenario(str(src))


def example_names() -> list[str]:
    """The scenarios shipped in vmlab/data/scenarios/ (without ``.json``)."""
    d = resources.files("vmlab").joinpath("data/scenarios")
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json"))


def load_example(name: str) -> Scenario:
    """A shipped scenario by name, e.g. ``load_example("fork-and-cow")``."""
    if name not in example_names():
        raise ScenarioError("", f"no shipped scenario {name!r}; there are: "
                            f"{', '.join(example_names())}")
    p = resources.files("vmlab").joinpath(f"data/scenarios/{name}.json")
    sc = validate(json.loads(p.read_text("utf-8")), f"{name}.json")
    return sc


# ------------------------------------------------------------------------------------------
# replay


@dataclass
class StepResult:
    """What one step did: ``rv`` (errno, KERN code, bool or 'ok'/'SIGSEGV'/'SIGBUS'/'panic'),
    ``value`` (saved address / fd / what a load read), ``ok`` (False if ``expect`` failed)."""

    index: int
    proc: str
    op: str
    args: dict[str, Any]
    rv: Any
    value: Any
    ok: bool
    message: str


@dataclass
class Replay:
    """A replayed scenario: the trace, the live processes by name, saved values, results."""

    scenario: Scenario
    trace: Any
    machine: Any
    procs: dict[str, Any]
    values: dict[str, int]
    results: list[StepResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def trace_json(self, indent: int | None = None) -> str:
        """The trace as JSON text (docs/trace-format.md); identical for identical scenarios."""
        return json.dumps(self.trace.to_dict(), indent=indent, sort_keys=True)


@contextmanager
def _fresh_ids() -> Iterator[None]:
    """Number pids, map ids, object ids and file ids from their start values during a replay,
    so that a replay's trace does not depend on what ran before it in this Python process.
    Afterwards every counter continues above all ids handed out so far (no id is reused)."""
    pager, vm_map, vm_object, vmspace = (importlib.import_module(f"vmlab.core.{m}") for m in
                                         ("pager", "vm_map", "vm_object", "vmspace"))
    slots = [(vmspace, "_pids", 100), (vm_map, "_map_ids", 1),
             (vm_object, "_next_object_id", 1), (pager, "_file_ids", 1)]
    saved = [next(getattr(mod, attr)) for mod, attr, _ in slots]
    fresh = [itertools.count(start) for _, _, start in slots]
    for (mod, attr, _), c in zip(slots, fresh, strict=True):
        setattr(mod, attr, c)
    try:
        yield
    finally:
        for (mod, attr, _), old, c in zip(slots, saved, fresh, strict=True):
            setattr(mod, attr, itertools.count(max(old, next(c))))


@contextmanager
def _sysctls(values: Mapping[str, int]) -> Iterator[None]:
    from vmlab.core.sysctl import sysctl

    old = {k: sysctl(k, v) for k, v in values.items()}
    try:
        yield
    finally:
        for k, v in old.items():
            sysctl(k, v)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        return json.dumps(v)
    return f"{v:#x}" if abs(v) >= 10 else str(v)


def _errno_name(e: int) -> str:
    if e == 0:
        return "0"
    sc = importlib.import_module("vmlab.core.syscalls")
    for n in ("EPERM", "EIO", "EBADF", "ENOMEM", "EACCES", "EBUSY", "ENODEV", "EINVAL", "EAGAIN",
              "ENOTSUP"):
        if getattr(sc, n) == e:
            return n
    return str(e)


def _rv_text(op: _Op, rv: Any) -> str:
    from vmlab.core.constants import KERN

    if op.result in ("errno", "fd"):
        return _errno_name(int(rv)) if op.result == "errno" else str(rv)
    if op.result == "kern":
        return f"KERN_{KERN(int(rv)).name}"
    if op.result == "addr":
        return f"{int(rv):#x}"
    if op.result == "bool":
        return "TRUE" if rv else "FALSE"
    return str(rv)


class _Runner:
    def __init__(self, sc: Scenario) -> None:
        from vmlab.core.machine import Machine
        from vmlab.core.trace import Trace

        self.sc = sc
        self.machine = Machine(sc.physmem, pmap_factory=sc.pmap)
        self.trace = Trace()
        self.trace.meta = {"title": sc.title, "description": sc.description,
                           "scenario": Path(sc.source).name if sc.source else "",
                           "processes": {}}
        self.procs: dict[str, Any] = {}
        self.values: dict[str, int] = {}
        self.results: list[StepResult] = []
        # $names and processes an earlier step should have made but did not (its call failed):
        # name → why, so a later step that uses one fails with that sentence, not a KeyError.
        self.lost_values: dict[str, str] = {}
        self.lost_procs: dict[str, str] = {}

    # -- processes ------------------------------------------------------------------------
    def _adopt(self, name: str, vm: Any) -> None:
        vm.name = name
        self.procs[name] = vm
        self.trace.meta["processes"][str(vm.pid)] = name

    def start(self) -> None:
        from vmlab.core.exec_image import exec_image
        from vmlab.core.vmspace import getrlimit, setrlimit, vmspace_alloc

        for p in self.sc.processes:
            if p.exec_image is not None:
                vm = exec_image(self.machine, **p.exec_image)
            else:
                kw = {k: getattr(p, k) for k in ("min", "max") if getattr(p, k) is not None}
                vm = vmspace_alloc(machine=self.machine, **kw)
            ns = _names()
            for k, v in p.rlimits.items():
                hard = max(v, getrlimit(vm, ns[k], hard=True))
                vm.rlimits[ns[k]] = [v, hard]
            self._adopt(p.name, vm)
            _ = setrlimit

    # -- one step -------------------------------------------------------------------------
    def _eval(self, v: Any) -> Any:
        return v.evaluate(self.values) if isinstance(v, _Expr) else v

    @staticmethod
    def _show(step: StepSpec, k: str, v: Any) -> str:
        """An argument as the scenario wrote it ("16K", "PROT_READ|PROT_WRITE"), except that
        saved values ($a) are shown evaluated."""
        raw = step.raw_args.get(k)
        kinds = {a.name: a.kind for a in OPS[step.op].args}
        if isinstance(raw, str) and "$" not in raw and kinds.get(k) in ("int", "prot"):
            return raw
        return _fmt(v)

    def _call(self, step: StepSpec, vm: Any, a: dict[str, Any]) -> tuple[Any, Any, str]:
        """Run the operation; returns (rv, value, extra text)."""
        # Modules by full name: vmlab.core re-exports functions that shadow some module names
        # (vmlab.core.vm_fault is the function there).
        sc = importlib.import_module("vmlab.core.syscalls")
        vf = importlib.import_module("vmlab.core.vm_fault")
        vmm = importlib.import_module("vmlab.core.vm_map")
        vmf = importlib.import_module("vmlab.core.vm_map_find")
        vmp = importlib.import_module("vmlab.core.vm_map_protect")
        vm_stack = importlib.import_module("vmlab.core.vm_stack")
        vm_sync = importlib.import_module("vmlab.core.vm_sync")
        from vmlab.core.lock import vm_map_lock, vm_map_lock_read, vm_map_unlock, vm_map_unlock_read
        from vmlab.core.vmspace import setrlimit, vmspace_free

        op, m = step.op, vm.vm_map
        if op == "mmap":
            e, addr = sc.mmap(vm, a["addr"], a["len"], a["prot"], a["flags"], a["fd"], a["pos"])
            return e, (addr if e == 0 else None), ""
        if op in ("munmap", "mlock", "munlock"):
            return getattr(sc, op)(vm, a["addr"], a["len"]), None, ""
        if op in ("mprotect", "minherit", "msync", "madvise"):
            third = {"mprotect": "prot", "minherit": "inherit", "msync": "flags",
                     "madvise": "behav"}[op]
            return getattr(sc, op)(vm, a["addr"], a["len"], a[third]), None, ""
        if op == "open":
            fd = sc.open_file(vm, a["path"], a["size"], a["flags"])
            return fd, fd, ""
        if op == "close":
            return sc.close(vm, a["fd"]), None, ""
        if op == "setrlimit":
            return setrlimit(vm, a["resource"], a["value"], a["hard"]), None, ""
        if op == "fork":
            e, child = sc.fork(vm)
            if e == 0:
                self._adopt(step.child, child)
            return e, None, f"; the child is {step.child} (pid {child.pid})" if e == 0 else ""
        if op == "exit":
            vmspace_free(vm)
            return 0, None, ""
        if op == "touch":
            try:
                if a["access"] == "w":
                    val = a["value"] if a["value"] is not None else f"{step.proc}@{a['addr']:#x}"
                    vf.vm_write(vm, a["addr"], val)
                    return "ok", None, ""
                return "ok", vf.vm_read(vm, a["addr"]), ""
            except vf.VmAccessError as exc:
                return exc.signal, None, f": {exc}"
        if op == "vm_fault":
            return vf.vm_fault(m, a["addr"], a["fault_type"], a["fault_flags"]), None, ""
        if op in ("vm_map_insert", "vm_map_findspace", "vm_map_delete"):
            vm_map_lock(m)
            try:
                if op == "vm_map_insert":
                    rv = vmm.vm_map_insert(m, None, a["offset"], a["start"], a["end"], a["prot"],
                                           a["max"], a["cow"])
                    return rv, None, ""
                if op == "vm_map_delete":
                    return vmm.vm_map_delete(m, a["start"], a["end"]), None, ""
                addr = vmm.vm_map_findspace(m, a["start"], a["length"])
                return addr, addr, ""
            finally:
                vm_map_unlock(m)
        if op == "vm_map_lookup_entry":
            vm_map_lock_read(m)
            try:
                found, entry = vmm.vm_map_lookup_entry(m, a["address"])
                return bool(found), (int(entry.start) if found else None), ""
            finally:
                vm_map_unlock_read(m)
        if op == "vm_map_find":
            rv, addr = vmf.vm_map_find(m, None, a["offset"], a["addr"], a["length"],
                                       a["max_addr"], a["find_space"], a["prot"], a["max"],
                                       a["cow"])
            return rv, addr, ""
        if op == "vm_map_find_min":
            rv, addr = vmf.vm_map_find_min(m, None, a["offset"], a["addr"], a["length"],
                                           a["min_addr"], a["max_addr"], a["find_space"],
                                           a["prot"], a["max"], a["cow"])
            return rv, addr, ""
        if op == "vm_map_fixed":
            return vmf.vm_map_fixed(m, None, a["offset"], a["start"], a["length"], a["prot"],
                                    a["max"], a["cow"]), None, ""
        if op == "vm_map_stack":
            return vmf.vm_map_stack(m, a["addrbos"], a["max_ssize"], a["prot"], a["max"],
                                    a["cow"]), None, ""
        if op == "vm_map_remove":
            return vmm.vm_map_remove(m, a["start"], a["end"]), None, ""
        if op == "vm_map_protect":
            return vmp.vm_map_protect(m, a["start"], a["end"], a["new_prot"], a["new_maxprot"],
                                      a["flags"]), None, ""
        if op == "vm_map_inherit":
            return vmp.vm_map_inherit(m, a["start"], a["end"], a["new_inheritance"]), None, ""
        if op == "vm_map_growstack":
            return vm_stack.vm_map_growstack(m, a["addr"]), None, ""
        if op in ("vm_map_wire", "vm_map_unwire"):
            return getattr(vm_sync, op)(m, a["start"], a["end"], a["flags"]), None, ""
        raise AssertionError(op)  # pragma: no cover - OPS and this table agree (tested)

    def run_step(self, step: StepSpec) -> StepResult:
        from vmlab.core.trace import recording

        op = OPS[step.op]
        if step.proc not in self.procs:
            raise ScenarioReplayError(step.index, f"{step.op} cannot run: process "
                                      f"{step.proc!r} " + self.lost_procs.get(
                                          step.proc, "does not exist"))
        vm = self.procs[step.proc]
        tr = self.trace
        self._require_values(step)
        try:
            args = {k: self._eval(v) for k, v in step.args.items()}
        except ScenarioError as exc:
            raise ScenarioReplayError(step.index, f"{step.op} cannot run: {exc}") from None
        shown = ", ".join(f"{k}={self._show(step, k, v)}" for k, v in args.items()
                          if v is not None and (k in step.raw_args or
                                                OPS[step.op].args[0].name == k))
        head = f"{step.proc}: {step.op}({shown})"
        if op.kind == "process" and step.op == "fork":
            head = f"{step.proc}: fork() → {step.child}"
        tr.mark_dirty(vm)
        tr.record(vm, "scenario_op", head + (f" — {step.note}" if step.note else "."),
                  index=step.index, proc=step.proc, op=step.op,
                  args={k: v for k, v in args.items() if isinstance(v, (int, str, type(None)))},
                  note=step.note)
        panic = ""
        rv: Any = None
        value: Any = None
        extra = ""
        try:
            if step.quiet:
                rv, value, extra = self._call(step, vm, args)
            else:
                with recording(vm, trace=tr):
                    rv, value, extra = self._call(step, vm, args)
        except (ValueError, TypeError, RuntimeError) as exc:
            if step.expect != "panic":
                raise ScenarioReplayError(step.index, f"{head} would panic the kernel: "
                                          f"{exc}") from exc
            panic = str(exc)
        if isinstance(rv, int) and not isinstance(rv, bool):
            rv = int(rv)
        try:
            ok, why = self._check(step, op, rv, value, panic)
        except ScenarioError as exc:
            raise ScenarioReplayError(step.index, f"cannot check the expectation: {exc}") from None
        if step.save and value is not None:
            self.values[step.save] = int(value)
            self.lost_values.pop(step.save, None)
        elif step.save:
            # The call failed: $name has no value now (not an older one, which would silently
            # point at another mapping), and a later step that uses it says why.
            self.values.pop(step.save, None)
            failed = "panicked" if panic else f"returned {_rv_text(op, rv)}"
            self.lost_values[step.save] = (f"steps[{step.index}] ({step.proc}: {step.op}) "
                                           f"{failed}, so it saved nothing")
        if step.op == "fork" and step.child not in self.procs and step.child:
            failed = "panicked" if panic else f"returned {_rv_text(op, rv)}"
            self.lost_procs[step.child] = (f"was never created: the fork at steps[{step.index}] "
                                           f"{failed}")
        if panic:
            text = f"{step.op} would panic the kernel (KASSERT): {panic}"
            rv_out: Any = "panic"
        else:
            text = f"{step.op} returned {_rv_text(op, rv)}"
            if value is not None and op.result != "addr":
                text += f" ({_fmt(value) if isinstance(value, int) else repr(value)})"
            text += extra + "."
            rv_out = rv
        if step.save and value is not None:
            text += f" Saved as ${step.save} = {_fmt(int(value))}."
        if not ok:
            text += f" EXPECTED {why}."
        who = self.procs.get(step.child) if step.op == "fork" and step.child in self.procs else vm
        tr.mark_dirty(who)
        tr.record(who, "scenario_result", f"{step.proc}: {text}", index=step.index,
                  proc=step.proc, op=step.op, rv=rv_out if not isinstance(rv_out, bool)
                  else int(rv_out), value=value if isinstance(value, (int, type(None))) else
                  repr(value), expect=_expect_json(step.expect), ok=ok, saved=step.save)
        res = StepResult(step.index, step.proc, step.op, args, rv_out, value, ok, text)
        self.results.append(res)
        return res

    def _require_values(self, step: StepSpec) -> None:
        """Every ``$name`` the step reads (arguments and expect) has a value, or the step
        fails with a sentence naming the earlier step that did not save it."""
        exprs = [v for v in step.args.values() if isinstance(v, _Expr)]
        if isinstance(step.expect, dict):
            exprs += [v for v in step.expect.values() if isinstance(v, _Expr)]
        for e in exprs:
            for r in sorted(e.refs):
                if r not in self.values:
                    why = self.lost_values.get(r, "no earlier step saved it")
                    raise ScenarioReplayError(step.index, f"{step.op} cannot run: it uses "
                                              f"${r} ({e.path}), but {why}")

    def _check(self, step: StepSpec, op: _Op, rv: Any, value: Any, panic: str) -> tuple[bool,
                                                                                        str]:
        exp = step.expect
        if exp is None:
            return True, ""
        if exp == "panic":
            return (True, "") if panic else (False, "a panic")
        if "rv" in exp:
            want = self._eval(exp["rv"])
            if rv != want:
                shown = want if op.result == "signal" else _rv_text(op, want)
                return False, f"{shown}"
        if "value" in exp:
            want = exp["value"]
            if op.result == "signal":
                if str(value) != str(want):
                    return False, f"to read {want!r}"
            else:
                want = self._eval(want)
                if value != want:
                    return False, f"value {_fmt(want)}"
        return True, ""


def _expect_json(exp: Any) -> Any:
    if exp is None or exp == "panic":
        return exp
    return {k: (v.text if isinstance(v, _Expr) else v) for k, v in exp.items()}


def replay(sc: Scenario | str | Path | Mapping[str, Any], *, check: bool = True,
           progress: Callable[[int, int], None] | None = None) -> Replay:
    """Run a scenario (a `Scenario`, a path, JSON text or a dict) on a fresh machine and
    return the `Replay` with its trace. With ``check`` (the default) a step whose result
    differs from its ``expect`` raises `ScenarioExpectationError` after it ran; with
    ``check=False`` it is recorded (``StepResult.ok`` False, ``Replay.ok`` False) and replay
    goes on. A kernel panic that was not expected raises `ScenarioReplayError`."""
    if not isinstance(sc, Scenario):
        sc = load_scenario(sc)
    with _fresh_ids(), _sysctls(sc.sysctls):
        r = _Runner(sc)
        r.start()
        try:
            for k, step in enumerate(sc.steps):
                res = r.run_step(step)
                if progress is not None:
                    progress(k + 1, len(sc.steps))
                if check and not res.ok:
                    raise ScenarioExpectationError(step.index, res.message)
        except ScenarioReplayError as exc:
            exc.results = [x for x in r.results if x.index < exc.index]
            raise
    return Replay(sc, r.trace, r.machine, r.procs, r.values, r.results)


def _build_schema() -> dict[str, Any]:
    """The JSON Schema, generated from `OPS` (the shipped file must equal this; tested)."""
    intish = {"$ref": "#/$defs/int"}
    kinds = {"int": intish, "prot": {"$ref": "#/$defs/prot"},
             "access": {"enum": ["r", "w", "read", "write"]},
             "str": {"type": "string", "minLength": 1}, "bool": {"type": "boolean"},
             "any": {}, "size_or_none": {"anyOf": [intish, {"type": "null"}]}}
    common = {"op": {}, "proc": {"$ref": "#/$defs/name"},
              "note": {"type": "string", "description": "shown with the step in the trace"},
              "quiet": {"type": "boolean",
                        "description": "record only the step's result, not the kernel's steps"}}
    branches = []
    for op in OPS.values():
        props: dict[str, Any] = dict(common)
        props["op"] = {"const": op.name}
        props["args"] = {
            "type": "object", "additionalProperties": False,
            "properties": {a.name: kinds[a.kind] for a in op.args},
            "required": [a.name for a in op.args if a.required],
        }
        if op.result == "signal":
            rv: dict[str, Any] = {"enum": list(_SIGNALS)}
        elif op.result == "bool":
            rv = {"type": "boolean"}
        else:
            rv = intish
        exp_obj: dict[str, Any] = {"type": "object", "additionalProperties": False,
                                   "minProperties": 1, "properties": {"rv": rv}}
        if op.saves or op.result == "signal":
            exp_obj["properties"]["value"] = {} if op.result == "signal" else intish
        props["expect"] = {"anyOf": [{"const": "panic"}, rv, exp_obj]}
        required = ["op", "proc"]
        if op.saves:
            props["save"] = {"type": "string", "pattern": _SAVE_RE.pattern}
        if op.name == "fork":
            props["child"] = {"$ref": "#/$defs/name"}
            required.append("child")
        if any(a.required for a in op.args):
            required.append("args")
        branches.append({"if": {"properties": {"op": {"const": op.name}}, "required": ["op"]},
                         "then": {"properties": props, "required": required,
                                  "additionalProperties": False}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vmlab.example/scenario.schema.json",
        "title": "vmlab scenario",
        "description": "A list of syscalls and vm_map calls on named processes that vmlab "
        "replays into a trace (docs/scenarios.md). Cross-field rules (processes must exist and "
        "be alive, $names must be saved earlier, constants must be known) are checked by "
        "vmlab.io.scenario.load_scenario.",
        "type": "object",
        "additionalProperties": False,
        "required": ["format", "version", "processes", "steps"],
        "properties": {
            "$schema": {"type": "string"},
            "format": {"const": SCENARIO_FORMAT},
            "version": {"const": SCENARIO_VERSION},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "machine": {
                "type": "object", "additionalProperties": False,
                "properties": {"physmem": intish, "pmap": {"enum": ["amd64", "mem"]},
                               "sysctl": {"type": "object",
                                          "additionalProperties": intish}},
            },
            "processes": {"type": "array", "minItems": 1,
                          "items": {"anyOf": [{"$ref": "#/$defs/name"},
                                              {"$ref": "#/$defs/process"}]}},
            "steps": {"type": "array", "items": {
                "type": "object", "required": ["op", "proc"],
                "properties": {"op": {"enum": list(OPS)}},
                "allOf": branches}},
        },
        "$defs": {
            "name": {"type": "string", "pattern": _NAME_RE.pattern},
            "int": {"description": "an integer, or a string: 42, 0x1000, 16K, PROT_READ|"
                    "PROT_WRITE, $a+4*PAGE_SIZE, MAP_ALIGNED(21)",
                    "anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]},
            "prot": {"description": "like int, or rwx-style text such as \"rw-\"",
                     "$ref": "#/$defs/int"},
            "process": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {
                    "name": {"$ref": "#/$defs/name"},
                    "exec_image": {"anyOf": [{"type": "boolean"}, {
                        "type": "object", "additionalProperties": False,
                        "properties": {"program": {"type": "string", "pattern": "^/"},
                                       **{k: intish for k, t in _EXEC_KEYS.items()
                                          if t == "int"}}}]},
                    "min": intish, "max": intish,
                    "rlimits": {"type": "object", "additionalProperties": False,
                                "properties": {k: intish for k in (
                                    "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK",
                                    "RLIMIT_VMEM", "RLIMIT_AS")}},
                },
            },
        },
    }

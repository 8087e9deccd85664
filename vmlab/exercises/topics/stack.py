"""stack: what does vm_map_growstack return for a fault below the stack, and how large is the
stack afterwards?

FreeBSD 14 (sys/vm/vm_map.c, vm_map_growstack, called by vm_map_lookup for a fault in a stack
gap; sys/kern/kern_exec.c, exec_new_vmspace, for the main stack): grow = round_page(stack
bottom − addr); a growth that would reach into the guard page (security.bsd.stack_guard_page,
one page) → KERN_NO_SPACE; for the main stack ctob(vm_ssize) + grow > RLIMIT_STACK →
KERN_NO_SPACE; otherwise grow is rounded up to sgrowsiz (kern.sgrowsiz, 128 KiB) and capped at
what the gap allows above the guard and at trunc_page(RLIMIT_STACK) − ctob(vm_ssize). When
growstack fails, vm_map_lookup goes on to the gap's protection (none) and the fault returns
KERN_PROTECTION_FAILURE: SIGSEGV.

The scene is a process just after exec (`exec_image`), maybe after some earlier growth; the
stack size asked for is ctob(vm_ssize) after the call, read from the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vmlab.core import (
    DFLSSIZ,
    KERN,
    MAXSSIZ,
    PAGE_SIZE,
    RLIMIT_STACK,
    SGROWSIZ,
    VM_PROT,
    Machine,
    VmAccessError,
    exec_image,
    getrlimit,
    setrlimit,
    sysctl,
    trunc_page,
    vm_fault,
    vm_map_growstack,
    vm_write,
)

from ..base import Answer, Part, Problem
from ..parse import AnswerError
from ..rng import Rng
from ..scene import map_table, traced

__all__ = ["SizePart", "build", "fmt_size", "generate", "parse_size"]

TOPIC = "stack"
_MEM = 1 << 22
_KIB, _MIB, _GIB = 1 << 10, 1 << 20, 1 << 30

# ----------------------------------------------------------------------------------------
# sizes: 0x40000, 262144, 256 KiB, 256K, 0.25 MiB, 64 pages

_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": _KIB, "kb": _KIB, "kib": _KIB,
          "m": _MIB, "mb": _MIB, "mib": _MIB, "g": _GIB, "gb": _GIB, "gib": _GIB,
          "page": PAGE_SIZE, "pages": PAGE_SIZE, "p": PAGE_SIZE, "pg": PAGE_SIZE}
_SIZE = re.compile(r"(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9]+)?)\s*"
                   r"(kib|kb|k|mib|mb|m|gib|gb|g|bytes|byte|b|pages|page|pg|p)?(?![a-z])",
                   re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size in bytes: ``0x40000``, ``262144`` (no unit = bytes), ``256 KiB`` / ``256K`` /
    ``256 KB`` (K = KB = KiB = 1024), ``0.25 MiB``, ``64 pages``. The same size written twice
    (``0x40000 (256 KiB)``) is fine; two different sizes are not."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    vals = []
    for m in _SIZE.finditer(text):
        before = text[m.start() - 1] if m.start() else " "
        if before.isalpha() or before == "_":
            continue
        num, unit = m.group(1).replace("_", ""), (m.group(2) or "").lower()
        v = Fraction(int(num, 16)) if num[:2].lower() == "0x" else Fraction(num)
        v *= _UNITS[unit]
        if v.denominator != 1:
            raise AnswerError(f"{m.group(0).strip()!r} is not a whole number of bytes")
        vals.append(int(v))
    if not vals:
        raise AnswerError(f"no size found in {text.strip()!r}: write e.g. 256 KiB or 0x40000")
    if len(set(vals)) > 1:
        raise AnswerError(f"expected one size, found {len(vals)} different numbers")
    return vals[0]


def fmt_size(n: int) -> str:
    """``0x40000 (256 KiB)``: hex bytes and the friendliest exact unit."""
    if n and n % _MIB == 0:
        return f"{n:#x} ({n // _MIB} MiB)"
    if n % _KIB == 0:
        return f"{n:#x} ({n // _KIB} KiB)"
    return f"{n:#x} ({n} bytes)"


@dataclass(frozen=True)
class SizePart(Part):
    """A "size" answer part that accepts units (KiB, MiB, pages) and prints KiB too."""

    def text(self) -> str:
        return fmt_size(int(self.value))

    def parse(self, text: str) -> int:
        return parse_size(text)


# ----------------------------------------------------------------------------------------
# the scene


@contextmanager
def _sgrowsiz(value: int) -> Iterator[None]:
    """kern.sgrowsiz set for the scene and the call, restored after (it is global state)."""
    old = sysctl("kern.sgrowsiz", value)
    try:
        yield
    finally:
        sysctl("kern.sgrowsiz", old)


def _scene(p: dict[str, Any]) -> Any:
    """exec, setrlimit(RLIMIT_STACK), then the earlier pushes (stores below the stack)."""
    vm = exec_image(Machine(_MEM), name="/bin/deep")
    if p["rlimit_stack"] != getrlimit(vm, RLIMIT_STACK):
        err = setrlimit(vm, RLIMIT_STACK, p["rlimit_stack"])
        if err:
            raise ValueError(f"setrlimit(RLIMIT_STACK, {p['rlimit_stack']:#x}) failed: errno "
                             f"{err} (the hard limit is {getrlimit(vm, RLIMIT_STACK, True):#x})")
    for a in p["grown"]:
        try:
            vm_write(vm, a, "frame")
        except VmAccessError as exc:
            raise ValueError(f"the earlier store to {a:#x} fails: {exc}") from None
    return vm


def _bottom(vm: Any) -> int:
    return vm.vm_stacktop - vm.vm_ssize * PAGE_SIZE


def _facts(vm: Any, p: dict[str, Any]) -> str:
    guard = sysctl("security.bsd.stack_guard_page")
    ss = vm.vm_ssize * PAGE_SIZE
    return "\n".join([
        f"kern.sgrowsiz = {fmt_size(p['sgrowsiz'])}; security.bsd.stack_guard_page = {guard} "
        f"({fmt_size(guard * PAGE_SIZE)} of guard at the bottom of the gap)",
        f"RLIMIT_STACK (soft) = {fmt_size(p['rlimit_stack'])}",
        f"vm_maxsaddr = {vm.vm_maxsaddr:#x}, vm_stacktop = {vm.vm_stacktop:#x}",
        f"vm_ssize = {vm.vm_ssize} pages = {fmt_size(ss)}: the stack is "
        f"[{_bottom(vm):#x}, {vm.vm_stacktop:#x})",
    ])


def build(addr: int, rlimit_stack: int = DFLSSIZ, grown: list[int] | None = None,
          sgrowsiz: int = SGROWSIZ, seed: int | None = None) -> Problem:
    """Explicit input: a process right after exec_image (main stack of sgrowsiz below
    USRSTACK over a 512 MiB reservation), soft RLIMIT_STACK ``rlimit_stack``, earlier stores to
    the addresses in ``grown`` (in order), then vm_map_growstack(map, ``addr``). ``sgrowsiz``
    sets kern.sgrowsiz for the scene and the call (then the animation is not offered: the
    widget would run with the global default)."""
    sgrowsiz, rlimit_stack, addr = int(sgrowsiz), int(rlimit_stack), int(addr)
    if sgrowsiz < PAGE_SIZE or sgrowsiz % PAGE_SIZE:
        raise ValueError("sgrowsiz must be a positive multiple of the page size")
    if rlimit_stack < 0:
        raise ValueError("rlimit_stack must be >= 0")
    params = {"addr": addr, "rlimit_stack": rlimit_stack,
              "grown": [int(a) for a in (grown or [])], "sgrowsiz": sgrowsiz}
    with _sgrowsiz(sgrowsiz):
        scene = _scene(params)
    bottom = _bottom(scene)

    def run() -> tuple[Answer, list[str]]:
        with _sgrowsiz(sgrowsiz):
            vm, rv, steps = traced(lambda: _scene(params),
                                   lambda vm: vm_map_growstack(vm.vm_map, addr),
                                   lambda vm: [vm])
            size = vm.vm_ssize * PAGE_SIZE
            other = _scene(params)
            frv = vm_fault(other.vm_map, trunc_page(addr), int(VM_PROT.WRITE))
        steps.append(f"vm_ssize is now {vm.vm_ssize} pages = {fmt_size(size)}.")
        steps.append(f"Through the page fault itself: vm_fault returns KERN_{KERN(frv).name}"
                     + (" (vm_map_lookup finds the gap's protection: none) and the process "
                        "gets SIGSEGV." if frv != KERN.SUCCESS else "; the store completes."))
        return Answer((Part("return value", "kern", KERN(rv)),
                       SizePart("stack size", "size", size))), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        out = []
        if ans["return value"] == KERN.NO_SPACE:
            out.append("Would the growth reach the guard page at the bottom of the gap, or make "
                       "ctob(vm_ssize) + grow exceed RLIMIT_STACK? Then it is refused and "
                       "nothing changes.")
        else:
            out.append("grow = round_page(stack bottom − addr), rounded up to sgrowsiz, but "
                       "never into the guard and never past trunc_page(RLIMIT_STACK) − "
                       "ctob(vm_ssize).")
        return out

    def anim() -> Any:
        if sgrowsiz != SGROWSIZ:
            return None
        from vmlab.widgets import StackGrowth

        return StackGrowth(_scene(params), addr, "w", rlimit_stack)

    below = bottom - addr
    where = (f"{below:#x} bytes below the stack's bottom {bottom:#x}" if below > 0 else
             f"inside or above the stack (bottom {bottom:#x})")
    question = (f"The program stores to {addr:#x}, {where}. The page fault reaches "
                f"vm_map_lookup, which finds the stack gap and calls\n    vm_map_growstack(map, "
                f"{addr:#x})\nWhat does it return, and how large is the stack (ctob(vm_ssize)) "
                f"afterwards?")
    setup = "\n".join([map_table(scene.vm_map, "the process after exec"
                                 + (" and earlier pushes" if params["grown"] else "")), "",
                       _facts(scene, params)])
    return Problem(TOPIC, seed, params, "Growing the stack", setup, question,
                   "KERN code; size, e.g. KERN_SUCCESS; 256 KiB (or 0x40000)", run, hints,
                   anim)


def generate(seed: int) -> Problem:
    """The default sgrowsiz; 0-2 earlier pushes; then one of: a store within sgrowsiz of the
    stack (grows by sgrowsiz), further down (rounded up to sgrowsiz), past a small
    RLIMIT_STACK (KERN_NO_SPACE), just under an RLIMIT_STACK that is not a multiple of
    sgrowsiz (the growth is capped at the limit), in the guard page, or just above it with
    RLIMIT_STACK = 512 MiB (capped at the gap)."""
    rng = Rng(seed, TOPIC)
    sg, ps = SGROWSIZ, PAGE_SIZE
    sgp = sg // ps
    with _sgrowsiz(sg):
        probe = _scene({"rlimit_stack": DFLSSIZ, "grown": []})
        grown: list[int] = []
        for _ in range(rng.below(3)):
            grown.append(_bottom(probe) - rng.randint(1, 2 * sgp) * ps + rng.below(ps) // 8 * 8)
            probe = _scene({"rlimit_stack": DFLSSIZ, "grown": grown})
    bottom, ssize, maxs = _bottom(probe), probe.vm_ssize * ps, probe.vm_maxsaddr
    word = rng.below(ps // 8) * 8  # an aligned word inside the page
    case = rng.below(6)
    rlimit = DFLSSIZ
    if case in (0, 1):
        addr = bottom - rng.randint(1, sgp) * ps + word
    elif case == 2:
        addr = bottom - rng.randint(sgp + 1, 4 * sgp) * ps + word
    elif case == 3:
        rlimit = ssize + rng.randint(1, 3) * sg
        addr = bottom - ((rlimit - ssize) // ps + rng.randint(1, sgp)) * ps + word
    elif case == 4:
        k = rng.randint(0, 2)
        rlimit = ssize + k * sg + rng.randint(1, sgp - 1) * ps + rng.choice((0, 0, 1000))
        room = trunc_page(rlimit) - ssize
        addr = bottom - rng.randint(k * sgp + 1, room // ps) * ps + word
    else:
        rlimit = rng.choice((DFLSSIZ, MAXSSIZ))
        addr = maxs + word if rng.chance(1, 2) else maxs + rng.randint(1, 3) * ps + word
    return build(addr, rlimit, grown, sg, seed=seed)

"""prefault: which neighbours of a faulting page does vm_fault_prefault map?

FreeBSD 14 (sys/vm/vm_fault.c, vm_fault_prefault, called from vm_fault_soft_fast and from
vm_fault after pmap_enter): after a fault that found its page resident (faultcount 0) it looks
at PFBAK = PFFOR = 4 pages on each side, in the spiral order −1, +1, −2, +2, …; a candidate
outside the entry (or the window) or already mapped is skipped; one that is resident and valid
in the entry's object (descending the shadow chain only through anonymous objects) is entered
read-only with pmap_enter_quick; the first candidate resident nowhere **stops the whole loop**.
A zero-fill fault or a copy-on-write copy sets faultcount = 1: no prefault at all. (The man
page vm_fault_prefault.9 shows the old (pmap, addra, entry) signature with a fixed table; the
rules are the source's.)

Scenes: a process maps a file privately (or anonymous memory); another process has read some
of the file's pages (with MADV_RANDOM, so exactly those pages are paged in and cached); the
process may have written to some pages before (its own copies, mapped read/write). The answer
is the set of pages the model's pmap gains besides the faulting page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmlab.core import (
    MADV_RANDOM,
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    OBJT,
    PAGE_SIZE,
    PFBAK,
    PFFOR,
    PROT_READ,
    PROT_WRITE,
    Machine,
    VmAccessError,
    madvise,
    mmap,
    open_file,
    trunc_page,
    vm_map_lock_read,
    vm_map_lookup_entry,
    vm_map_unlock_read,
    vm_read,
    vm_write,
    vmspace_alloc,
)

from ..base import Answer, Part, Problem, fmt_prot
from ..parse import AnswerError, _to_int
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, map_table, traced

__all__ = ["PagesPart", "build", "generate", "parse_pages"]

TOPIC = "prefault"
_MEM = 1 << 22
_FILE = "/data/table.db"
_KINDS = ("file", "anon")


# ----------------------------------------------------------------------------------------
# the answer: a set of pages, typed as offsets from the faulting page or as addresses

_TOKEN = re.compile(r"([+\-\u2212\u2013]?)\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9a-fA-F_]*)")
_NONE = re.compile(r"^\s*(none|nothing|empty|no pages?|no prefault|0 pages|-|\[\]|\{\})?\s*$",
                   re.IGNORECASE)


def parse_pages(text: str, origin: int) -> list[int]:
    """The pages a student lists, as sorted page addresses. ``-1 +1 +2`` (offsets in pages
    from ``origin``, commas or spaces, an unsigned small number counts as +n), ``0x9000``
    (an address anywhere in the page; needs to be >= PAGE_SIZE), ``-0x1000`` (a signed byte
    offset of whole pages); 'none' for no page."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    if _NONE.match(text):
        return []
    out: set[int] = set()
    for m in _TOKEN.finditer(text):
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before.isalpha() or before == "_" or after.isalpha() or after == "_":
            continue  # e.g. the 4 of "PFBAK4"
        sign, num = m.group(1), _to_int(m.group(2))
        if sign:
            neg = sign != "+"
            if num >= PAGE_SIZE:
                if num % PAGE_SIZE:
                    raise AnswerError(f"{sign}{m.group(2)}: a byte offset must be whole pages "
                                      f"(a multiple of {PAGE_SIZE:#x})")
                num //= PAGE_SIZE
            out.add(origin + (-num if neg else num) * PAGE_SIZE)
        elif num >= PAGE_SIZE:
            out.add(trunc_page(num))
        else:
            out.add(origin + num * PAGE_SIZE)
    if not out:
        raise AnswerError(f"no pages found in {text.strip()!r}: list offsets like -1 +1 +2, "
                          "or addresses, or write 'none'")
    return sorted(out)


def fmt_offsets(pages: list[int], origin: int) -> str:
    """``-1 +1 +2`` (pages relative to origin, ascending), or ``none``."""
    if not pages:
        return "none"
    return " ".join(f"{(p - origin) // PAGE_SIZE:+d}" for p in pages)


@dataclass(frozen=True)
class PagesPart(Part):
    """An "addrs" answer part that reads and prints pages relative to ``origin`` (the
    faulting page); the value is the sorted list of page addresses."""

    origin: int = 0

    def text(self) -> str:
        return fmt_offsets(list(self.value), self.origin)

    def parse(self, text: str) -> list[int]:
        return parse_pages(text, self.origin)


# ----------------------------------------------------------------------------------------
# the scene


def _mapped(vm: Any) -> set[int]:
    return {va for va, *_ in vm.vm_pmap.mappings()}


def _scene(p: dict[str, Any]) -> Any:
    """Build the process afresh from the parameters, with model calls only."""
    ps = PAGE_SIZE
    machine = Machine(_MEM)
    vm = vmspace_alloc(p["lo"], p["hi"], machine)
    vm.name = "/bin/app"
    base, n = p["base"], p["npages"]
    prot = PROT_READ | (PROT_WRITE if p["prot"] == "rw" else 0)
    if p["kind"] == "file":
        fd = open_file(vm, _FILE, p["file_pages"] * ps)
        err, _ = mmap(vm, base, n * ps, prot, MAP_PRIVATE | MAP_FIXED, fd, p["offset"] * ps)
        if err:
            raise ValueError(f"mmap of {_FILE} at {base:#x} failed: errno {err}")
        if p["resident"]:
            # another process reads those file pages; MADV_RANDOM: no read-around, so exactly
            # these pages are paged in (and its own faults are hard: no prefault there).
            other = vmspace_alloc(p["lo"], p["hi"], machine)
            other.name = "/bin/reader"
            fd2 = open_file(other, _FILE)
            err, _ = mmap(other, base, n * ps, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd2,
                          p["offset"] * ps)
            if err:
                raise ValueError(f"the reader's mmap failed: errno {err}")
            madvise(other, base, n * ps, MADV_RANDOM)
            for i in p["resident"]:
                vm_read(other, base + i * ps)
    else:
        err, _ = mmap(vm, base, n * ps, prot, MAP_ANON | MAP_PRIVATE | MAP_FIXED)
        if err:
            raise ValueError(f"mmap(MAP_ANON) at {base:#x} failed: errno {err}")
    for i in p["written"]:
        try:
            vm_write(vm, base + i * ps, f"written {i}")
        except VmAccessError as exc:
            raise ValueError(f"the process cannot write page {i}: {exc}") from None
    return vm


def _residency(vm: Any, va: int) -> str:
    """Where the page at va is resident, read from the model: the entry's object chain."""
    m = vm.vm_map
    vm_map_lock_read(m)
    try:
        found, e = vm_map_lookup_entry(m, va)
        if not found or e.object is None:
            return "-"
        obj, pindex, where = e.object, (va - e.start + e.offset) // PAGE_SIZE, []
        while obj is not None:
            pg = obj.memq.get(pindex)
            if pg is not None and pg.valid:
                where.append("file" if obj.type == OBJT.VNODE else
                             ("private copy" if obj.backing_object is not None else "anon"))
            pindex += obj.backing_object_offset // PAGE_SIZE
            obj = obj.backing_object
        return ", ".join(where) or "-"
    finally:
        vm_map_unlock_read(m)


def _page_table(vm: Any, p: dict[str, Any], fault_va: int) -> str:
    pm = vm.vm_pmap
    rows = [("REL", "ADDRESS", "FILE PAGE" if p["kind"] == "file" else "PAGE", "RESIDENT IN",
             "MAPPED")]
    for i in range(p["npages"]):
        va = p["base"] + i * PAGE_SIZE
        prot = int(pm.prot(va))
        mapped = fmt_prot(prot) if prot else "-"
        rel = (va - fault_va) // PAGE_SIZE
        rows.append((f"{rel:+d}" if rel else "0", f"{va:#x}",
                     str(p["offset"] + i if p["kind"] == "file" else i), _residency(vm, va),
                     mapped + ("   <- the access" if va == fault_va else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.rjust(w) if j == 0 else c.ljust(w)
                                      for j, (c, w) in enumerate(zip(r, widths, strict=True)))
                     .rstrip() for r in rows)


def _describe(p: dict[str, Any]) -> str:
    n, ps = p["npages"], PAGE_SIZE
    if p["kind"] == "file":
        what = (f"The process maps {_FILE} ({p['file_pages']} pages) MAP_PRIVATE, "
                f"{'rw-' if p['prot'] == 'rw' else 'r--'}, at [{p['base']:#x}, "
                f"{p['base'] + n * ps:#x}) from file page {p['offset']}.")
        res = (f" Another process has read file pages "
               f"{', '.join(str(p['offset'] + i) for i in p['resident'])} (MADV_RANDOM: just "
               "those), so they are in the page cache." if p["resident"] else
               " No page of the file is in memory yet.")
    else:
        what = (f"The process has anonymous memory (MAP_ANON|MAP_PRIVATE, rw-) at "
                f"[{p['base']:#x}, {p['base'] + n * ps:#x}).")
        res = ""
    wr = (f" Earlier it wrote to page(s) {', '.join(str(i) for i in p['written'])} of the "
          "mapping." if p["written"] else "")
    return what + res + wr


def build(kind: str, npages: int, fault: int, access: str = "r", resident: list[int] | None = None,
          written: list[int] | None = None, prot: str = "r", offset: int = 0,
          file_pages: int | None = None, base: int = 0x10000, lo: int = MAP_MIN,
          hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input. ``kind`` "file" (a MAP_PRIVATE mapping of a file of ``file_pages``
    pages from file page ``offset``, ``prot`` "r" or "rw") or "anon" (rw); ``npages`` pages at
    ``base``; ``resident``: pages of the mapping (0-based) another process reads first;
    ``written``: pages this process writes first, in order; then an ``access`` ("r"/"w") to
    page ``fault`` of the mapping. Page numbers are indices into the mapping."""
    kind = str(kind).lower()
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}")
    access, prot = str(access).lower(), str(prot).lower()
    if access not in ("r", "w") or prot not in ("r", "rw"):
        raise ValueError("access must be 'r' or 'w', prot 'r' or 'rw'")
    if kind == "anon":
        prot, offset, resident = "rw", 0, []
    npages, fault, offset, base = int(npages), int(fault), int(offset), int(base)
    resident = [int(i) for i in (resident or [])]
    written = [int(i) for i in (written or [])]
    if npages < 1 or base % PAGE_SIZE or not lo <= base < base + npages * PAGE_SIZE <= hi:
        raise ValueError(f"the mapping of {npages} pages at {base:#x} must be page aligned and "
                         f"inside [{lo:#x}, {hi:#x})")
    if offset < 0:
        raise ValueError("offset must be >= 0")
    fp = offset + npages if file_pages is None else int(file_pages)
    for name, pages in (("fault", [fault]), ("resident", resident), ("written", written)):
        if any(not 0 <= i < npages for i in pages):
            raise ValueError(f"{name} pages must be in 0..{npages - 1}")
    if written and prot != "rw":
        raise ValueError("a read-only mapping cannot have written pages")
    if access == "w" and prot != "rw":
        raise ValueError("a write to a read-only mapping is a protection failure, not a fault "
                         "prefault follows")
    params = {"kind": kind, "npages": npages, "fault": fault, "access": access,
              "resident": resident, "written": written, "prot": prot, "offset": offset,
              "file_pages": fp, "base": base, "lo": int(lo), "hi": int(hi)}
    scene = _scene(params)
    va = base + fault * PAGE_SIZE
    have = int(scene.vm_pmap.prot(va))
    if have & (1 | (2 if access == "w" else 0)) == (1 | (2 if access == "w" else 0)):
        raise ValueError(f"page {fault} is already mapped {access!r}-accessible: no fault")

    def run() -> tuple[Answer, list[str]]:
        def call(vm: Any) -> list[int]:
            before = _mapped(vm)
            if access == "w":
                vm_write(vm, va, "new value")
            else:
                vm_read(vm, va)
            return sorted(_mapped(vm) - before - {va})

        _, pages, steps = traced(lambda: _scene(params), call, lambda vm: [vm])
        if pages:
            steps.append("Mapped by prefault (read-only): " + ", ".join(
                f"{(a - va) // PAGE_SIZE:+d} ({a:#x})" for a in pages))
        else:
            steps.append("Prefault mapped nothing.")
        return Answer((PagesPart("pages mapped by prefault", "addrs", pages, va),)), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        mine = list(got[0]) if got else []
        want = list(ans.parts[0].value)
        out = []
        if va in mine:
            out.append("offset 0 is the faulting page itself: vm_fault maps it; the question "
                       "is about the neighbours prefault adds.")
        if not want and mine:
            out.append("Did the fault find its page resident? A zero-fill fault or a "
                       "copy-on-write copy sets faultcount = 1, and then vm_fault does not "
                       "prefault at all.")
        elif want:
            out.append(f"Candidates in the order -1, +1, -2, +2, ... up to {PFBAK} back and "
                       f"{PFFOR} forward; skip pages outside the entry or already mapped; map "
                       "a resident page; the first page resident nowhere ends the whole loop.")
        return out

    def anim() -> Any:
        from vmlab.widgets import PrefaultStrip

        return PrefaultStrip(_scene(params), va, access)

    setup = "\n".join([_describe(params), "", map_table(scene.vm_map, "the process"), "",
                       f"The pages of the mapping (REL = pages from {va:#x}):",
                       _page_table(scene, params, va)])
    question = (f"The process {'writes to' if access == 'w' else 'reads'} {va:#x} (REL 0); "
                f"the page is {'mapped read-only' if have else 'not mapped'}, so it faults:"
                f"\n    vm_fault(map, {va:#x}, "
                f"VM_PROT_{'WRITE' if access == 'w' else 'READ'})\nWhich pages does "
                f"vm_fault_prefault map besides it? (PFBAK = {PFBAK}, PFFOR = {PFFOR}.)")
    return Problem(TOPIC, seed, params, "Which pages get prefaulted", setup, question,
                   "the pages' REL offsets, e.g. -1 +1 +2 (or their addresses; 'none' if "
                   "nothing)", run, hints, anim)


def generate(seed: int) -> Problem:
    """About 3 in 4: a file mapping with a random resident set and a read fault on a resident
    page (sometimes after the process wrote some resident pages: a shadow chain to descend);
    then a write to a resident page of a writable file mapping (a COW copy), or an anonymous
    mapping touched for the first time (zero fill): no prefault."""
    rng = Rng(seed, TOPIC)
    case = rng.below(8)
    npages = rng.randint(6, 12)
    base = MAP_MIN + rng.randint(4, 32) * PAGE_SIZE
    fault = rng.below(npages)
    if case == 7:
        written = sorted(rng.sample([i for i in range(npages) if i != fault],
                                    rng.randint(0, 3)))
        return build("anon", npages, fault, rng.choice(("r", "w")), written=written, base=base,
                     seed=seed)
    offset = rng.randint(0, 3)
    resident = [i for i in range(npages) if i == fault or rng.chance(5, 6)]
    prot = "rw" if case >= 4 else rng.choice(("r", "rw"))
    written: list[int] = []
    if prot == "rw" and case >= 4:
        others = [i for i in resident if i != fault]
        written = sorted(rng.sample(others, rng.randint(1, min(2, len(others))))) if others \
            else []
    access = "w" if case == 6 and prot == "rw" else "r"
    return build("file", npages, fault, access, resident, written, prot, offset,
                 offset + npages + rng.randint(0, 4), base, seed=seed)

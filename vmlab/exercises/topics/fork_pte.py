"""fork_pte: the P, RW, A and D bits of one page's PTE in the parent and in the child after
fork(2) and a write or two.

What the model does, following FreeBSD 14 (sys/vm/vm_map.c: vmspace_fork,
vm_map_copy_entry; sys/amd64/amd64/pmap.c: pmap_protect, pmap_copy, pmap_enter;
sys/vm/vm_fault.c: vm_fault, vm_fault_cow):

- COPY entries (MAP_PRIVATE): vm_map_copy_entry write-protects a writable source that is not
  NEEDS_COPY yet with pmap_protect, which clears **RW and M (D)** and keeps A (a PTE that was
  RW and dirty hands the dirty bit to the vm_page first: vm_page_dirty). A file mapping made
  MAP_PRIVATE is NEEDS_COPY from the start, so its PTEs are read-only already.
- pmap_copy (advisory; amd64 really copies): the child gets the parent's managed 4 KiB PTEs
  with PG_W, PG_M and PG_A cleared, for COPY entries with an object and for SHARE entries.
  So a COPY page starts read-only and not accessed in the child; a SHARE page keeps RW.
- SHARE entries (MAP_SHARED): the parent's PTEs are not touched (RW, A, D stay).
- NONE: no entry in the child; ZERO: a fresh entry, no PTE copied.
- A write through a read-only PTE faults; on a NEEDS_COPY entry vm_map_lookup shadows the
  object, vm_fault copies the page into the shadow and pmap_enter maps the copy with RW, A
  and M (the access was a write). A write through a RW PTE does not fault: the CPU sets A
  and D itself. pmap_enter always sets A; a read fault maps without D.

The answer is read off the model's amd64 page tables (`Amd64Pmap.pte`, decoded with
`vmlab.core.x86.pte.decode_entry`) after the scenario runs, never computed by rules here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmlab.core import (
    INHERIT_COPY,
    INHERIT_NONE,
    INHERIT_SHARE,
    INHERIT_ZERO,
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    VM_PROT,
    Machine,
    VmAccessError,
    fork,
    minherit,
    mmap,
    open_file,
    vm_read,
    vm_write,
    vmspace_alloc,
)
from vmlab.core.x86.pte import decode_entry

from ..base import Answer, Part, Problem
from ..parse import PTE_FLAGS
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, map_table, traced

__all__ = ["build", "generate", "pte_flags"]

TOPIC = "fork_pte"
_MEM = 1 << 22
#: Region kinds: (MAP_ANON?, MAP_SHARED?, the file it maps).
_KINDS: dict[str, tuple[bool, bool, str | None]] = {
    "anon-private": (True, False, None),
    "anon-shared": (True, True, None),
    "file-shared": (False, True, "/data/log.db"),
    "file-private": (False, False, "/data/config.db"),
}
_INH = {"copy": INHERIT_COPY, "share": INHERIT_SHARE, "none": INHERIT_NONE,
        "zero": INHERIT_ZERO}
_WHO = ("parent", "child")


def pte_flags(pmap: Any, va: int) -> tuple[str, ...]:
    """The set flags among P RW A D of the PTE mapping ``va`` in an amd64 pmap, decoded with
    `decode_entry`; ``()`` when there is no valid PTE (P clear or no page-table page)."""
    f = decode_entry(int(pmap.pte(va)), "PTE")
    if not f["P"]:
        return ()
    return tuple(n for n in PTE_FLAGS if f[n])


def _fmt(flags: tuple[str, ...]) -> str:
    return " ".join(flags) if flags else "no PTE"


def _region_of(regions: list[dict[str, Any]], va: int) -> int | None:
    for i, r in enumerate(regions):
        if r["start"] <= va < r["start"] + r["npages"] * PAGE_SIZE:
            return i
    return None


def _label(regions: list[dict[str, Any]], va: int) -> str:
    """``b+1`` (region letter, page within it)."""
    i = _region_of(regions, va)
    assert i is not None
    return f"{chr(ord('a') + i)}+{(va - regions[i]['start']) // PAGE_SIZE}"


def _scene(p: dict[str, Any]) -> Any:
    """The parent before the fork, built afresh with model calls only: the mmaps, the
    minherit calls, then its reads and writes in order."""
    machine = Machine(_MEM, "amd64")  # the x86 pmap: real PTEs with A and D
    vm = vmspace_alloc(p["lo"], p["hi"], machine)
    vm.name = "/bin/app"
    for r in p["regions"]:
        anon, shared, path = _KINDS[r["kind"]]
        flags = MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_ANON if anon else 0)
        size = r["npages"] * PAGE_SIZE
        fd = -1 if path is None else open_file(vm, path, size)
        err, _ = mmap(vm, r["start"], size, PROT_READ | PROT_WRITE, flags, fd, 0)
        if err:
            raise ValueError(f"mmap of {r['kind']} at {r['start']:#x} failed: errno {err}")
        if r["inherit"] != "default":
            err = minherit(vm, r["start"], size, _INH[r["inherit"]])
            if err:
                raise ValueError(f"minherit at {r['start']:#x} failed: errno {err}")
    for va, acc in p["touched"]:
        try:
            if acc == "w":
                vm_write(vm, va, f"parent wrote {va:#x}")
            else:
                vm_read(vm, va)
        except VmAccessError as exc:
            raise ValueError(f"the parent cannot access {va:#x}: {exc}") from None
    return vm


def _pte_table(vm: Any, regions: list[dict[str, Any]]) -> str:
    rows = [("PAGE", "ADDRESS", "REGION", "PARENT PTE (P RW A D)")]
    for i, r in enumerate(regions):
        for k in range(r["npages"]):
            va = r["start"] + k * PAGE_SIZE
            rows.append((f"{chr(ord('a') + i)}+{k}", f"{va:#x}", r["kind"],
                         _fmt(pte_flags(vm.vm_pmap, va))))
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _describe(p: dict[str, Any]) -> str:
    lines = ["The process (an amd64 pmap: real page tables) maps, all rw-:"]
    for i, r in enumerate(p["regions"]):
        anon, shared, path = _KINDS[r["kind"]]
        how = ("MAP_ANON|" if anon else "") + ("MAP_SHARED" if shared else "MAP_PRIVATE")
        what = "anonymous memory" if anon else path
        inh = "" if r["inherit"] == "default" else \
            f", then minherit(INHERIT_{r['inherit'].upper()})"
        lines.append(f"  {chr(ord('a') + i)} = mmap({r['start']:#x}, {r['npages']} pages, "
                     f"{how}) of {what}{inh}")
    if p["touched"]:
        acc = ", ".join(f"{'writes' if a == 'w' else 'reads'} {_label(p['regions'], va)}"
                        for va, a in p["touched"])
        lines.append(f"Before forking, in this order, it {acc}.")
    else:
        lines.append("It has not touched any page yet.")
    return "\n".join(lines)


@dataclass
class _Stage:
    """The named page's PTE flags in both processes after one step of the scenario, and why
    each changed (read off the model)."""

    label: str
    flags: dict[str, tuple[str, ...]]
    why: dict[str, str]


def _why_fork(who: str, before: tuple[str, ...], after: tuple[str, ...], entry: str) -> str:
    if who == "parent":
        if before and not after:
            return "fork removed it"
        if set(before) - set(after):
            return ("at fork, vm_map_copy_entry write-protected the copied (COW) entry with "
                    "pmap_protect, which clears RW and D (the dirty bit goes to the vm_page)")
        if after and entry == "share":
            return "a SHARE entry is not write-protected at fork: its PTE is untouched"
        return ""
    if after:
        if entry == "share":
            return ("at fork, pmap_copy copied the parent's PTE into the child with W, M (D) "
                    "and A cleared; RW stays, as in the parent (SHARE is not write-protected)")
        return ("at fork, pmap_copy copied the parent's read-only (COW) PTE into the child "
                "with W, M (D) and A cleared")
    return {"none": "the child has no entry there (inheritance NONE)",
            "zero": "the child's entry is a fresh ZERO entry: fork copies no PTE into it",
            }.get(entry, "the parent had no PTE for pmap_copy to copy")


def _why_write(writer: str, wva: int, faulted: bool, va: int, who: str,
               before: tuple[str, ...], after: tuple[str, ...]) -> str:
    if before == after:
        return ""
    if who != writer:
        return f"it changed when the {writer} wrote {wva:#x}"
    if va != wva:
        return (f"the {writer}'s fault on {wva:#x} prefaulted it (pmap_enter_quick: "
                "read-only, no A)") if faulted else f"it changed when the {writer} wrote {wva:#x}"
    if faulted:
        return (f"the {writer}'s write faulted ({'a read-only PTE' if before else 'no PTE'}) "
                "and vm_fault's pmap_enter with a write access entered the page with RW, A "
                "and D")
    return (f"the {writer}'s write went through a RW PTE without a fault: the CPU set A and D "
            "itself")


def build(regions: list[dict[str, Any]], touched: list[Any], writes: list[Any], page: int,
          lo: int = MAP_MIN, hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input. ``regions``: dicts ``kind`` (anon-private, anon-shared, file-shared,
    file-private), ``start``, ``npages`` and optionally ``inherit`` (default, copy, share,
    none, zero: minherit after the mmap), all mapped rw- MAP_FIXED; ``touched``: the parent's
    accesses before the fork, in order, as (va, "r"/"w"); ``writes``: after fork(), in order,
    ("parent"/"child", va); ``page``: the address whose PTEs are asked about."""
    regs = []
    for r in regions:
        kind = str(r["kind"]).lower()
        if kind not in _KINDS:
            raise ValueError(f"region kind must be one of {', '.join(_KINDS)}")
        inh = str(r.get("inherit", "default")).lower()
        if inh != "default" and inh not in _INH:
            raise ValueError(f"inherit must be default or one of {', '.join(_INH)}")
        start, n = int(r["start"]), int(r["npages"])
        if start % PAGE_SIZE or n < 1 or not lo <= start < start + n * PAGE_SIZE <= hi:
            raise ValueError(f"region at {start:#x} ({n} pages) must be page aligned and "
                             f"inside [{lo:#x}, {hi:#x})")
        regs.append({"kind": kind, "start": start, "npages": n, "inherit": inh})
    spans = sorted((r["start"], r["start"] + r["npages"] * PAGE_SIZE) for r in regs)
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise ValueError("regions overlap")
    if sum(1 for r in regs if r["kind"] == "file-shared") > 1 or \
            sum(1 for r in regs if r["kind"] == "file-private") > 1:
        raise ValueError("at most one file-shared and one file-private region (each maps its "
                         "own file from offset 0)")
    tch = [(int(va) & ~(PAGE_SIZE - 1), str(a).lower()) for va, a in touched]
    wr = [(str(w).lower(), int(va) & ~(PAGE_SIZE - 1)) for w, va in writes]
    page = int(page) & ~(PAGE_SIZE - 1)
    for va, a in tch:
        if a not in ("r", "w") or _region_of(regs, va) is None:
            raise ValueError(f"touched ({va:#x}, {a!r}): 'r' or 'w' inside a region")
    if not wr:
        raise ValueError("at least one write after the fork")
    for w, va in wr:
        i = _region_of(regs, va)
        if w not in _WHO or i is None:
            raise ValueError(f"write ({w!r}, {va:#x}): parent or child, inside a region")
        if w == "child" and regs[i]["inherit"] == "none":
            raise ValueError(f"the child has no mapping at {va:#x} (inheritance NONE): its "
                             "write would be SIGSEGV")
    at = _region_of(regs, page)
    if at is None:
        raise ValueError(f"page {page:#x} is not inside a region")
    params = {"regions": regs, "touched": [list(t) for t in tch],
              "writes": [list(w) for w in wr], "page": page, "lo": int(lo), "hi": int(hi)}
    scene = _scene(params)
    entry = regs[at]
    inh = entry["inherit"] if entry["inherit"] != "default" else \
        ("share" if _KINDS[entry["kind"]][1] else "copy")

    def run() -> tuple[Answer, list[str]]:
        steps: list[str] = []

        def do_fork(v: Any) -> tuple[tuple[str, ...], Any]:
            return pte_flags(v.vm_pmap, page), fork(v)[1]  # the parent's PTE, then fork

        vm, (pre, child), st = traced(lambda: _scene(params), do_fork, lambda v: [v])
        if child is None:
            raise RuntimeError("fork failed in the model")
        before: dict[str, tuple[str, ...]] = {"parent": pre, "child": ()}
        stages = [_Stage("before the fork", dict(before), {"parent": "", "child": ""})]
        now = {"parent": pte_flags(vm.vm_pmap, page), "child": pte_flags(child.vm_pmap, page)}
        stages.append(_Stage("fork()", now, {w: _why_fork(w, before[w], now[w], inh)
                                             for w in _WHO}))
        steps.append("fork() → vmspace_fork, entry by entry:")
        steps.extend(st)
        steps.append(_snapshot(stages[-1], stages[-2], page, vm, child))
        procs = {"parent": vm, "child": child}
        for w, wva in wr:
            have = int(procs[w].vm_pmap.prot(wva))
            faulted = not have & int(VM_PROT.WRITE)
            _, _, st = traced(lambda: None,
                              lambda _s, w=w, wva=wva: vm_write(procs[w], wva,
                                                                f"{w} wrote {wva:#x}"),
                              lambda _s: [vm, child])
            last = stages[-1].flags
            now = {x: pte_flags(procs[x].vm_pmap, page) for x in _WHO}
            stages.append(_Stage(f"the {w} writes {wva:#x}", now,
                                 {x: _why_write(w, wva, faulted, page, x, last[x], now[x])
                                  for x in _WHO}))
            steps.append(f"The {w} writes {wva:#x} ({_label(regs, wva)}): " +
                         ("it has no PTE for it, so the CPU raises #PF:" if not have else
                          "its PTE is read-only, so the CPU raises #PF:" if faulted else
                          "its PTE is present and RW: no fault, the CPU sets A and D."))
            steps.extend(st)
            steps.append(_snapshot(stages[-1], stages[-2], page, vm, child))
        answer_stages[:] = stages
        final = stages[-1].flags
        return Answer((Part("parent", "pte", final["parent"]),
                       Part("child", "pte", final["child"]))), steps

    answer_stages: list[_Stage] = []

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        out: list[str] = []
        for part, mine in zip(ans.parts, got, strict=False):
            want = tuple(part.value)
            mine = tuple(mine)
            if mine == want:
                continue
            if not want:
                out.append(f"{part.name}: the model has no PTE for {page:#x} there"
                           + _cause(answer_stages, part.name, None) + ".")
                continue
            if not mine:
                out.append(f"{part.name}: the model has a PTE for {page:#x} ({_fmt(want)})"
                           + _cause(answer_stages, part.name, "P") + ".")
                continue
            for f in PTE_FLAGS:
                if (f in mine) != (f in want):
                    state = "set" if f in want else "clear"
                    out.append(f"{part.name}: {f} is wrong; the model's PTE has {f} {state}"
                               + _cause(answer_stages, part.name, f) + ".")
        return out

    def anim() -> Any:
        from vmlab.widgets import ForkView

        return ForkView(_scene(params), [(w, va) for w, va in wr])

    table = _pte_table(scene, regs)
    setup = "\n".join([_describe(params), "", map_table(scene.vm_map, "parent"), "",
                       "The parent's PTEs before the fork (each also has US, XD and MANAGED):",
                       table])
    events = "; ".join(f"the {w} writes {va:#x} ({_label(regs, va)})" for w, va in wr)
    question = (f"The process calls fork(); then {events}.\n"
                f"Which of the PTE bits P, RW, A and D are set in the PTE for {page:#x} "
                f"({_label(regs, page)}), in the parent and in the child? (Or is there no PTE?)")
    return _ForkPteProblem(TOPIC, seed, params, "The PTE bits after fork", setup, question,
                           "parent; child, each the set flags or 'no PTE', e.g. "
                           "parent: P RW A D; child: no PTE", run, hints, anim)


def _snapshot(stage: _Stage, prev: _Stage, page: int, vm: Any, child: Any) -> str:
    """The named page's PTEs after a stage, read from both pmaps, with why they changed."""
    at_fork = stage.label == "fork()"
    if stage.flags == prev.flags and not at_fork:
        return f"The PTEs for {page:#x} are unchanged."

    def one(name: str, proc: Any) -> str:
        flags = stage.flags[name]
        return f"{name} no PTE" if not flags else \
            f"{name} {_fmt(flags)} (PTE {int(proc.vm_pmap.pte(page)):#x})"

    whys = [f"{name.capitalize()}: {stage.why[name]}." for name in _WHO
            if stage.why[name] and (stage.flags[name] != prev.flags[name] or at_fork)]
    return " ".join([f"Now the PTE for {page:#x}: {one('parent', vm)}; "
                     f"{one('child', child)}.", *whys])


def _cause(stages: list[_Stage], who: str, flag: str | None) -> str:
    """``: <why>``, from the last stage where the flag (or the PTE's presence) changed for
    ``who``; ``: it was like that before the fork`` if nothing changed it."""
    def has(st: _Stage) -> bool:
        fl = st.flags[who]
        return bool(fl) if flag in (None, "P") else flag in fl

    for i in range(len(stages) - 1, 0, -1):
        if has(stages[i]) != has(stages[i - 1]) and stages[i].why[who]:
            return f": {stages[i].why[who]}"
        if has(stages[i]) != has(stages[i - 1]):
            return f": it changed at '{stages[i].label}'"
    if who == "parent":
        return ": it was already so before the fork and nothing changed it"
    at_fork = stages[1].why["child"] if len(stages) > 1 else ""
    return f": {at_fork}, and nothing changed it since" if at_fork else ""


_LABELED = re.compile(r"\b(parent|child)\b", re.IGNORECASE)


@dataclass
class _ForkPteProblem(Problem):
    """Reads ``parent: ...`` and ``child: ...`` in either order (commas inside a part are
    fine); without the words, the parts are taken in order, separated by ';' or a newline."""

    def _segments(self, text: str, n: int) -> list[str]:
        marks = list(_LABELED.finditer(text))
        names = [m.group(1).lower() for m in marks]
        if sorted(names) == ["child", "parent"]:
            parts = {}
            for k, m in enumerate(marks):
                end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
                parts[names[k]] = text[m.end():end].strip(" \t\n;:=,")
            return [parts["parent"] or "-", parts["child"] or "-"]
        return super()._segments(text, n)


def generate(seed: int) -> Problem:
    """2-3 rw- regions (private or shared anonymous memory, a MAP_SHARED or MAP_PRIVATE file),
    about one in four with another inheritance set by minherit; the parent reads or writes
    some pages; fork; one or two writes by the parent or the child; the page asked about is
    mostly one that was written after the fork or touched before it."""
    rng = Rng(seed, TOPIC)
    pool = ["anon-private", "anon-private", "anon-shared", "file-shared", "file-private"]
    kinds: list[str] = []
    for _ in range(rng.randint(2, 3)):
        k = rng.choice(pool)
        if k.startswith("file") and k in kinds:
            k = "anon-private"
        kinds.append(k)
    regions = []
    cur = MAP_MIN + rng.randint(8, 16) * PAGE_SIZE
    for k in kinds:
        n = rng.randint(2, 4)
        regions.append({"kind": k, "start": cur, "npages": n, "inherit": "default"})
        cur += (n + rng.randint(2, 6)) * PAGE_SIZE
    if rng.chance(1, 4):
        r = rng.choice(regions)
        shared = _KINDS[r["kind"]][1]
        r["inherit"] = rng.choice(("none", "zero", "copy" if shared else "share"))
    pages = [r["start"] + k * PAGE_SIZE for r in regions for k in range(r["npages"])]
    owner = [r for r in regions for _ in range(r["npages"])]
    touched = []
    for va in pages:
        c = rng.below(3)  # untouched, read, written
        if c:
            touched.append((va, "r" if c == 1 else "w"))
    touched = [touched[i] for i in rng.sample(range(len(touched)), len(touched))]
    writes = []
    for _ in range(rng.randint(1, 2)):
        who = rng.choice(_WHO)
        ok = [va for va, r in zip(pages, owner, strict=True)
              if who == "parent" or r["inherit"] != "none"]
        writes.append((who, rng.choice(ok)))
    if rng.chance(1, 2):
        page = rng.choice([va for _, va in writes])
    elif touched and rng.chance(2, 3):
        page = rng.choice([va for va, _ in touched])
    else:
        page = rng.choice(pages)
    return build(regions, touched, writes, page, seed=seed)

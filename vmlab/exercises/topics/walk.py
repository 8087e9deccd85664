"""walk: the x86-64 page walk of one user access: the index bits of the address, and the
physical address or the #PF error code.

The tables are FreeBSD's (sys/amd64/amd64/pmap.c, pmap_enter: leaf = PA|V|A, RW with write
permission, NX without execute, U for user addresses; intermediate entries U|RW|V|A|M); the
walk is the hardware's (Intel SDM vol. 3A ch. 4, `Mmu.translate`): 4-level paging, CR0.WP,
EFER.NXE on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmlab.core import (
    PAGE_SIZE,
    Machine,
    vm_object_allocate_anon,
    vm_page_alloc,
    vm_page_valid,
)

from ..base import Answer, Part, Problem
from ..rng import Rng
from ..scene import traced

TOPIC = "walk"
_ACCESS = {"r": "read", "w": "write", "x": "instruction fetch"}
_MEM = 1 << 20  # 1 MiB of emulated RAM: small physical addresses


@dataclass
class _Scene:
    machine: Any
    pmap: Any


def _va(l4: int, l3: int, l2: int, l1: int) -> int:
    return (l4 << 39) | (l3 << 30) | (l2 << 21) | (l1 << 12)


def _build(pages: list[tuple[int, int]]) -> _Scene:
    """A fresh machine and amd64 pmap with each (va, prot) entered by pmap_enter, frames
    allocated in list order."""
    machine = Machine(_MEM, "amd64")
    obj = vm_object_allocate_anon(len(pages))
    obj.machine = machine  # vm_page_alloc takes frames from the object's machine
    pmap = machine.new_pmap()
    for i, (va, prot) in enumerate(pages):
        m = vm_page_alloc(obj, i)
        if m is None:
            raise RuntimeError("out of emulated memory")
        vm_page_valid(m)
        pmap.enter(va, m, prot, 0)
    return _Scene(machine, pmap)


def _dump(scene: _Scene, va0: int) -> str:
    """The tables on the path of va0 (a mapped address): every non-zero entry, raw."""
    w = scene.pmap.mmu.translate(va0, "r", 3)
    pm = scene.machine.physmem
    lines = [f"CR3 = {scene.pmap.pm_cr3:#x} (4-level paging; CR0.WP = 1, EFER.NXE = 1)"]
    for s in w.steps:
        table = {"PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT"}[s.level]
        limit = 256 if s.level == "PML4E" else 512  # the kernel half is not shown
        rows = [(i, pm.read_u64(s.table_pa + 8 * i)) for i in range(limit)]
        rows = [(i, v) for i, v in rows if v]
        lines.append(f"{table} at {s.table_pa:#x}:" + ("  (kernel slots 256-511 not shown)"
                                                     if s.level == "PML4E" else ""))
        lines.extend(f"  [{i:3d}] = {v:#018x}" for i, v in rows)
    lines.append("Entry bits: P=0 RW=1 US=2 A=5 D=6 PS=7, XD=63; the frame is bits 51:12.")
    return "\n".join(lines)


def build(pages: list[tuple[int, int]], va: int, access: str = "r",
          seed: int | None = None) -> Problem:
    """Explicit input: pages (va, prot) entered with pmap_enter (frames handed out in that
    order), then a user-mode access ('r', 'w' or 'x') to ``va``. The first page's path is the
    one whose tables are shown, so put va in the same 2 MiB region."""
    pages = [(int(a), int(p)) for a, p in pages]
    if not pages:
        raise ValueError("at least one page must be mapped")
    if access not in _ACCESS:
        raise ValueError("access must be 'r', 'w' or 'x'")
    params = {"pages": pages, "va": int(va), "access": access}
    scene = _build(pages)
    setup = _dump(scene, pages[0][0])

    def run() -> tuple[Answer, list[str]]:
        s, walk, steps = traced(lambda: _build(pages),
                                lambda s: s.pmap.mmu.translate(va, access, 3),
                                lambda s: [s.pmap.mmu])
        idx = [st.index for st in walk.steps]
        if len(idx) != 4:
            raise RuntimeError("the walk stopped above the page table: put va in the same "
                               "2 MiB region as the first page")
        outcome = ("pa", walk.pa) if walk.ok else ("pf", walk.error_code)
        # the walk's own per-level printout says everything the level steps say, and more
        del steps
        return Answer((Part("indices", "indices", idx), Part("outcome", "outcome", outcome))), \
            [walk.format()]

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        out = []
        if got[0] != ans["indices"]:
            out.append("Indices: bits 47:39, 38:30, 29:21 and 20:12 of the address, 9 bits "
                       "each (0-511).")
        if got[1] != ans["outcome"]:
            out.append("The PA is the leaf's frame (bits 51:12) plus the low 12 bits of the "
                       "address. A refused access is #PF with error code bits P (the page "
                       "was present), W (write), U (user), I/D (fetch).")
        return out

    def anim() -> Any:
        # the same tables, built afresh, walked by the PageWalk widget at CPL 3
        from vmlab.widgets import PageWalk

        return PageWalk(_build(pages).pmap.mmu, va, access, 3)

    question = (f"A user-mode {_ACCESS[access]} of {va:#x}. Give the PML4, PDPT, PD and PT "
                f"indices the walk uses, then the outcome: the physical address, or #PF and "
                f"its error code.")
    return Problem(TOPIC, seed, params, "Walking the page tables", setup, question,
                   "four indices; outcome, e.g. 0 3 5 17; PA 0x2a123  or  0 3 5 17; #PF 0x7",
                   run, hints, anim)


def generate(seed: int) -> Problem:
    """3-6 pages in one page table with mixed protections, a decoy page elsewhere, and an
    access to a mapped page (usually) or to a hole in the same table."""
    rng = Rng(seed, TOPIC)
    l4, l3, l2 = rng.randint(0, 255), rng.randint(0, 511), rng.randint(0, 511)
    slots = sorted(rng.sample(range(512), rng.randint(3, 6)))
    prots = [rng.choice((1, 3, 3, 5)) for _ in slots]
    pages = [(_va(l4, l3, l2, s), p) for s, p in zip(slots, prots, strict=True)]
    decoy_l4 = (l4 + rng.randint(1, 254)) % 256
    pages.append((_va(decoy_l4, rng.randint(0, 511), rng.randint(0, 511),
                      rng.randint(0, 511)), 3))
    if rng.chance(3, 4):
        slot = rng.choice(slots)
    else:
        slot = rng.choice([s for s in range(512) if s not in slots])
    va = _va(l4, l3, l2, slot) + rng.below(PAGE_SIZE // 8) * 8
    return build(pages, va, rng.choice(("r", "r", "w", "w", "x")), seed=seed)



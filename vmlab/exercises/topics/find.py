"""find: where does vm_map_find put a mapping (find_space modes, alignment, max_addr, the
anonymous clustering cursor)?

FreeBSD 14 (sys/vm/vm_map.c, vm_map_find / vm_map_alignspace): OPTIMAL becomes ANY without a
coloured object; VMFS_ALIGNED_SPACE(n) searches again from the rounded-up address until the
aligned address itself is free; a result ending above max_addr (when nonzero) or the map's max
-> KERN_NO_SPACE; an anonymous mapping with no hint starts its search at map->anon_loc
(vm.cluster_anon = 1) and moves it past itself; VMFS_NO_SPACE maps exactly at the hint.
"""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    KERN,
    PAGE_SIZE,
    VM_PROT,
    VMFS,
    VMFS_ALIGNED_SPACE,
    sysctl,
    vm_map_find,
)

from ..base import Answer, Part, Problem, fmt_prot
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, EntrySpec, build_map, map_table, random_layout, traced

TOPIC = "find"


def vmfs_text(fs: int) -> str:
    """VMFS_ANY_SPACE, VMFS_ALIGNED_SPACE(14), ... as C would spell it."""
    if fs >> 8:
        return f"VMFS_ALIGNED_SPACE({fs >> 8})"
    return f"VMFS_{VMFS(fs).name}"


def _scene(specs: list[EntrySpec], lo: int, hi: int, earlier: int) -> Any:
    m = build_map(specs, lo, hi)
    if earlier:
        # an earlier anonymous mmap without a hint: it sets the clustering cursor anon_loc
        rv, _ = vm_map_find(m, None, 0, 0, earlier, 0, VMFS.ANY_SPACE, VM_PROT.RW,
                            VM_PROT.ALL, 0)
        if rv != KERN.SUCCESS:
            raise ValueError("the earlier mapping of the scene does not fit")
    return m


def build(entries: list[dict[str, Any]], addr: int, length: int, find_space: int,
          max_addr: int = 0, earlier: int = 0, lo: int = MAP_MIN, hi: int = MAP_MAX,
          seed: int | None = None) -> Problem:
    """Explicit input: the map (plus, if ``earlier`` > 0, an earlier hint-less anonymous
    mapping of that length, which sets anon_loc), then
    vm_map_find(map, NULL, 0, &addr, length, max_addr, find_space, rw-, rwx, 0)."""
    params = {"entries": [dict(e) for e in entries], "addr": int(addr), "length": int(length),
              "find_space": int(find_space), "max_addr": int(max_addr),
              "earlier": int(earlier), "lo": int(lo), "hi": int(hi)}
    specs = [EntrySpec(**e) for e in params["entries"]]
    scene = _scene(specs, lo, hi, earlier)
    rw, rwx = VM_PROT.RW, VM_PROT.ALL

    def run() -> tuple[Answer, list[str]]:
        old = sysctl("vm.cluster_anon", 1)  # FreeBSD 14's default, whatever a lesson set
        try:
            m, (rv, where), steps = traced(
                lambda: _scene(specs, lo, hi, earlier),
                lambda m: vm_map_find(m, None, 0, addr, length, max_addr, find_space, rw, rwx,
                                      0))
        finally:
            sysctl("vm.cluster_anon", old)
        parts = [Part("return value", "kern", KERN(rv))]
        if rv == KERN.SUCCESS:
            parts.append(Part("address", "addr", where))
        steps.append("The map afterwards:\n" + map_table(m, "after"))
        return Answer(tuple(parts)), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        out = []
        if addr == 0 and scene.anon_loc:
            out.append("No hint and anonymous memory: the search starts at anon_loc, not at "
                       "the bottom of the map.")
        if find_space >> 8:
            out.append(f"Aligned: the address must be a multiple of {1 << (find_space >> 8):#x}"
                       f" and the whole range free.")
        if find_space == VMFS.OPTIMAL_SPACE:
            out.append("VMFS_OPTIMAL_SPACE without a coloured object is VMFS_ANY_SPACE.")
        if find_space == VMFS.NO_SPACE:
            out.append("VMFS_NO_SPACE: no search at all; map exactly at the hint or fail.")
        if max_addr:
            out.append("The whole range must end at or below max_addr.")
        return out or ["First fit from the hint; on failure the answer is just the KERN code."]

    def anim() -> Any:
        from vmlab.widgets import Find

        return Find(_scene(specs, lo, hi, earlier), addr, length, vmfs_text(find_space)
                    .removeprefix("VMFS_").lower().replace("_space", ""), fmt_prot(rw),
                    fmt_prot(rwx), max_addr)

    question = (f"vm.cluster_anon is 1 (the default). What does\n    vm_map_find(map, NULL, 0, "
                f"&addr /* = {addr:#x} */, length={length:#x}, max_addr={max_addr:#x},\n"
                f"                {vmfs_text(find_space)}, rw-, rwx, 0)\nreturn, and on "
                f"success, what is addr?")
    return Problem(TOPIC, seed, params, "Finding and mapping", map_table(scene), question,
                   "KERN code; address, e.g. KERN_SUCCESS; 0x9000 (just the code on failure)",
                   run, hints, anim)


def generate(seed: int) -> Problem:
    """Hints inside or below entries, hint 0 with a clustering cursor, ANY / OPTIMAL /
    ALIGNED_SPACE(13..16) / NO_SPACE, sometimes a max_addr that is too low."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(2, 4), max_gap=5, hi=0x20000)
    m = build_map(specs)
    ents = m.entries()
    length = rng.randint(1, 4) * PAGE_SIZE
    mode = rng.choice((VMFS.ANY_SPACE, VMFS.ANY_SPACE, VMFS.OPTIMAL_SPACE,
                       VMFS_ALIGNED_SPACE(13), VMFS_ALIGNED_SPACE(14), VMFS_ALIGNED_SPACE(15),
                       VMFS_ALIGNED_SPACE(16), VMFS.NO_SPACE))
    earlier = 0
    if mode != VMFS.NO_SPACE and rng.chance(1, 3):
        addr = 0
        earlier = rng.randint(1, 3) * PAGE_SIZE
    elif rng.chance(1, 2):
        e = rng.choice(ents)
        addr = e.start + rng.below((e.end - e.start) // PAGE_SIZE) * PAGE_SIZE
    else:
        addr = m.min_offset + rng.randint(0, 24) * PAGE_SIZE
    max_addr = 0
    if mode != VMFS.NO_SPACE and rng.chance(1, 4):
        max_addr = ents[-1].end + rng.randint(0, 6) * PAGE_SIZE
    return build([s.to_dict() for s in specs], addr, length, int(mode), max_addr, earlier,
                 seed=seed)

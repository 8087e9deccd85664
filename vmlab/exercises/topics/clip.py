"""clip: the entries after vm_map_clip_start / vm_map_clip_end.

FreeBSD 14 (sys/vm/vm_map.c, vm_map_clip_start / vm_map_clip_end): nothing happens when the
address is at or beyond the edge; clip_start gives the *front* part to a new clone and the
original entry keeps [a, end) with its offset moved up by a - start; clip_end gives the back
part to the clone. An entry without an object first gets a new anonymous one (charge_object) so
both halves share it.
"""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    PAGE_SIZE,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_lock,
    vm_map_lookup_entry,
    vm_map_unlock,
)

from ..base import Answer, Part, Problem, fmt_range
from ..rng import Rng
from ..scene import (
    MAP_MAX,
    MAP_MIN,
    EntrySpec,
    build_map,
    map_ranges,
    map_table,
    random_layout,
    traced,
)

TOPIC = "clip"


def build(entries: list[dict[str, Any]], entry_addr: int, clips: list[tuple[str, int]],
          lo: int = MAP_MIN, hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input: the map; ``entry`` = the entry containing entry_addr; then each clip in
    order, ("start", a) for vm_map_clip_start(map, entry, a) or ("end", a) for clip_end."""
    clips = [(str(k), int(a)) for k, a in clips]
    if not clips or any(k not in ("start", "end") for k, _ in clips):
        raise ValueError("clips must be a non-empty list of ('start'|'end', address)")
    params = {"entries": [dict(e) for e in entries], "entry_addr": int(entry_addr),
              "clips": clips, "lo": int(lo), "hi": int(hi)}
    specs = [EntrySpec(**e) for e in params["entries"]]
    scene = build_map(specs, lo, hi)
    vm_map_lock(scene)
    try:
        found, ent = vm_map_lookup_entry(scene, entry_addr)
    finally:
        vm_map_unlock(scene)
    if not found:
        raise ValueError(f"no entry contains {entry_addr:#x}")
    e_range = (ent.start, ent.end)
    for k, a in clips:
        if not e_range[0] <= a <= e_range[1] and (k == "start" and a > e_range[0] or
                                                  k == "end" and a < e_range[1]):
            raise ValueError(f"clip_{k} at {a:#x} lies outside the entry: FreeBSD panics")

    def run() -> tuple[Answer, list[str]]:
        def call(m: Any) -> tuple[tuple[int, int], int]:
            vm_map_lock(m)
            try:
                _, e = vm_map_lookup_entry(m, entry_addr)
                for k, a in clips:
                    (vm_map_clip_start if k == "start" else vm_map_clip_end)(m, e, a)
                return (e.start, e.end), e.offset
            finally:
                vm_map_unlock(m)

        m, (handle, off), steps = traced(lambda: build_map(specs, lo, hi), call)
        steps.append("The map afterwards:\n" + map_table(m, "after"))
        return Answer((Part("entries after", "ranges", map_ranges(m)),
                       Part("entry's range", "range", handle),
                       Part("entry's offset", "size", off))), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        return ["vm_map_clip_start hands the front part to a new entry: the entry you hold "
                "keeps the part from the clip address on, and its offset moves up by the same "
                "amount. vm_map_clip_end keeps the front part."]

    calls = "\n".join(f"    vm_map_clip_{k}(map, entry, {a:#x});" for k, a in clips)
    question = (f"The map is locked and `entry` points at the entry {fmt_range(e_range)}. After\n"
                f"{calls}\nwhich entries does the map hold, what range does `entry` cover, and "
                f"what is entry->offset?")
    return Problem(TOPIC, seed, params, "Clipping an entry", map_table(scene), question,
                   "ranges; entry's range; offset, e.g. [0x2000, 0x3000) [0x3000, 0x6000); "
                   "[0x3000, 0x6000); 0x1000", run, hints)


def generate(seed: int) -> Problem:
    """An entry of 3-8 pages, clipped at start, at end, or both (sometimes at an edge, where
    nothing happens)."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(2, 4), max_size=3)
    # one big entry to clip, placed after the others
    last = specs[-1].end
    npages = rng.randint(3, 8)
    big_start = last + rng.randint(1, 3) * PAGE_SIZE
    prot, mx = rng.choice(((3, 7), (1, 5), (1, 7)))
    if rng.chance(1, 2):
        big = EntrySpec(big_start, big_start + npages * PAGE_SIZE, prot, mx, "vnode",
                        rng.randint(0, 3) * PAGE_SIZE, 2)
    else:
        big = EntrySpec(big_start, big_start + npages * PAGE_SIZE, prot, mx)
    specs.append(big)
    order = rng.below(4)
    a = big.start + rng.randint(1, npages - 1) * PAGE_SIZE
    b = big.start + rng.randint(1, npages - 1) * PAGE_SIZE
    if order == 0:
        clips = [("start", a)]
    elif order == 1:
        clips = [("end", b)]
    elif order == 2:
        lo_, hi_ = sorted((a, b))
        clips = [("start", lo_), ("end", hi_ if hi_ > lo_ else big.end)]
    else:
        clips = [("start", big.start), ("end", b)]
    return build([s.to_dict() for s in specs], big.start, clips, seed=seed)

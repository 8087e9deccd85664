"""findspace: what does vm_map_findspace(map, start, length) return?

FreeBSD 14 (sys/vm/vm_map.c, vm_map_findspace): first fit at or above start, no alignment;
when nothing fits it returns vm_map_max(map) - length + 1 (the vm_map_findspace.9 man page's
"returns 1" is the stale pre-12 convention).
"""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    PAGE_SIZE,
    sysctl,
    vm_map_findspace,
    vm_map_lock,
    vm_map_max,
    vm_map_unlock,
)

from ..base import Answer, Part, Problem
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, EntrySpec, build_map, map_table, random_layout, traced

TOPIC = "findspace"


def _specs(params: dict[str, Any]) -> list[EntrySpec]:
    return [EntrySpec(**e) for e in params["entries"]]


def build(entries: list[dict[str, Any]], start: int, length: int, lo: int = MAP_MIN,
          hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input: the map's entries (EntrySpec fields), the start hint and the length."""
    params = {"entries": [dict(e) for e in entries], "start": int(start),
              "length": int(length), "lo": int(lo), "hi": int(hi)}
    specs = _specs(params)
    scene = build_map(specs, lo, hi)

    def run() -> tuple[Answer, list[str]]:
        def call(m: Any) -> int:
            vm_map_lock(m)
            try:
                return vm_map_findspace(m, start, length)
            finally:
                vm_map_unlock(m)

        old = sysctl("vmlab.findspace_kernel_quirk", 0)
        try:
            m, addr, steps = traced(lambda: build_map(specs, lo, hi), call)
            # FreeBSD 14's own code differs in one corner (see vm_map_findspace): run it that
            # way too and say so when it matters.
            sysctl("vmlab.findspace_kernel_quirk", 1)
            quirk = call(build_map(specs, lo, hi))
        finally:
            sysctl("vmlab.findspace_kernel_quirk", old)
        vmax = vm_map_max(m)
        if addr + length > vmax:
            steps.append(f"No gap fits: the result {addr:#x} is vm_map_max - length + 1 = "
                         f"{vmax:#x} - {length:#x} + 1; the caller sees addr + length > "
                         f"vm_map_max and knows it failed.")
        if quirk != addr:
            steps.append(f"Note: FreeBSD 14's exact code returns {quirk:#x} here: when start "
                         f"lies in the gap before the last entry and that gap is too small, it "
                         f"does not look past the last entry (sysctl "
                         f"vmlab.findspace_kernel_quirk=1 reproduces it).")
        return Answer((Part("address", "addr", addr),)), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        vmax = params["hi"]
        if ans["address"] + length > vmax:
            return ["Does anything fit at all? On failure vm_map_findspace still returns an "
                    "address: vm_map_max - length + 1."]
        return ["First fit: the lowest gap at or above start that holds length bytes; if "
                "start is inside an entry, the search begins at that entry's end."]

    def anim() -> Any:
        from vmlab.widgets import GapSearch

        return GapSearch(build_map(specs, lo, hi), start, length)

    question = (f"The map is locked. What does\n    vm_map_findspace(map, start={start:#x}, "
                f"length={length:#x})\nreturn? (If no gap fits, give the value FreeBSD 14 "
                f"returns anyway.)")
    return Problem(TOPIC, seed, params, "Finding space", map_table(scene), question,
                   "an address, e.g. 0x7000 (hex with 0x, or decimal)", run, hints, anim)


def generate(seed: int) -> Problem:
    """A random map of 2-5 entries; a start hint that is sometimes inside an entry; a length
    that fits somewhere, only far up, or nowhere (about one problem in five)."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(2, 5))
    m = build_map(specs)
    ents = m.entries()
    case = rng.below(5)
    if case == 0:
        # nothing fits: longer than the largest gap (gaps read from the model's map)
        gaps = [ents[0].start - m.min_offset, m.max_offset - ents[-1].end]
        gaps += [b.start - a.end for a, b in zip(ents, ents[1:], strict=False)]
        length = max(gaps) + PAGE_SIZE * rng.randint(1, 4)
        start = m.min_offset + rng.randint(0, 8) * PAGE_SIZE
    else:
        e = rng.choice(ents)
        if case == 1:
            start = e.start + rng.below(max(1, (e.end - e.start) // PAGE_SIZE)) * PAGE_SIZE
        elif case == 2:
            start = e.start
        else:
            start = m.min_offset + rng.randint(0, 12) * PAGE_SIZE
        length = rng.randint(1, 6) * PAGE_SIZE
    return build([s.to_dict() for s in specs], start, length, seed=seed)

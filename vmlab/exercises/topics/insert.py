"""insert: the KERN code of vm_map_insert and the entries after merge/extend.

FreeBSD 14 (sys/vm/vm_map.c, vm_map_insert): errors in order INVALID_ADDRESS (empty or outside
range), PROTECTION_FAILURE (W|X on a MAP_WXORX map), NO_SPACE (start mapped, or the next entry
begins before end); anonymous memory extends the previous entry when everything matches, and
vm_map_try_merge_entries merges neighbours.
"""

from __future__ import annotations

from typing import Any

from vmlab.core import KERN, PAGE_SIZE, VM_PROT, vm_map_insert, vm_map_lock, vm_map_unlock

from ..base import Answer, Part, Problem, fmt_prot
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

TOPIC = "insert"


def build(entries: list[dict[str, Any]], start: int, end: int, prot: int, max: int,
          cow: int = 0, wxorx: bool = False, lo: int = MAP_MIN, hi: int = MAP_MAX,
          seed: int | None = None) -> Problem:
    """Explicit input: the map, then vm_map_insert(map, NULL, 0, start, end, prot, max, cow)."""
    params = {"entries": [dict(e) for e in entries], "start": int(start), "end": int(end),
              "prot": int(prot), "max": int(max), "cow": int(cow), "wxorx": bool(wxorx),
              "lo": int(lo), "hi": int(hi)}
    specs = [EntrySpec(**e) for e in params["entries"]]
    scene = build_map(specs, lo, hi, wxorx)

    def run() -> tuple[Answer, list[str]]:
        def call(m: Any) -> int:
            vm_map_lock(m)
            try:
                return vm_map_insert(m, None, 0, start, end, prot, max, cow)
            finally:
                vm_map_unlock(m)

        m, rv, steps = traced(lambda: build_map(specs, lo, hi, wxorx), call)
        steps.append("The map afterwards:\n" + map_table(m, "after"))
        return Answer((Part("return value", "kern", KERN(rv)),
                       Part("entries after", "ranges", map_ranges(m)))), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        out = []
        if int(got[0]) != int(ans["return value"]):
            out.append("Check the errors in vm_map_insert's order: the range itself, W^X, "
                       "start already mapped, the next entry starting before end.")
        elif ans["entries after"] != got[1]:
            out.append("An anonymous insert right after an entry with the same protections, "
                       "inheritance and flags just extends that entry; neighbours that match "
                       "in every field merge.")
        return out

    def anim() -> Any:
        from vmlab.widgets import Insert

        return Insert(build_map(specs, lo, hi, wxorx), start, end, fmt_prot(prot),
                      fmt_prot(max), cow)

    question = (f"The map is locked. What does\n    vm_map_insert(map, NULL, 0, start={start:#x}, "
                f"end={end:#x}, prot={fmt_prot(prot)}, max={fmt_prot(max)}, cow={cow:#x})\n"
                f"return, and which entries (their [start, end) ranges) does the map hold "
                f"afterwards?")
    return Problem(TOPIC, seed, params, "Inserting an anonymous mapping", map_table(scene),
                   question, "KERN code; ranges, e.g. KERN_SUCCESS; [0x2000, 0x5000) "
                   "[0x8000, 0x9000)", run, hints, anim)


_RW, _ALL = int(VM_PROT.RW), int(VM_PROT.ALL)


def generate(seed: int) -> Problem:
    """Cases: extend the previous entry, fill a hole exactly (extend + merge), a new entry
    with other protections, overlap (start mapped / next entry inside), an empty range, W|X
    on a W^X map."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(2, 4), max_gap=5)
    wxorx = rng.chance(1, 6)
    m = build_map(specs, wxorx=wxorx)
    ents = m.entries()
    e = rng.choice(ents)
    prot, mx = (_RW, _ALL) if rng.chance(2, 3) else (int(VM_PROT.READ), _ALL)
    size = rng.randint(1, 4) * PAGE_SIZE
    case = rng.below(6)
    if case <= 1:  # right after an entry (extend when it matches)
        start = e.end
        if rng.chance(1, 2):
            prot, mx = int(e.protection), int(e.max_protection)
    elif case == 2:  # start inside an entry
        start = e.start + rng.below((e.end - e.start) // PAGE_SIZE) * PAGE_SIZE
    elif case == 3:  # just before an entry, possibly running into it
        start = max(m.min_offset, e.start - rng.randint(1, 3) * PAGE_SIZE)
    elif case == 4:
        start = m.min_offset + rng.randint(0, 20) * PAGE_SIZE
    else:
        start = e.end
        size = 0 if rng.chance(1, 2) else size
    end = start + size
    if wxorx and rng.chance(1, 2):
        prot, mx = _ALL, _ALL
    return build([s.to_dict() for s in specs], start, end, prot, mx, 0, wxorx, seed=seed)

"""protect: the KERN code of vm_map_protect and the protections afterwards.

FreeBSD 14 (sys/vm/vm_map.c, vm_map_protect): SET_PROT|SET_MAXPROT with new_prot outside
new_maxprot -> KERN_OUT_OF_BOUNDS; W|X on a MAP_WXORX map -> KERN_PROTECTION_FAILURE; then a
validation pass over the whole range *before anything changes*: a new prot or max outside an
entry's current max_protection -> KERN_PROTECTION_FAILURE. SET_MAXPROT sets max and
prot &= max; SET_PROT sets prot.
"""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    KERN,
    PAGE_SIZE,
    vm_map_lock,
    vm_map_lookup_entry,
    vm_map_protect,
    vm_map_unlock,
)

from ..base import Answer, Part, Problem, fmt_prot
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, EntrySpec, build_map, map_table, random_layout, traced

TOPIC = "protect"
_FLAG_TEXT = {1: "VM_MAP_PROTECT_SET_PROT", 2: "VM_MAP_PROTECT_SET_MAXPROT",
              3: "VM_MAP_PROTECT_SET_PROT | VM_MAP_PROTECT_SET_MAXPROT"}


def build(entries: list[dict[str, Any]], start: int, end: int, new_prot: int,
          new_maxprot: int, flags: int, query: int, wxorx: bool = False, lo: int = MAP_MIN,
          hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input: the map, vm_map_protect(map, start, end, new_prot, new_maxprot, flags),
    and the address ``query`` whose entry's prot/max the student gives afterwards."""
    params = {"entries": [dict(e) for e in entries], "start": int(start), "end": int(end),
              "new_prot": int(new_prot), "new_maxprot": int(new_maxprot), "flags": int(flags),
              "query": int(query), "wxorx": bool(wxorx), "lo": int(lo), "hi": int(hi)}
    if flags not in _FLAG_TEXT:
        raise ValueError("flags must be SET_PROT (1), SET_MAXPROT (2) or both (3)")
    specs = [EntrySpec(**e) for e in params["entries"]]
    scene = build_map(specs, lo, hi, wxorx)

    def run() -> tuple[Answer, list[str]]:
        m, rv, steps = traced(lambda: build_map(specs, lo, hi, wxorx),
                              lambda m: vm_map_protect(m, start, end, new_prot, new_maxprot,
                                                       flags))
        vm_map_lock(m)
        try:
            found, e = vm_map_lookup_entry(m, query)
            if not found:
                raise ValueError(f"query address {query:#x} is not mapped")
            pair = (e.protection, e.max_protection)
        finally:
            vm_map_unlock(m)
        steps.append("The map afterwards:\n" + map_table(m, "after"))
        return Answer((Part("return value", "kern", KERN(rv)),
                       Part(f"prot/max at {query:#x}", "prot_pair", pair))), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        if int(got[0]) != int(ans["return value"]):
            return ["vm_map_protect checks every entry in the range against its *current* "
                    "max_protection before changing anything; max protection can only go "
                    "down."]
        return ["If the call failed, nothing changed. SET_MAXPROT also trims prot: "
                "prot = old prot & new max."]

    question = (f"What does\n    vm_map_protect(map, {start:#x}, {end:#x}, new_prot="
                f"{fmt_prot(new_prot)}, new_maxprot={fmt_prot(new_maxprot)},\n"
                f"                   {_FLAG_TEXT[flags]})\nreturn, and what are the protection "
                f"and max_protection of the entry containing {query:#x} afterwards?")
    return Problem(TOPIC, seed, params, "Changing protection", map_table(scene), question,
                   "KERN code; prot/max, e.g. KERN_SUCCESS; r--/r-x", run, hints)


def generate(seed: int) -> Problem:
    """A range over one or two entries (maybe a hole between), a flag combination, and a
    protection that is sometimes beyond an entry's max."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(2, 5), max_gap=2)
    wxorx = rng.chance(1, 8)
    m = build_map(specs, wxorx=wxorx)
    ents = m.entries()
    i = rng.below(len(ents))
    e = ents[i]
    f = ents[min(len(ents) - 1, i + rng.below(2))]
    start = e.start + rng.below((e.end - e.start) // PAGE_SIZE) * PAGE_SIZE
    end = f.end - rng.below((f.end - f.start) // PAGE_SIZE) * PAGE_SIZE
    if end <= start:
        end = e.end
    flags = rng.choice((1, 1, 1, 2, 3))
    new_prot = rng.choice((1, 3, 5, 7, 0))
    new_max = rng.choice((1, 3, 5, 7))
    if flags == 3 and rng.chance(1, 2):
        new_prot &= new_max
    query = start + rng.below((min(end, e.end) - start) // PAGE_SIZE) * PAGE_SIZE
    return build([s.to_dict() for s in specs], start, end, new_prot, new_max, flags, query,
                 wxorx, seed=seed)

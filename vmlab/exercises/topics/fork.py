"""fork: what each parent entry becomes in the child after vmspace_fork.

FreeBSD 14 (sys/vm/vm_map.c, vmspace_fork / vm_map_copy_entry): NONE leaves a hole; SHARE
gives the child the same object (shadowing a NEEDS_COPY entry in the parent first); COPY with
an object makes both entries COW|NEEDS_COPY on it, but an entry *without* an object is copied
with none and no COW flags; ZERO gives a fresh demand-zero entry (no object, the parent's
eflags kept except USER_WIRED, IN_TRANSITION, WRITECNT, VN_EXEC and the split-boundary bits, so
it may still say COW|NEEDS_COPY: classify tests the inheritance first).
"""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    MAP_ENTRY,
    VM_INHERIT,
    Machine,
    vm_map_inherit,
    vm_map_lock,
    vm_map_unlock,
    vm_write,
    vmspace_alloc,
    vmspace_fork,
)

from ..base import Answer, Part, Problem
from ..rng import Rng
from ..scene import MAP_MAX, MAP_MIN, EntrySpec, insert_all, map_table, random_layout, traced

TOPIC = "fork"
_MEM = 1 << 22
_INH = {"share": VM_INHERIT.SHARE, "copy": VM_INHERIT.COPY, "none": VM_INHERIT.NONE,
        "zero": VM_INHERIT.ZERO}


def _parent(specs: list[EntrySpec], inherit: list[str], touched: list[bool], lo: int,
            hi: int) -> Any:
    vm = vmspace_alloc(lo, hi, Machine(_MEM))
    insert_all(vm.vm_map, specs)
    for s, inh, t in zip(specs, inherit, touched, strict=True):
        vm_map_inherit(vm.vm_map, s.start, s.end, _INH[inh])
        if t:
            vm_write(vm, s.start, 1)  # a store: the entry gets its object (and a page)
    return vm


def classify(parent_entry: Any, child_map: Any) -> str:
    """How the child holds parent_entry's range, read off the model's child map: absent (no
    entry), cow (COW|NEEDS_COPY), shared (same object, no NEEDS_COPY), zero (inheritance ZERO),
    private (an entry of its own, no COW: a copied entry that had no object yet)."""
    for c in child_map.entries():
        if c.start == parent_entry.start:
            # ZERO first: vmspace_fork's VM_INHERIT_ZERO case keeps the parent's eflags minus
            # USER_WIRED|IN_TRANSITION|WRITECNT|VN_EXEC|SPLIT_BOUNDARY_MASK, so a child entry
            # made from a COW file mapping still carries COW|NEEDS_COPY (on no object).
            if c.inheritance == VM_INHERIT.ZERO:
                return "zero"
            need = MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY
            if int(c.eflags) & need == need:
                return "cow"
            if c.object is not None and c.object is parent_entry.object:
                return "shared"
            return "private"
    return "absent"


def build(entries: list[dict[str, Any]], inherit: list[str], touched: list[bool],
          lo: int = MAP_MIN, hi: int = MAP_MAX, seed: int | None = None) -> Problem:
    """Explicit input: the parent's entries, each one's inheritance (share/copy/none/zero,
    set with vm_map_inherit) and whether the parent has written to it (so it has an object)."""
    specs = [EntrySpec(**e) for e in entries]
    inherit = [str(i).lower() for i in inherit]
    touched = [bool(t) for t in touched]
    if not len(specs) == len(inherit) == len(touched):
        raise ValueError("entries, inherit and touched must have the same length")
    if any(i not in _INH for i in inherit):
        raise ValueError(f"inheritance must be one of {', '.join(_INH)}")
    params = {"entries": [s.to_dict() for s in specs], "inherit": inherit,
              "touched": touched, "lo": int(lo), "hi": int(hi)}
    scene = _parent(specs, inherit, touched, lo, hi)

    def run() -> tuple[Answer, list[str]]:
        vm, child, steps = traced(lambda: _parent(specs, inherit, touched, lo, hi),
                                  vmspace_fork, lambda vm: [vm])
        vm_map_lock(vm.vm_map)
        try:
            labels = [classify(e, child.vm_map) for e in vm.vm_map.entries()]
        finally:
            vm_map_unlock(vm.vm_map)
        steps.append("The child's map:\n" + map_table(child.vm_map, "child"))
        return Answer((Part("child entries", "labels", labels),)), steps

    def hints(ans: Answer, got: list[Any]) -> list[str]:
        return ["COW needs an object to share: a COPY entry the parent never touched has none, "
                "so the child simply gets its own empty entry (private)."]

    question = ("The process forks (vmspace_fork). For each parent entry, in address order, "
                "how does the child hold it: cow (COW|NEEDS_COPY on the shared object), shared "
                "(the same object, writes visible to both), zero (fresh demand-zero), private "
                "(its own entry, no object, no COW) or absent (a hole)?")
    return Problem(TOPIC, seed, params, "What fork copies", map_table(scene.vm_map, "parent"),
                   question, "one word per entry, e.g. cow shared absent private", run, hints)


def generate(seed: int) -> Problem:
    """3-5 entries, random inheritances (mostly copy), some touched by the parent."""
    rng = Rng(seed, TOPIC)
    specs = random_layout(rng, rng.randint(3, 5), max_gap=3, max_size=4)
    inherit = [rng.choice(("copy", "copy", "share", "none", "zero")) for _ in specs]
    touched = [rng.chance(1, 2) for _ in specs]
    # a file mapping always has its object; writing to a read-only page would fault: only
    # touch writable anonymous memory
    touched = [t and s.obj is None and bool(s.prot & 2) for s, t in zip(specs, touched,
                                                                        strict=True)]
    return build([s.to_dict() for s in specs], inherit, touched, seed=seed)



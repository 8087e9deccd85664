"""Building an exercise's map with vmlab.core and printing it like ``procstat -v``.

A scene is plain data (a list of `EntrySpec`), so a problem can rebuild exactly the same map
every time it is asked (`build_map`), and the table printed for students is read back from the
model's map (`map_table`), not from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vmlab.core import (
    KERN,
    MAP,
    OBJT,
    PAGE_SIZE,
    VM_INHERIT,
    VM_MAP_FLAGS,
    VmMap,
    recording,
    vm_map_create,
    vm_map_insert,
    vm_map_lock,
    vm_map_modflags,
    vm_map_unlock,
    vm_object_allocate,
)
from vmlab.core.entries import flag_names

from .base import fmt_prot, scrub
from .rng import Rng

__all__ = ["EntrySpec", "build_map", "map_table", "random_layout", "traced"]

T = TypeVar("T")
M = TypeVar("M")

#: The toy address space every map exercise uses: small numbers, OSTEP style.
MAP_MIN = 0x1000
MAP_MAX = 0x40000


@dataclass(frozen=True)
class EntrySpec:
    """One mapping of a scene: [start, end), prot/max, object kind (None = anonymous memory
    without an object yet, "vnode" = a file), offset, the cow bits of vm_map_insert."""

    start: int
    end: int
    prot: int
    max: int
    obj: str | None = None
    offset: int = 0
    cow: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "prot": self.prot, "max": self.max,
                "obj": self.obj, "offset": self.offset, "cow": self.cow}


def build_map(
    entries: Sequence[EntrySpec],
    lo: int = MAP_MIN,
    hi: int = MAP_MAX,
    wxorx: bool = False,
) -> VmMap:
    """A fresh map of [lo, hi) with the entries inserted in order by vm_map_insert (so
    adjacent matching anonymous entries merge, as they would in the kernel)."""
    m = vm_map_create(None, lo, hi)
    if wxorx:
        vm_map_lock(m)
        vm_map_modflags(m, VM_MAP_FLAGS.WXORX, 0)
        vm_map_unlock(m)
    insert_all(m, entries)
    return m


def insert_all(m: VmMap, entries: Sequence[EntrySpec]) -> None:
    """vm_map_insert each entry into m (locking it), vnode objects made fresh."""
    vm_map_lock(m)
    try:
        for e in entries:
            obj = None
            if e.obj == "vnode":
                obj = vm_object_allocate(OBJT.VNODE, (e.offset + e.end - e.start) // PAGE_SIZE)
            rv = vm_map_insert(m, obj, e.offset, e.start, e.end, e.prot, e.max, e.cow)
            if rv != KERN.SUCCESS:
                raise RuntimeError(f"scene entry {e} could not be inserted: {KERN(rv).name}")
    finally:
        vm_map_unlock(m)


def _obj_label(obj: Any, labels: dict[int, str]) -> str:
    if obj is None:
        return "-"
    key = id(obj)
    if key not in labels:
        labels[key] = chr(ord("A") + len(labels))
    kind = "vnode" if obj.type == OBJT.VNODE else ("anon" if obj.type == OBJT.SWAP else
                                                    obj.type.name.lower())
    return f"{kind} {labels[key]}"


def map_table(m: VmMap, title: str = "the map") -> str:
    """The map's entries as a procstat -v style table (read from the model)."""
    flags = "|".join(f.name for f in VM_MAP_FLAGS if f.value and m.flags & f.value) or "0"
    head = (f"{title}: vm_map [{m.min_offset:#x}, {m.max_offset:#x})  "
            f"flags {flags}  anon_loc {m.anon_loc:#x}")
    rows = [("START", "END", "PRT", "MAX", "INH", "OBJECT", "OFFSET", "EFLAGS")]
    labels: dict[int, str] = {}
    for e in m.entries():
        rows.append((f"{e.start:#x}", f"{e.end:#x}", fmt_prot(e.protection),
                     fmt_prot(e.max_protection), VM_INHERIT(e.inheritance).name.lower(),
                     _obj_label(e.object, labels), f"{e.offset:#x}",
                     flag_names(int(e.eflags)) or "-"))
    if len(rows) == 1:
        return head + "\n  (no entries)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    return "\n".join(lines)


def map_ranges(m: VmMap) -> list[tuple[int, int]]:
    """The entries' [start, end) in address order (read from the model)."""
    return [(e.start, e.end) for e in m.entries()]


#: Step kinds left out of explanations: the splay's mechanics and the lock bookkeeping are
#: lessons of their own and drown the point of an exercise.
QUIET_KINDS = frozenset({"splay_visit", "rotate", "splay_done", "lock", "timestamp"})


def traced(
    make: Callable[[], M],
    call: Callable[[M], T],
    objs: Callable[[M], Sequence[Any]] = lambda m: [m],
) -> tuple[M, T, list[str]]:
    """Build the scene with ``make()``, run ``call(scene)`` with the scene's objects recorded,
    and return (scene, result, the model's step texts except `QUIET_KINDS`).

    If recording itself fails (a model step kind not registered yet, say), the scene is built
    again and the call runs unrecorded: the answer never depends on the trace."""
    m = make()
    try:
        with recording(*objs(m)) as tr:
            r = call(m)
    except ValueError as exc:
        if "step kind" not in str(exc):
            raise
        m = make()
        r = call(m)
        return m, r, [f"(The step-by-step account is unavailable: {exc}.)"]
    return m, r, [scrub(s.text) for s in tr.steps if s.kind not in QUIET_KINDS]


_PROTS = ((1, 7), (3, 7), (3, 7), (5, 7), (1, 5), (5, 5), (3, 3), (1, 1))


def random_layout(
    rng: Rng, n: int, lo: int = MAP_MIN, hi: int = MAP_MAX, max_gap: int = 6,
    max_size: int = 6, vnode_chance: int = 1,
) -> list[EntrySpec]:
    """n entries at page granularity with random gaps (some 0), sizes and protections; about
    vnode_chance in 4 are file mappings (private, COW) at a random page offset."""
    out: list[EntrySpec] = []
    cur = lo + rng.randint(0, 3) * PAGE_SIZE
    for _ in range(n):
        cur += rng.randint(0, max_gap) * PAGE_SIZE if out else 0
        size = rng.randint(1, max_size) * PAGE_SIZE
        if cur + size > hi:
            break
        prot, mx = rng.choice(_PROTS)
        if rng.chance(vnode_chance, 4):
            out.append(EntrySpec(cur, cur + size, prot, mx, "vnode",
                                 rng.randint(0, 4) * PAGE_SIZE, int(MAP.COPY_ON_WRITE)))
        else:
            out.append(EntrySpec(cur, cur + size, prot, mx))
        cur += size
    return out

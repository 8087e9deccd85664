"""The vm_map entry table: numpy columns, one row per entry slot, and live entry handles.

FreeBSD allocates ``struct vm_map_entry`` from a UMA zone; vmlab keeps every field of every entry
of one map in numpy columns (one row per slot) with a free-slot list. Slot 0 is the map's header
sentinel (sys/vm/vm_map.h: ``struct vm_map.header``), so tree links are plain slot numbers and the
header takes part in the threaded tree exactly as in vm_map.c.

The hot paths (splay, findspace) index the columns through ``memoryview``s of the numpy arrays:
one storage, no copies to keep in sync, and a Python int per read at about a third of the cost of
numpy scalar indexing (measured: ~22 ns vs ~33-41 ns for ``a[i]`` / ``a.item(i)``).

`VmMapEntry` is the handle users get (FreeBSD's ``vm_map_entry_t``): a live view of one slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import MAP_ENTRY, VM_INHERIT, VM_PROT

if TYPE_CHECKING:
    from .vm_map import VmMap

__all__ = [
    "EntryTable",
    "HEADER",
    "NULL",
    "VM_FAULT_READ_AHEAD_INIT",
    "VmMapEntry",
]

#: Slot of the header sentinel in every map's table.
HEADER = 0
#: The NULL pointer (an empty tree's root).
NULL = -1
#: A new entry's read_ahead (sys/vm/vm_map.h VM_FAULT_READ_AHEAD_INIT).
VM_FAULT_READ_AHEAD_INIT = 15

M64 = (1 << 64) - 1

# column name -> (numpy dtype, memoryview format)
_COLUMNS: dict[str, str] = {
    "start": "u8",
    "end": "u8",
    "offset": "u8",
    "max_free": "u8",
    "left": "i8",
    "right": "i8",
    "next_read": "u8",
    "object_id": "i8",
    "eflags": "u4",
    "wired_count": "i4",
    "protection": "u1",
    "max_protection": "u1",
    "inheritance": "u1",
    "read_ahead": "u1",
}


class EntryTable:
    """Columns of one map's entries plus a free list. ``cols[name]`` is the numpy column;
    the same-named attribute is a memoryview of it for fast scalar access."""

    __slots__ = (
        "cols",
        "objects",
        "creds",
        "free",
        "capacity",
        *_COLUMNS,
    )

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = 0
        self.cols: dict[str, np.ndarray] = {}
        self.objects: list[Any] = []
        self.creds: list[Any] = []
        self.free: list[int] = []
        self._grow(max(capacity, 2))
        self.free.remove(HEADER)

    def _grow(self, new_capacity: int) -> None:
        old = self.capacity
        for name, dt in _COLUMNS.items():
            col = np.zeros(new_capacity, dtype=dt)
            if old:
                col[:old] = self.cols[name]
            self.cols[name] = col
            setattr(self, name, memoryview(col))
        self.objects.extend([None] * (new_capacity - old))
        self.creds.extend([None] * (new_capacity - old))
        # Pop order hands out the lowest free slot first, so ids are predictable in lessons.
        self.free.extend(range(new_capacity - 1, old - 1, -1))
        self.free.sort(reverse=True)
        self.capacity = new_capacity

    def alloc(self) -> int:
        """vm_map_entry_create: a fresh slot (fields zeroed, no object)."""
        if not self.free:
            self._grow(self.capacity * 2)
        slot = self.free.pop()
        self.object_id[slot] = -1
        return slot

    def dispose(self, slot: int) -> None:
        """vm_map_entry_dispose: give the slot back (its fields are cleared)."""
        for name in _COLUMNS:
            getattr(self, name)[slot] = 0
        self.object_id[slot] = -1
        self.objects[slot] = None
        self.creds[slot] = None
        self.free.append(slot)

    def copy_row(self, src: int, dst: int) -> None:
        """``*new_entry = *entry`` (all fields, including tree links)."""
        for name in _COLUMNS:
            col = getattr(self, name)
            col[dst] = col[src]
        self.objects[dst] = self.objects[src]
        self.creds[dst] = self.creds[src]

    def set_object(self, slot: int, obj: Any) -> None:
        self.objects[slot] = obj
        self.object_id[slot] = -1 if obj is None else int(getattr(obj, "id", -1))

    def nbytes(self) -> int:
        """Bytes held by the numpy columns and the two object lists' pointer arrays."""
        return sum(c.nbytes for c in self.cols.values()) + 16 * self.capacity


def _prot_str(p: int) -> str:
    return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")


class VmMapEntry:
    """A live handle on one map entry (FreeBSD's ``vm_map_entry_t``).

    Reads and writes go straight to the map's entry table, so a handle follows its entry through
    clips and merges exactly as a C pointer does. ``start``/``end`` writes recompute every
    ``max_free`` in the tree (O(n)); the core itself writes the columns directly and keeps
    max_free right incrementally.
    """

    __slots__ = ("map", "id")

    def __init__(self, map: VmMap, slot: int) -> None:
        self.map = map
        self.id = slot

    # identity -----------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmMapEntry) and other.map is self.map and other.id == self.id

    def __hash__(self) -> int:
        return hash((id(self.map), self.id))

    @property
    def is_header(self) -> bool:
        return self.id == HEADER

    # fields -------------------------------------------------------------------------------
    @property
    def start(self) -> int:
        return self.map._t.start[self.id]

    @start.setter
    def start(self, v: int) -> None:
        self.map._t.start[self.id] = v & M64
        self.map._entry_range_changed()

    @property
    def end(self) -> int:
        return self.map._t.end[self.id]

    @end.setter
    def end(self, v: int) -> None:
        self.map._t.end[self.id] = v & M64
        self.map._entry_range_changed()

    @property
    def offset(self) -> int:
        return self.map._t.offset[self.id]

    @offset.setter
    def offset(self, v: int) -> None:
        self.map._t.offset[self.id] = v & M64
        self.map._changed()

    @property
    def object(self) -> Any:
        return self.map._t.objects[self.id]

    @object.setter
    def object(self, obj: Any) -> None:
        self.map._t.set_object(self.id, obj)
        self.map._changed()

    @property
    def protection(self) -> VM_PROT:
        return VM_PROT(self.map._t.protection[self.id])

    @protection.setter
    def protection(self, v: int) -> None:
        self.map._t.protection[self.id] = int(v)
        self.map._changed()

    @property
    def max_protection(self) -> VM_PROT:
        return VM_PROT(self.map._t.max_protection[self.id])

    @max_protection.setter
    def max_protection(self, v: int) -> None:
        self.map._t.max_protection[self.id] = int(v)
        self.map._changed()

    @property
    def inheritance(self) -> VM_INHERIT:
        return VM_INHERIT(self.map._t.inheritance[self.id])

    @inheritance.setter
    def inheritance(self, v: int) -> None:
        self.map._t.inheritance[self.id] = int(v)
        self.map._changed()

    @property
    def eflags(self) -> MAP_ENTRY:
        return MAP_ENTRY(self.map._t.eflags[self.id])

    @eflags.setter
    def eflags(self, v: int) -> None:
        self.map._t.eflags[self.id] = int(v)
        self.map._changed()

    @property
    def wired_count(self) -> int:
        return self.map._t.wired_count[self.id]

    @wired_count.setter
    def wired_count(self, v: int) -> None:
        self.map._t.wired_count[self.id] = int(v)
        self.map._changed()

    @property
    def next_read(self) -> int:
        return self.map._t.next_read[self.id]

    @next_read.setter
    def next_read(self, v: int) -> None:
        self.map._t.next_read[self.id] = v & M64
        self.map._changed()

    @property
    def read_ahead(self) -> int:
        return self.map._t.read_ahead[self.id]

    @read_ahead.setter
    def read_ahead(self, v: int) -> None:
        self.map._t.read_ahead[self.id] = int(v)
        self.map._changed()

    @property
    def cred(self) -> Any:
        return self.map._t.creds[self.id]

    @cred.setter
    def cred(self, v: Any) -> None:
        self.map._t.creds[self.id] = v
        self.map._changed()

    @property
    def max_free(self) -> int:
        """Largest gap next to any entry of this node's subtree (read-only)."""
        return self.map._t.max_free[self.id]

    @property
    def size(self) -> int:
        return self.end - self.start

    # display ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        if self.id == HEADER:
            return (
                f"<vm_map header: start(max)={self.start:#x} end(min)={self.end:#x} "
                f"eflags=HEADER>"
            )
        flags = flag_names(int(self.eflags))
        obj = self.object
        o = "none" if obj is None else f"#{getattr(obj, 'id', '?')}"
        return (
            f"<entry #{self.id} [{self.start:#x}, {self.end:#x}) {_prot_str(self.protection)}/"
            f"{_prot_str(self.max_protection)} {self.inheritance.name.lower()} obj={o} "
            f"off={self.offset:#x}{' ' + flags if flags else ''}>"
        )


def flag_names(eflags: int) -> str:
    """'COW|NEEDS_COPY' style names of the set MAP_ENTRY bits (empty for none)."""
    names = []
    for f in MAP_ENTRY:
        if f.value and f.value & (f.value - 1) == 0 and eflags & f.value:
            names.append(f.name)
    sb = (eflags & MAP_ENTRY.SPLIT_BOUNDARY_MASK) >> 20
    if sb:
        names.append(f"SPLIT_BOUNDARY({sb})")
    return "|".join(n for n in names if n is not None)


def prot_str(p: int) -> str:
    """'rw-' style protection string."""
    return _prot_str(int(p))

"""Frozen snapshots of a vm_map, the states a trace points to.

A view draws a step from the step's ``data`` plus the `MapSnapshot` it points to, and nothing
else: it never reads the live map. Entries are identified by their storage slot (``id``), which
stays the same for as long as the entry lives, so a view can follow "node 7" across steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ENTRY_DTYPE",
    "MapSnapshot",
]

#: One row per entry, in address order. ``left``/``right`` are real tree children (entry ids) or
#: -1; FreeBSD's threaded links to in-order neighbours are not children and are not stored here.
ENTRY_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("start", np.uint64),
        ("end", np.uint64),
        ("offset", np.uint64),
        ("protection", np.uint8),
        ("max_protection", np.uint8),
        ("inheritance", np.uint8),
        ("eflags", np.uint32),
        ("object", np.int64),  # object id, -1 for none
        ("wired_count", np.int32),
        ("max_free", np.uint64),
        ("left", np.int64),
        ("right", np.int64),
    ]
)


@dataclass(frozen=True)
class MapSnapshot:
    """The state of one vm_map at one instant."""

    map_id: int
    min: int
    max: int
    timestamp: int
    nentries: int
    size: int
    anon_loc: int
    flags: int
    lock_mode: str  # "unlocked" | "shared" | "exclusive"
    lock_holders: tuple[str, ...]
    root: int  # entry id of the splay root, -1 when the map is empty
    entries: np.ndarray  # ENTRY_DTYPE, address order; treat as read-only

    def entry(self, entry_id: int) -> np.void:
        """The row of the entry with this id (KeyError if it is not in this snapshot)."""
        idx = np.nonzero(self.entries["id"] == entry_id)[0]
        if not len(idx):
            raise KeyError(entry_id)
        return self.entries[idx[0]]

    def gaps(self) -> list[tuple[int, int]]:
        """Free ranges [start, end) between min and max, in address order."""
        out: list[tuple[int, int]] = []
        cur = self.min
        for s, e in zip(self.entries["start"].tolist(), self.entries["end"].tolist(), strict=True):
            if s > cur:
                out.append((cur, s))
            cur = max(cur, e)
        if self.max > cur:
            out.append((cur, self.max))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "entries"}
        d["lock_holders"] = list(self.lock_holders)
        d["entries"] = [
            {name: int(row[name]) for name in ENTRY_DTYPE.names} for row in self.entries
        ]
        d["type"] = "vm_map"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MapSnapshot:
        rows = [tuple(e[n] for n in ENTRY_DTYPE.names) for e in d["entries"]]
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k != "entries"}
        fields["lock_holders"] = tuple(fields["lock_holders"])
        return cls(entries=np.array(rows, dtype=ENTRY_DTYPE), **fields)

"""vm_map(9): FreeBSD 14's address-map operations, by the kernel's own names.

Ported from sys/vm/vm_map.c and sys/vm/vm_map.h of 14-CURRENT (2023; the reference's M23): map
creation, vm_map_lookup_entry, vm_map_insert (with the extend path), vm_map_findspace,
clipping, vm_map_try_merge_entries, vm_map_delete / vm_map_remove, vm_map_check_protection,
vm_map_modflags, vm_map_pmap_enter and the consistency check. vm_map_find & co. live in
vm_map_find.py, protect and inherit in vm_map_protect.py, the splay tree in splay.py, locks in
lock.py.

Conventions:
- Where C writes a result through a pointer, Python returns a tuple ``(kern_return, value)``.
- Addresses are vm_offset_t: integers in [0, 2**64). Sums wrap modulo 2**64 as in C (so a range
  whose end wraps past 2**64 behaves as the kernel's does). A value that is not such an integer
  raises TypeError / ValueError.
- Functions FreeBSD runs under the map lock check that the current thread holds it
  (VM_MAP_ASSERT_LOCKED) and raise `LockNotHeld` otherwise.
- Where the kernel would panic (KASSERT), vmlab raises ValueError/RuntimeError with a sentence.
- Addresses and sizes that become entry boundaries must be page-aligned: FreeBSD's vm_map code
  assumes it (its callers, mmap & co. in vm_mmap.c, trunc_page/round_page first) and an
  unaligned entry would corrupt the pmap. Every vm_map_* function taking such a value raises
  `VmMapUnaligned` (a ValueError) before it changes anything; vm_map_findspace and
  vm_map_lookup_entry, which FreeBSD calls with any address or size, accept anything.
- A failed call changes nothing but what FreeBSD also changes on that path: the splay tree's
  shape when the call looked an address up before failing (vm_map_lookup_entry splays), and the
  timestamp when the call takes the lock itself.
"""

from __future__ import annotations

import itertools
import operator
import random
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import vm_object as _vmo
from .constants import (
    KERN,
    MAP,
    MAP_ALL_COW_BITS,
    MAP_ENTRY,
    MAP_ENTRY_NOMERGE_MASK,
    MAP_ENTRY_SPLIT_BOUNDARY_SHIFT,
    MAP_SPLIT_BOUNDARY_SHIFT,
    MAX_INIT_PT,
    OBJT,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_INHERIT,
    VM_MAP_FLAGS,
    VM_PROT,
    VMFS,
)
from .entries import (
    HEADER,
    NULL,
    VM_FAULT_READ_AHEAD_INIT,
    EntryTable,
    VmMapEntry,
    flag_names,
    prot_str,
)
from .lock import VmMapLock, curthread, vm_map_assert_locked
from .snapshot import ENTRY_DTYPE, MapSnapshot
from .splay import (
    entry_link,
    entry_resize,
    entry_unlink,
    findspace_tree,
    inorder,
    recompute_max_free,
    tree_search,
    vm_map_entry_pred_id,
    vm_map_entry_succ_id,
    vm_map_splay,
)
from .sysctl import sysctl
from .vm_object import OBJ_ANON, OBJ_ONEMAPPING, vm_object_allocate_anon, vm_object_reference

__all__ = [
    "EntryList",
    "MAXPAGESIZES",
    "VmMap",
    "VmMapInconsistent",
    "VmMapUnaligned",
    "pagesizes",
    "vm_map_check",
    "vm_map_check_protection",
    "vm_map_clip_end",
    "vm_map_clip_start",
    "vm_map_create",
    "vm_map_delete",
    "vm_map_entry_pred",
    "vm_map_entry_resize",
    "vm_map_entry_succ",
    "vm_map_findspace",
    "vm_map_init",
    "vm_map_insert",
    "vm_map_lookup_entry",
    "vm_map_max",
    "vm_map_min",
    "vm_map_modflags",
    "vm_map_pmap_enter",
    "vm_map_range_valid",
    "vm_map_remove",
    "vm_map_try_merge_entries",
]

M64 = (1 << 64) - 1
#: amd64 page sizes (sys/amd64/amd64/pmap.c pagesizes[]): 4 KiB, 2 MiB, 1 GiB.
pagesizes = (1 << 12, 1 << 21, 1 << 30)
MAXPAGESIZES = 3

_map_ids = itertools.count(1)

# Plain-int copies of the flag enums: IntFlag arithmetic costs ~1 us per operation, which would
# dominate the hot paths (measured with cProfile on insert/delete).
ME = SimpleNamespace(**{k: int(v) for k, v in MAP_ENTRY.__members__.items()})
MC = SimpleNamespace(**{k: int(v) for k, v in MAP.__members__.items()})
PR = SimpleNamespace(**{k: int(v) for k, v in VM_PROT.__members__.items()})
MF = SimpleNamespace(**{k: int(v) for k, v in VM_MAP_FLAGS.__members__.items()})
FS = SimpleNamespace(**{k: int(v) for k, v in VMFS.__members__.items()})
NOMERGE = int(MAP_ENTRY_NOMERGE_MASK)


class VmMapInconsistent(AssertionError):
    """vm_map_check found a broken invariant (FreeBSD's _vm_map_assert_consistent)."""


class VmMapUnaligned(ValueError):
    """An address or size that FreeBSD's vm_map code takes as page-aligned is not.

    The kernel does not check: vm_map_insert would build an entry such as [0x2001, 0x3000) and
    pmap_enter would later map the wrong page (or trip a KASSERT). Its callers round first —
    kern_mmap, kern_munmap, kern_mprotect, kern_msync, ... use trunc_page/round_page — so vmlab
    raises this (naming the function, the argument and the nearest aligned values) instead of
    returning a KERN code, and the map is left exactly as it was.
    """


# ---------------------------------------------------------------------------------------------
# argument checking


def _u64(name: str, v: Any) -> int:
    """A vm_offset_t / vm_size_t argument: an integer in [0, 2**64)."""
    if type(v) is int and 0 <= v <= M64:  # the common case, checked first (bool is not int)
        return v
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer address or size, not a bool")
    try:
        x = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(v).__name__}") from None
    if not 0 <= x <= M64:
        raise ValueError(f"{name}={x:#x} does not fit a 64-bit unsigned vm_offset_t")
    return x


def _int(name: str, v: Any, bits: int) -> int:
    if type(v) is int and 0 <= v < (1 << bits):  # the common case (bool is not int)
        return v
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        x = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(v).__name__}") from None
    if not 0 <= x < (1 << bits):
        raise ValueError(f"{name}={x:#x} does not fit in {bits} bits")
    return x


def _prot(name: str, v: Any) -> int:
    x = _int(name, v, 8)
    if x & ~int(PR.ALL):
        raise ValueError(f"{name}={x:#x} has bits outside VM_PROT_ALL (read|write|execute)")
    return x


def _cow(v: Any) -> int:
    x = _int("cow", v, 32)
    if x & ~MAP_ALL_COW_BITS:
        raise ValueError(f"cow={x:#x} has unknown MAP_* bits {x & ~MAP_ALL_COW_BITS:#x}")
    return x


def _aligned(fname: str, name: str, v: int) -> None:
    """Raise VmMapUnaligned unless ``v`` (already an int) is a multiple of PAGE_SIZE."""
    if v & PAGE_MASK:
        lo = v & ~PAGE_MASK
        raise VmMapUnaligned(
            f"{fname}: {name}={v:#x} is not page-aligned (a multiple of PAGE_SIZE = "
            f"{PAGE_SIZE:#x}); the kernel's vm_map functions expect their callers to round "
            f"first, e.g. trunc_page gives {lo:#x} and round_page gives {lo + PAGE_SIZE:#x}"
        )


def _entry(map: VmMap, e: Any, fname: str) -> int:
    if not isinstance(e, VmMapEntry):
        raise TypeError(f"{fname}: expected a VmMapEntry handle, got {type(e).__name__}")
    if e.map is not map:
        raise ValueError(f"{fname}: entry #{e.id} belongs to another map")
    return e.id


# ---------------------------------------------------------------------------------------------
# the map


class EntryList(list):
    """``map.entries()``: entry handles in address order, shown as a table in notebooks."""

    def _repr_html_(self) -> str:
        rows = []
        for e in self:
            obj = e.object
            o = "&mdash;" if obj is None else f"#{getattr(obj, 'id', '?')}"
            rows.append(
                "<tr>"
                f"<td>{e.id}</td><td><code>{e.start:#x}</code></td><td><code>{e.end:#x}</code>"
                f"</td><td><code>{e.end - e.start:#x}</code></td>"
                f"<td><code>{prot_str(e.protection)}</code></td>"
                f"<td><code>{prot_str(e.max_protection)}</code></td>"
                f"<td>{VM_INHERIT(e.inheritance).name.lower()}</td><td>{o}</td>"
                f"<td><code>{e.offset:#x}</code></td><td>{flag_names(int(e.eflags))}</td>"
                f"<td>{e.wired_count}</td></tr>"
            )
        head = (
            "<tr><th>#</th><th>start</th><th>end</th><th>size</th><th>prot</th><th>max</th>"
            "<th>inherit</th><th>object</th><th>offset</th><th>eflags</th><th>wired</th></tr>"
        )
        if not rows:
            rows.append('<tr><td colspan="11"><i>no entries</i></td></tr>')
        return f'<table class="vmlab-entries">{head}{"".join(rows)}</table>'


class VmMap:
    """struct vm_map: the header sentinel, the splay tree root, counters and the lock.

    Attributes with FreeBSD's names: ``header``, ``root`` (slot id, -1 = NULL), ``nentries``,
    ``size``, ``timestamp``, ``flags`` (VM_MAP_FLAGS), ``anon_loc``, ``busy``, ``pmap``,
    ``system_map`` (always 0: vmlab models user maps), plus ``lock`` (mode and holders),
    ``vmspace`` (set by the process layer) and ``aslr_rng`` (the seeded generator standing in for
    arc4random(), see `vm_map_aslr_seed`).
    """

    def __init__(self, pmap: Any, min: int, max: int) -> None:
        self._t = EntryTable()
        self.id = next(_map_ids)
        self._trace: Any = None
        self.lock = VmMapLock()
        self.vmspace: Any = None
        self.aslr_rng = random.Random(0)
        _vm_map_init(self, pmap, min, max)

    # FreeBSD fields -------------------------------------------------------------------------
    @property
    def header(self) -> VmMapEntry:
        """The sentinel: ``start`` holds the map's max and ``end`` its min (FreeBSD 12+)."""
        return VmMapEntry(self, HEADER)

    @property
    def min_offset(self) -> int:
        return self._t.end[HEADER]

    @property
    def max_offset(self) -> int:
        return self._t.start[HEADER]

    def entries(self) -> EntryList:
        """Every entry (not the header) in address order."""
        return EntryList(VmMapEntry(self, i) for i, _, _ in inorder(self))

    def __len__(self) -> int:
        return self.nentries

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entries())

    # tracing --------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._trace is not None:
            self._trace.mark_dirty(self)

    def _entry_range_changed(self) -> None:
        recompute_max_free(self)
        self._changed()

    def _trace_snapshot(self) -> MapSnapshot:
        order = inorder(self)
        n = len(order)
        arr = np.zeros(n, dtype=ENTRY_DTYPE)
        if n:
            ids = np.fromiter((i for i, _, _ in order), dtype=np.int64, count=n)
            cols = self._t.cols
            arr["id"] = ids
            for name in ("start", "end", "offset", "protection", "max_protection",
                         "inheritance", "eflags", "wired_count", "max_free"):
                arr[name] = cols[name][ids]
            arr["object"] = cols["object_id"][ids]
            arr["left"] = np.fromiter((lc for _, lc, _ in order), dtype=np.int64, count=n)
            arr["right"] = np.fromiter((rc for _, _, rc in order), dtype=np.int64, count=n)
        arr.setflags(write=False)
        return MapSnapshot(
            map_id=self.id,
            min=self.min_offset,
            max=self.max_offset,
            timestamp=self.timestamp,
            nentries=self.nentries,
            size=self.size,
            anon_loc=self.anon_loc,
            flags=int(self.flags),
            lock_mode=self.lock.mode,
            lock_holders=tuple(self.lock.holders),
            root=self.root,
            entries=arr,
        )

    # deferred entry free (vm_map_process_deferred) ------------------------------------------
    def _free_deferred_entry(self, slot: int) -> None:
        t = self._t
        if not t.eflags[slot] & ME.IS_SUB_MAP:
            _vmo.vm_object_deallocate(t.objects[slot])
        t.dispose(slot)

    # display --------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<vm_map #{self.id} [{self.min_offset:#x}, {self.max_offset:#x}) "
            f"nentries={self.nentries} size={self.size:#x} timestamp={self.timestamp} "
            f"lock={self.lock.mode}>"
        )

    def _repr_html_(self) -> str:
        flags = "|".join(f.name for f in VM_MAP_FLAGS if f.value and self.flags & f.value)
        return (
            f"<div><b>vm_map #{self.id}</b> [<code>{self.min_offset:#x}</code>, "
            f"<code>{self.max_offset:#x}</code>) &middot; nentries {self.nentries} &middot; "
            f"size <code>{self.size:#x}</code> &middot; timestamp {self.timestamp} &middot; "
            f"anon_loc <code>{self.anon_loc:#x}</code> &middot; flags {flags or 0} &middot; "
            f"lock {self.lock.mode}"
            f"{' (' + ', '.join(self.lock.holders) + ')' if self.lock.holders else ''}</div>"
            + self.entries()._repr_html_()
        )


def _vm_map_init(map: VmMap, pmap: Any, min: int, max: int) -> None:
    """_vm_map_init: header.eflags = HEADER, header.end = min, header.start = max, links to
    itself, root NULL, counters 0."""
    t = map._t
    t.eflags[HEADER] = ME.HEADER
    t.end[HEADER] = min
    t.start[HEADER] = max
    t.left[HEADER] = t.right[HEADER] = HEADER
    t.object_id[HEADER] = -1
    map.needs_wakeup = False
    map.system_map = 0
    map.pmap = pmap
    map.flags = VM_MAP_FLAGS.NONE
    map.root = NULL
    map.timestamp = 0
    map.busy = 0
    map.anon_loc = 0
    map.nentries = 0
    map.size = 0


def vm_map_create(pmap: Any, min: int, max: int) -> VmMap:
    """vm_map_create(9): a new, empty map covering [min, max) (FreeBSD 12/11 API; 14 embeds
    maps in vmspaces and uses vm_map_init)."""
    lo = _u64("min", min)
    hi = _u64("max", max)
    if lo > hi:
        raise ValueError(f"vm_map_create: min {lo:#x} is above max {hi:#x}")
    _aligned("vm_map_create", "min", lo)
    _aligned("vm_map_create", "max", hi)
    return VmMap(pmap, lo, hi)


def vm_map_init(map: VmMap, pmap: Any, min: int, max: int) -> None:
    """vm_map_init(9): (re)initialise ``map`` as an empty map of [min, max). Its entries, if
    any, are dropped without being freed, as in C (the storage is expected to be fresh)."""
    lo = _u64("min", min)
    hi = _u64("max", max)
    if lo > hi:
        raise ValueError(f"vm_map_init: min {lo:#x} is above max {hi:#x}")
    _aligned("vm_map_init", "min", lo)
    _aligned("vm_map_init", "max", hi)
    map._t = EntryTable()
    map.lock = VmMapLock()
    _vm_map_init(map, pmap, lo, hi)
    map._changed()


def vm_map_min(map: VmMap) -> int:
    """vm_map_min(9): the lowest address of the map (kept in header.end)."""
    return map._t.end[HEADER]


def vm_map_max(map: VmMap) -> int:
    """vm_map_max(9): the end of the map (kept in header.start)."""
    return map._t.start[HEADER]


def vm_map_range_valid(map: VmMap, start: int, end: int) -> bool:
    """vm_map_range_valid (vm_map.h): start <= end and [start, end) inside [min, max]."""
    if end < start:
        return False
    return not (start < vm_map_min(map) or end > vm_map_max(map))


def vm_map_modflags(map: VmMap, set: int, clear: int) -> None:
    """vm_map_modflags (vm_map.h): flags = (flags | set) & ~clear; needs the map lock."""
    vm_map_assert_locked(map, "vm_map_modflags")
    s = _int("set", set, 32)
    c = _int("clear", clear, 32)
    bad = (s | c) & ~0xFF
    if bad:
        raise ValueError(f"vm_map_modflags: unknown map flag bits {bad:#x}")
    old = map.flags
    map.flags = VM_MAP_FLAGS((map.flags | s) & ~c)
    if map._trace is not None and map.flags != old:
        map._changed()
        map._trace.record(
            map, "map_field", f"map.flags changes from {old:#x} to {int(map.flags):#x}.",
            field="flags", old=int(old), new=int(map.flags),
        )


def vm_map_aslr_seed(map: VmMap, seed: int) -> None:
    """Seed the generator that stands in for arc4random() in this map's ASLR (vmlab only;
    the same seed gives the same addresses on every Python version)."""
    map.aslr_rng = random.Random(_int("seed", seed, 64))


__all__.append("vm_map_aslr_seed")


# ---------------------------------------------------------------------------------------------
# trace helpers


def _call(map: VmMap, name: str, **args: Any) -> None:
    if map._trace is not None:
        shown = ", ".join(
            f"{k}={v:#x}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v!r}"
            for k, v in args.items()
        )
        map._trace.record(
            map, "call", f"Call {name}({shown}).", name=name,
            args={k: (v if isinstance(v, (int, str, type(None))) else repr(v))
                  for k, v in args.items()},
        )


def _ret(map: VmMap, name: str, rv: Any, value: Any = None, why: str = "") -> Any:
    if map._trace is not None:
        if isinstance(rv, KERN):
            rvs = f"KERN_{rv.name}"
            rvv: Any = int(rv)
        elif isinstance(rv, bool):
            rvs, rvv = str(rv).upper(), rv
        elif isinstance(rv, int):
            rvs, rvv = f"{rv:#x}", rv
        else:
            rvs, rvv = repr(rv), None
        if isinstance(rv, KERN) and rv != KERN.SUCCESS:
            map._trace.record(
                map, "error", f"{name} fails with {rvs}: {why or 'see the rules above'}.",
                rv=int(rv), reason=why, name=name,
            )
        vv = value if isinstance(value, (int, type(None))) else repr(value)
        map._trace.record(
            map, "return",
            f"{name} returns {rvs}{'' if value is None else f' ({value:#x})' if isinstance(value, int) else f' ({value!r})'}.",  # noqa: E501
            name=name, rv=rvv, value=vv,
        )
    return rv


def _rec(map: VmMap, kind: str, text: str, **data: Any) -> None:
    map._trace.mark_dirty(map)
    map._trace.record(map, kind, text, **data)


def _er(t: EntryTable, e: int) -> str:
    return f"entry #{e} [{t.start[e]:#x}, {t.end[e]:#x})"


# ---------------------------------------------------------------------------------------------
# lookup and iteration


def _lookup(map: VmMap, address: int) -> tuple[bool, int]:
    """vm_map_lookup_entry on ids (no call/return steps)."""
    t = map._t
    cur = map.root
    if cur == NULL:
        return False, HEADER
    if t.start[cur] <= address < t.end[cur]:
        return True, cur
    lk = map.lock
    me = curthread().name
    if (lk.mode == "exclusive" and lk.holders == [me]) or (
        lk.mode == "shared" and lk.holders == [me]
    ):
        # Splay needs the write lock; a lone reader upgrades just for the splay, without
        # changing the timestamp (sx_try_upgrade succeeds).
        cur = vm_map_splay(map, address)
        if address < t.start[cur]:
            return False, HEADER
        return address < t.end[cur], cur
    return tree_search(map, address)


def vm_map_lookup_entry(map: VmMap, address: int) -> tuple[bool, VmMapEntry]:
    """vm_map_lookup_entry(9): (TRUE, the entry containing address) or (FALSE, the entry
    before it, the header when none). Needs the map lock (shared is enough). Splays when the
    caller holds the lock exclusively or is the only reader; otherwise a plain search."""
    vm_map_assert_locked(map, "vm_map_lookup_entry", read_ok=True)
    a = _u64("address", address)
    _call(map, "vm_map_lookup_entry", address=a)
    found, e = _lookup(map, a)
    _ret(map, "vm_map_lookup_entry", found, e)
    return found, VmMapEntry(map, e)


def vm_map_entry_succ(entry: VmMapEntry) -> VmMapEntry:
    """vm_map_entry_succ (vm_map.h): the next entry in address order (the header after the
    last one)."""
    return VmMapEntry(entry.map, vm_map_entry_succ_id(entry.map, entry.id))


def vm_map_entry_pred(entry: VmMapEntry) -> VmMapEntry:
    """vm_map_entry_pred (vm_map.c): the previous entry (the header before the first one)."""
    return VmMapEntry(entry.map, vm_map_entry_pred_id(entry.map, entry.id))


# ---------------------------------------------------------------------------------------------
# entries: create, charge, clone, merge, dispose


def _entry_charged(t: EntryTable, e: int) -> bool:
    """ENTRY_CHARGED (vm_map.c)."""
    if t.creds[e] is not None:
        return True
    obj = t.objects[e]
    return obj is not None and obj.cred is not None and not t.eflags[e] & ME.NEEDS_COPY


def _entry_back(map: VmMap, e: int) -> None:
    """vm_map_entry_back: give the entry a new anonymous object (offset 0) carrying its
    charge."""
    t = map._t
    size = t.end[e] - t.start[e]
    obj = vm_object_allocate_anon(size >> PAGE_SHIFT, None, t.creds[e], size)
    t.set_object(e, obj)
    t.offset[e] = 0
    t.creds[e] = None
    if map._trace is not None:
        _rec(map, "modify",
             f"{_er(t, e)} gets its own anonymous object #{obj.id} now, so that both halves of "
             f"a split share it.", entry=e, field="object", old=-1, new=obj.id)


def _entry_charge_object(map: VmMap, e: int) -> None:
    """vm_map_entry_charge_object."""
    t = map._t
    if t.eflags[e] & ME.IS_SUB_MAP:
        raise RuntimeError(f"entry #{e} is a submap")
    obj = t.objects[e]
    if obj is None and not map.system_map and not t.eflags[e] & ME.GUARD:
        _entry_back(map, e)
    elif obj is not None and not t.eflags[e] & ME.NEEDS_COPY and t.creds[e] is not None:
        obj.cred = t.creds[e]
        obj.charge = t.end[e] - t.start[e]
        t.creds[e] = None


def _entry_clone(map: VmMap, e: int) -> int:
    """vm_map_entry_clone: charge_object, then copy the entry and reference its object."""
    _entry_charge_object(map, e)
    t = map._t
    new = t.alloc()
    t.copy_row(e, new)
    if not t.eflags[e] & ME.IS_SUB_MAP:
        vm_object_reference(t.objects[new])
    return new


def _mergeable_neighbors(t: EntryTable, prev: int, entry: int) -> bool:
    """vm_map_mergeable_neighbors."""
    S, E = t.start, t.end
    obj = t.objects[prev]
    return (
        E[prev] == S[entry]
        and obj is t.objects[entry]
        and (obj is None or t.offset[prev] + (E[prev] - S[prev]) == t.offset[entry])
        and t.eflags[prev] == t.eflags[entry]
        and t.protection[prev] == t.protection[entry]
        and t.max_protection[prev] == t.max_protection[entry]
        and t.inheritance[prev] == t.inheritance[entry]
        and t.wired_count[prev] == t.wired_count[entry]
        and t.creds[prev] is t.creds[entry]
    )


def _try_merge(map: VmMap, prev: int, entry: int) -> None:
    """vm_map_try_merge_entries on ids: absorb prev into entry when they match."""
    t = map._t
    if not t.eflags[entry] & NOMERGE and _mergeable_neighbors(t, prev, entry):
        ps, pe = t.start[prev], t.end[prev]
        entry_unlink(map, prev, merge_next=True)
        # vm_map_merged_neighbor_dispose
        _vmo.vm_object_deallocate(t.objects[prev])
        t.dispose(prev)
        if map._trace is not None:
            _rec(map, "merge",
                 f"Entry #{prev} [{ps:#x}, {pe:#x}) matches its successor in every field, so "
                 f"entry #{entry} absorbs it and now covers [{t.start[entry]:#x}, "
                 f"{t.end[entry]:#x}).",
                 survivor=entry, absorbed=prev, start=t.start[entry], end=t.end[entry])


def vm_map_try_merge_entries(map: VmMap, prev_entry: VmMapEntry, entry: VmMapEntry) -> None:
    """vm_map_try_merge_entries: merge prev_entry into entry if they are mergeable neighbours
    (entry survives, taking prev's start and offset). Needs the map lock."""
    vm_map_assert_locked(map, "vm_map_try_merge_entries")
    p = _entry(map, prev_entry, "vm_map_try_merge_entries")
    e = _entry(map, entry, "vm_map_try_merge_entries")
    if e == HEADER and p == HEADER:
        return
    _try_merge(map, p, e)


def vm_map_entry_resize(map: VmMap, entry: VmMapEntry, grow_amount: int) -> None:
    """vm_map_entry_resize (static in vm_map.c): entry.end += grow_amount (negative shrinks),
    fixing max_free along the way. Used by vm_map_growstack. ``map.size`` is the caller's."""
    vm_map_assert_locked(map, "vm_map_entry_resize")
    e = _entry(map, entry, "vm_map_entry_resize")
    if e == HEADER:
        raise ValueError("vm_map_entry_resize: cannot resize the header")
    t = map._t
    if isinstance(grow_amount, bool) or not isinstance(grow_amount, int):
        raise TypeError("grow_amount must be an integer")
    _aligned("vm_map_entry_resize", "grow_amount", grow_amount)
    new_end = t.end[e] + grow_amount
    nxt = vm_map_entry_succ_id(map, e)
    if not t.start[e] < new_end <= t.start[nxt]:
        raise ValueError(
            f"vm_map_entry_resize: new end {new_end:#x} must stay above {t.start[e]:#x} and at "
            f"or below the next entry's start {t.start[nxt]:#x}"
        )
    old = t.end[e]
    entry_resize(map, e, grow_amount)
    if map._trace is not None:
        _rec(map, "extend", f"Entry #{e} now ends at {new_end:#x} instead of {old:#x}.",
             entry=e, old_end=old, new_end=new_end)


# ---------------------------------------------------------------------------------------------
# vm_map_insert


def _swap_reserve(size: int) -> bool:
    """swap_reserve: vmlab never runs out of swap reservation."""
    return True


def _vm_object_coalesce(
    prev_object: Any, prev_offset: int, prev_size: int, next_size: int, reserved: bool
) -> bool:
    """vm_object_coalesce (vm_object.c), sizes in bytes: can prev_object grow to back the next
    next_size bytes too? NULL: yes. Named or shadowing objects: no. A shared object only if no
    one else can see the pages past the mapping. Grows the object (and its charge)."""
    if prev_object is None:
        return True
    if not prev_object.flags & OBJ_ANON:
        return False
    collapse = getattr(_vmo, "vm_object_collapse", None)
    if collapse is not None:
        collapse(prev_object)
    if prev_object.backing_object is not None:
        return False
    next_pages = next_size >> PAGE_SHIFT
    next_pindex = (prev_offset >> PAGE_SHIFT) + (prev_size >> PAGE_SHIFT)
    if (
        prev_object.ref_count > 1
        and prev_object.size != next_pindex
        and not prev_object.flags & OBJ_ONEMAPPING
    ):
        return False
    if prev_object.cred is not None:
        prev_object.charge += next_pages << PAGE_SHIFT
    if next_pindex < prev_object.size:
        page_remove = getattr(_vmo, "vm_object_page_remove", None)
        if page_remove is not None:
            page_remove(prev_object, next_pindex, next_pindex + next_pages)
    if next_pindex + next_pages > prev_object.size:
        prev_object.size = next_pindex + next_pages
    return True


def _cow_to_eflags(cow: int) -> int:
    pe = 0
    if cow & MC.COPY_ON_WRITE:
        pe |= ME.COW | ME.NEEDS_COPY
    if cow & MC.NOFAULT:
        pe |= ME.NOFAULT
    if cow & MC.DISABLE_SYNCER:
        pe |= ME.NOSYNC
    if cow & MC.DISABLE_COREDUMP:
        pe |= ME.NOCOREDUMP
    if cow & MC.STACK_GROWS_DOWN:
        pe |= ME.GROWS_DOWN
    if cow & MC.STACK_GROWS_UP:
        pe |= ME.GROWS_UP
    if cow & MC.WRITECOUNT:
        pe |= ME.WRITECNT
    if cow & MC.VN_EXEC:
        pe |= ME.VN_EXEC
    if cow & MC.CREATE_GUARD:
        pe |= ME.GUARD
    if cow & MC.CREATE_STACK_GAP_DN:
        pe |= ME.STACK_GAP_DN
    if cow & MC.CREATE_STACK_GAP_UP:
        pe |= ME.STACK_GAP_UP
    return pe


def vm_map_insert(
    map: VmMap,
    object: Any,
    offset: int,
    start: int,
    end: int,
    prot: int,
    max: int,
    cow: int,
) -> KERN:
    """vm_map_insert(9): map [start, end) of ``object`` (None for anonymous memory) at
    ``offset``. The map must be locked. The caller holds the object reference the new entry
    takes over (as in FreeBSD).

    Errors in FreeBSD 14's order: empty or invalid range -> KERN_INVALID_ADDRESS; W|X on a
    MAP_WXORX map -> KERN_PROTECTION_FAILURE; start inside an entry or the next entry starting
    before end -> KERN_NO_SPACE; MAP_CREATE_GUARD with an object or max != NONE ->
    KERN_INVALID_ARGUMENT; a bad split boundary -> KERN_INVALID_ARGUMENT. prot must be within
    max (FreeBSD asserts it: ValueError here). start, end and (with an object) offset must be
    page-aligned (VmMapUnaligned, before anything changes).

    Anonymous memory extends the previous entry in place when it can (same flags, adjacent,
    same protections, inheritance, cred, unwired); otherwise a new entry is linked and merged
    with its neighbours when they match. MAP_PREFAULT(_PARTIAL) pre-enters resident pages.
    """
    vm_map_assert_locked(map, "vm_map_insert")
    offset = _u64("offset", offset)
    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_insert", "start", start)
    _aligned("vm_map_insert", "end", end)
    if object is not None:
        _aligned("vm_map_insert", "offset", offset)
    prot = _prot("prot", prot)
    max = _prot("max", max)
    cow = _cow(cow)
    if object is not None and cow & MC.NOFAULT and not cow & MC.SPLIT_BOUNDARY_MASK:
        raise ValueError("vm_map_insert: paradoxical MAP_NOFAULT request with an object")
    _check_prot_max("vm_map_insert", prot, max)
    return _insert(map, object, offset, start, end, prot, max, cow)


_INSERT_WHY = {
    "range": "the range is empty or outside the map",
    "wxorx": "this map forbids mappings that are both writable and executable",
    "inside": "the start address is already mapped",
    "overlap": "the next entry starts before the end of the new range",
    "guard": "a guard entry cannot have an object or a max protection",
    "boundary": "the split boundary is not a valid page size or the range is not aligned to it",
    "swap": "no swap space can be reserved",
}


def _insert(
    map: VmMap, object: Any, offset: int, start: int, end: int, prot: int, max: int, cow: int
) -> KERN:
    """The body of vm_map_insert (argument checks done)."""
    t = map._t
    if map._trace is not None:
        _call(map, "vm_map_insert", object=None if object is None else f"#{object.id}",
              offset=offset, start=start, end=end, prot=prot, max=max, cow=cow)

    def fail(rv: KERN, why: str) -> KERN:
        return _ret(map, "vm_map_insert", rv, why=_INSERT_WHY[why])

    if start == end or not vm_map_range_valid(map, start, end):
        return fail(KERN.INVALID_ADDRESS, "range")
    if map.flags & MF.WXORX and prot & (PR.WRITE | PR.EXECUTE) == (
        PR.WRITE | PR.EXECUTE
    ):
        return fail(KERN.PROTECTION_FAILURE, "wxorx")
    found, prev = _lookup(map, start)
    if found:
        return fail(KERN.NO_SPACE, "inside")
    nxt = vm_map_entry_succ_id(map, prev)
    if t.start[nxt] < end:
        return fail(KERN.NO_SPACE, "overlap")
    if cow & MC.CREATE_GUARD and (object is not None or max != PR.NONE):
        return fail(KERN.INVALID_ARGUMENT, "guard")
    protoeflags = _cow_to_eflags(cow)
    inheritance = VM_INHERIT.SHARE if cow & MC.INHERIT_SHARE else VM_INHERIT.DEFAULT
    if cow & MC.SPLIT_BOUNDARY_MASK:
        bidx = (cow & MC.SPLIT_BOUNDARY_MASK) >> MAP_SPLIT_BOUNDARY_SHIFT
        if bidx >= MAXPAGESIZES:
            return fail(KERN.INVALID_ARGUMENT, "boundary")
        bdry = pagesizes[bidx] - 1
        if start & bdry or end & bdry:
            return fail(KERN.INVALID_ARGUMENT, "boundary")
        protoeflags |= bidx << MAP_ENTRY_SPLIT_BOUNDARY_SHIFT
    cred = None
    if not cow & (MC.ACC_NO_CHARGE | MC.NOFAULT | MC.CREATE_GUARD) and (
        cow & MC.ACC_CHARGED
        or (prot & PR.WRITE and (protoeflags & ME.NEEDS_COPY or object is None))
    ):
        if not cow & MC.ACC_CHARGED and not _swap_reserve(end - start):
            return fail(KERN.RESOURCE_SHORTAGE, "swap")
        cred = curthread().td_ucred
    tr = map._trace
    if object is not None:
        # OBJ_ONEMAPPING must be cleared unless this mapping is trivially the only one.
        if object.flags & OBJ_ANON and (object.ref_count > 1 or object.shadow_count != 0):
            object.flags &= ~OBJ_ONEMAPPING
    elif (
        (t.eflags[prev] & ~int(ME.USER_WIRED)) == protoeflags
        and not cow & (MC.STACK_GROWS_DOWN | MC.STACK_GROWS_UP | MC.VN_EXEC)
        and t.end[prev] == start
        and (
            t.creds[prev] is cred
            or (t.objects[prev] is not None and t.objects[prev].cred is cred)
        )
        and _vm_object_coalesce(
            t.objects[prev],
            t.offset[prev],
            t.end[prev] - t.start[prev],
            end - t.end[prev],
            cred is not None and not protoeflags & ME.NEEDS_COPY,
        )
    ):
        # We were able to extend the object; can we extend the entry too?
        if (
            t.inheritance[prev] == inheritance
            and t.protection[prev] == prot
            and t.max_protection[prev] == max
            and t.wired_count[prev] == 0
        ):
            if t.eflags[prev] & ME.USER_WIRED:
                raise RuntimeError(f"entry #{prev} has incoherent wiring")
            old_end = t.end[prev]
            if not t.eflags[prev] & ME.GUARD:
                map.size += end - old_end
            entry_resize(map, prev, end - old_end)
            if tr is not None:
                _rec(map, "extend",
                     f"The new range [{start:#x}, {end:#x}) continues entry #{prev} exactly "
                     f"(same flags, protections, inheritance): entry #{prev} simply grows to "
                     f"end at {end:#x}.", entry=prev, old_end=old_end, new_end=end)
            _try_merge(map, prev, nxt)
            return _ret(map, "vm_map_insert", KERN.SUCCESS)
        # The object can grow but the entry cannot: a new entry shares prev's object.
        object = t.objects[prev]
        offset = (t.offset[prev] + (t.end[prev] - t.start[prev])) & M64
        vm_object_reference(object)
        if (
            cred is not None
            and object is not None
            and object.cred is not None
            and not t.eflags[prev] & ME.NEEDS_COPY
        ):
            cred = None  # the object already accounts for this uid
    new = t.alloc()
    t.start[new] = start
    t.end[new] = end
    t.eflags[new] = protoeflags
    t.set_object(new, object)
    t.offset[new] = offset
    t.inheritance[new] = inheritance
    t.protection[new] = prot
    t.max_protection[new] = max
    t.wired_count[new] = 0
    t.read_ahead[new] = VM_FAULT_READ_AHEAD_INIT
    t.next_read[new] = start
    t.creds[new] = cred
    entry_link(map, new)
    if not protoeflags & ME.GUARD:
        map.size += end - start
    if tr is not None:
        _rec(map, "link",
             f"New entry #{new} [{start:#x}, {end:#x}) {prot_str(prot)} is linked into the "
             f"map (it becomes the root of the tree).", entry=new, start=start, end=end)
    _try_merge(map, prev, new)
    _try_merge(map, new, nxt)
    if cow & (MC.PREFAULT | MC.PREFAULT_PARTIAL):
        _pmap_enter(map, start, prot, object, offset >> PAGE_SHIFT, end - start,
                    cow & MC.PREFAULT_PARTIAL)
    return _ret(map, "vm_map_insert", KERN.SUCCESS)


# ---------------------------------------------------------------------------------------------
# vm_map_pmap_enter


def _pmap_enter(
    map: VmMap, addr: int, prot: int, object: Any, pindex: int, size: int, flags: int
) -> None:
    if not prot & (PR.READ | PR.EXECUTE) or object is None or map.pmap is None:
        return
    if object.type in (OBJT.DEVICE, OBJT.SG):
        init_pt = getattr(map.pmap, "object_init_pt", None)
        if init_pt is not None:
            init_pt(addr, object, pindex, size)
        return
    psize = size >> PAGE_SHIFT
    if psize + pindex > object.size:
        if pindex >= object.size:
            return
        psize = object.size - pindex
    threshold = MAX_INIT_PT
    entered = 0
    for p in object.resident_pages(pindex, psize):
        tmpidx = p.pindex - pindex
        if tmpidx >= psize:
            break
        if flags & MC.PREFAULT_PARTIAL and tmpidx >= threshold:
            break
        if not getattr(p, "valid", True):
            continue
        map.pmap.enter_quick(addr + (tmpidx << PAGE_SHIFT), p, VM_PROT(prot))
        entered += 1
    if map._trace is not None and entered:
        map._trace.record(
            map, "note",
            f"Prefault: {entered} resident page(s) of object #{object.id} are entered into the "
            f"page tables from {addr:#x} so the first touches do not fault.",
        )


def vm_map_pmap_enter(
    map: VmMap, addr: int, prot: int, object: Any, pindex: int, size: int, flags: int
) -> None:
    """vm_map_pmap_enter (static in vm_map.c): pre-enter the resident, valid pages of
    ``object`` from ``pindex`` into ``map.pmap`` at ``addr`` (read-only: pmap_enter_quick), at
    most MAX_INIT_PT (96) pages into the range with MAP_PREFAULT_PARTIAL. Nothing happens
    without READ or EXECUTE in prot, without an object or without a pmap. ``addr`` and
    ``size`` must be page-aligned (VmMapUnaligned)."""
    a = _u64("addr", addr)
    sz = _u64("size", size)
    _aligned("vm_map_pmap_enter", "addr", a)
    _aligned("vm_map_pmap_enter", "size", sz)
    _pmap_enter(map, a, _prot("prot", prot), object, _u64("pindex", pindex), sz, _cow(flags))


# ---------------------------------------------------------------------------------------------
# vm_map_findspace


def _findspace(map: VmMap, start: int, length: int) -> int:
    t = map._t
    mx = t.start[HEADER]  # vm_map_max(map)
    lo = t.end[HEADER]  # vm_map_min(map)
    if start < lo:
        start = lo
    if start >= mx or length > mx - start:
        return (mx - length + 1) & M64
    if map.root == NULL:
        if map._trace is not None:
            map._trace.record(
                map, "gap_check",
                f"The map is empty: [{start:#x}, {mx:#x}) is one big gap and {length:#x} bytes "
                f"fit at {start:#x}.",
                start=start, end=mx, size=mx - start, length=length, fits=True,
            )
        return start
    r = findspace_tree(map, start, length, bool(sysctl("vmlab.findspace_kernel_quirk")))
    return (mx - length + 1) & M64 if r < 0 else r


def vm_map_findspace(map: VmMap, start: int, length: int) -> int:
    """vm_map_findspace(9): the lowest address >= start with ``length`` free bytes (first fit,
    no alignment), found in O(log n) amortised by pruning subtrees whose max_free < length; the
    entry before the gap is splayed to the root. The map must be locked.

    Return convention (FreeBSD 12+): the address, or ``vm_map_max(map) - length + 1`` when no
    gap fits, so callers test ``addr + length > vm_map_max(map)``. The vm_map_findspace.9 man
    page still describes the old form (returns 0 and fills ``*addr``, 1 on failure): that is
    stale.

    One deliberate difference, switchable: when ``start`` lies in the gap just before the last
    entry and that gap is too small, FreeBSD 14's vm_map_findspace fails without looking at
    the gap after the last entry (``root->right == header`` test). vmlab returns that gap when
    it fits (first fit, as the reference specifies); ``sysctl("vmlab.findspace_kernel_quirk",
    1)`` restores the kernel's answer.
    """
    vm_map_assert_locked(map, "vm_map_findspace")
    start = _u64("start", start)
    length = _u64("length", length)
    if map._trace is not None:
        _call(map, "vm_map_findspace", start=start, length=length)
    r = _findspace(map, start, length)
    if map._trace is not None:
        ok = r + length <= vm_map_max(map)
        _ret(map, "vm_map_findspace", r, why="" if ok else "no gap is large enough")
        if not ok:
            map._trace.record(
                map, "note",
                f"No gap fits: findspace returns vm_map_max - length + 1 = {r:#x}, so "
                f"addr + length > vm_map_max tells the caller it failed.",
            )
    return r


# ---------------------------------------------------------------------------------------------
# clipping


def _clip_start(map: VmMap, e: int, startaddr: int) -> KERN:
    t = map._t
    if startaddr <= t.start[e]:
        return KERN.SUCCESS
    if not (t.end[e] > startaddr and t.start[e] < startaddr):
        raise ValueError(
            f"vm_map_clip_start: {startaddr:#x} is not inside entry #{e} "
            f"[{t.start[e]:#x}, {t.end[e]:#x})"
        )
    bdry_idx = (t.eflags[e] & ME.SPLIT_BOUNDARY_MASK) >> MAP_ENTRY_SPLIT_BOUNDARY_SHIFT
    if bdry_idx != 0 and startaddr & (pagesizes[bdry_idx] - 1):
        return KERN.INVALID_ARGUMENT
    old_start = t.start[e]
    new = _entry_clone(map, e)
    t.end[new] = startaddr
    entry_link(map, new)
    if map._trace is not None:
        _rec(map, "clip",
             f"Clip at {startaddr:#x}: new entry #{new} takes the front part "
             f"[{old_start:#x}, {startaddr:#x}); entry #{e} keeps [{startaddr:#x}, "
             f"{t.end[e]:#x}) with its offset moved up by {startaddr - old_start:#x}.",
             entry=e, at=startaddr, side="start", new_entry=new)
    return KERN.SUCCESS


def _clip_end(map: VmMap, e: int, endaddr: int) -> KERN:
    t = map._t
    if endaddr >= t.end[e]:
        return KERN.SUCCESS
    if not (t.start[e] < endaddr and t.end[e] > endaddr):
        raise ValueError(
            f"vm_map_clip_end: {endaddr:#x} is not inside entry #{e} "
            f"[{t.start[e]:#x}, {t.end[e]:#x})"
        )
    bdry_idx = (t.eflags[e] & ME.SPLIT_BOUNDARY_MASK) >> MAP_ENTRY_SPLIT_BOUNDARY_SHIFT
    if bdry_idx != 0 and endaddr & (pagesizes[bdry_idx] - 1):
        return KERN.INVALID_ARGUMENT
    old_end = t.end[e]
    new = _entry_clone(map, e)
    t.start[new] = endaddr
    entry_link(map, new)
    if map._trace is not None:
        _rec(map, "clip",
             f"Clip at {endaddr:#x}: entry #{e} keeps [{t.start[e]:#x}, {endaddr:#x}); new "
             f"entry #{new} takes the back part [{endaddr:#x}, {old_end:#x}).",
             entry=e, at=endaddr, side="end", new_entry=new)
    return KERN.SUCCESS


def vm_map_clip_start(map: VmMap, entry: VmMapEntry, startaddr: int) -> KERN:
    """vm_map_clip_start (vm_map.c): split ``entry`` at startaddr if it lies inside it. The
    front part becomes a new entry; the handle ``entry`` keeps [startaddr, end) (its offset
    moves up). Returns KERN_SUCCESS, or KERN_INVALID_ARGUMENT when the entry has a split
    boundary (largepage) that startaddr is not aligned to. The map must be locked."""
    vm_map_assert_locked(map, "vm_map_clip_start")
    e = _entry(map, entry, "vm_map_clip_start")
    a = _u64("startaddr", startaddr)
    if e == HEADER:
        raise ValueError("vm_map_clip_start: cannot clip the header")
    _aligned("vm_map_clip_start", "startaddr", a)
    _call(map, "vm_map_clip_start", entry=e, startaddr=a)
    rv = _clip_start(map, e, a)
    return _ret(map, "vm_map_clip_start", rv, why="the address is not aligned to the entry's "
                "split boundary")


def vm_map_clip_end(map: VmMap, entry: VmMapEntry, endaddr: int) -> KERN:
    """vm_map_clip_end (vm_map.c): split ``entry`` at endaddr if it lies inside it. The handle
    keeps [start, endaddr); the back part becomes a new entry. Returns a KERN code like
    vm_map_clip_start. The map must be locked."""
    vm_map_assert_locked(map, "vm_map_clip_end")
    e = _entry(map, entry, "vm_map_clip_end")
    a = _u64("endaddr", endaddr)
    if e == HEADER:
        raise ValueError("vm_map_clip_end: cannot clip the header")
    _aligned("vm_map_clip_end", "endaddr", a)
    _call(map, "vm_map_clip_end", entry=e, endaddr=a)
    rv = _clip_end(map, e, a)
    return _ret(map, "vm_map_clip_end", rv, why="the address is not aligned to the entry's "
                "split boundary")


def _lookup_clip_start(map: VmMap, start: int) -> tuple[KERN, int, int]:
    """vm_map_lookup_clip_start: (rv, entry at or after start, entry before start)."""
    found, prev = _lookup(map, start)
    if found:
        entry = prev
        rv = _clip_start(map, entry, start)
        if rv != KERN.SUCCESS:
            return rv, entry, prev
        prev = vm_map_entry_pred_id(map, entry)
    else:
        entry = vm_map_entry_succ_id(map, prev)
    return KERN.SUCCESS, entry, prev


def _quiet_search(map: VmMap, addr: int) -> tuple[bool, int]:
    """A non-splaying, unrecorded lookup (vmlab's own pre-checks must not change the tree)."""
    if map.root == NULL:
        return False, HEADER
    saved, map._trace = map._trace, None
    try:
        return tree_search(map, addr)
    finally:
        map._trace = saved


def _clip_would_fail(map: VmMap, addr: int) -> bool:
    """Would clipping the entry containing addr at addr fail with KERN_INVALID_ARGUMENT (a
    split-boundary entry and an unaligned addr)? FreeBSD finds out half-way through an
    operation, after earlier clips; vmlab asks first so that a failed call changes nothing."""
    found, e = _quiet_search(map, addr)
    if not found or addr == map._t.start[e]:
        return False
    bdry_idx = (map._t.eflags[e] & ME.SPLIT_BOUNDARY_MASK) >> MAP_ENTRY_SPLIT_BOUNDARY_SHIFT
    return bdry_idx != 0 and bool(addr & (pagesizes[bdry_idx] - 1))


def _check_prot_max(fname: str, prot: int, max: int) -> None:
    if prot & ~max:
        raise ValueError(f"{fname}: prot {prot:#x} is not a subset of max_prot {max:#x}")


# ---------------------------------------------------------------------------------------------
# delete / remove


def _system_wired_count(t: EntryTable, e: int) -> int:
    """vm_map_entry_system_wired_count."""
    return t.wired_count[e] - (1 if t.eflags[e] & ME.USER_WIRED else 0)


def _entry_unwire(map: VmMap, e: int) -> None:
    """vm_map_entry_unwire: make the entry pageable again (pmap and object hooks if the layers
    below provide them)."""
    t = map._t
    if map.pmap is not None and hasattr(map.pmap, "unwire"):
        map.pmap.unwire(t.start[e], t.end[e])
    unwire = getattr(_vmo, "vm_object_unwire", None)
    if unwire is not None and t.objects[e] is not None:
        unwire(t.objects[e], t.offset[e], t.end[e] - t.start[e])
    old = t.wired_count[e]
    t.wired_count[e] = 0
    if map._trace is not None:
        _rec(map, "modify", f"{_er(t, e)} is unwired before it goes away.",
             entry=e, field="wired_count", old=old, new=0)


def _entry_delete(map: VmMap, e: int) -> None:
    """vm_map_entry_delete: unlink, fix size, trim a one-mapping anonymous object, and put the
    entry on the thread's deferred-free list (guards are freed at once)."""
    t = map._t
    s, en = t.start[e], t.end[e]
    entry_unlink(map, e, merge_next=False)
    obj = t.objects[e]
    if t.eflags[e] & ME.GUARD:
        if map._trace is not None:
            _rec(map, "unlink", f"Guard entry #{e} [{s:#x}, {en:#x}) is removed and freed.",
                 entry=e, start=s, end=en)
        _vmo.vm_object_deallocate(obj)
        t.dispose(e)
        return
    size = en - s
    map.size -= size
    t.creds[e] = None  # swap_release_by_cred
    if obj is not None and not t.eflags[e] & ME.IS_SUB_MAP and obj.flags & OBJ_ANON:
        offidxstart = t.offset[e] >> PAGE_SHIFT
        offidxend = offidxstart + (size >> PAGE_SHIFT)
        if obj.ref_count != 1 and obj.flags & OBJ_ONEMAPPING:
            collapse = getattr(_vmo, "vm_object_collapse", None)
            if collapse is not None:
                collapse(obj)
            page_remove = getattr(_vmo, "vm_object_page_remove", None)
            if page_remove is not None:
                page_remove(obj, offidxstart, offidxend)
            if offidxend >= obj.size and offidxstart < obj.size:
                size1 = obj.size
                obj.size = offidxstart
                if obj.cred is not None:
                    obj.charge -= (size1 - obj.size) << PAGE_SHIFT
    if map._trace is not None:
        _rec(map, "unlink",
             f"Entry #{e} [{s:#x}, {en:#x}) is removed from the map; it is freed (and its "
             f"object reference dropped) when the lock is released.",
             entry=e, start=s, end=en)
    curthread().deferred.append((map, e))


def _delete_must_wait(map: VmMap, start: int, end: int) -> int:
    """First entry in [start, end) FreeBSD's vm_map_delete would sleep on, or NULL. A quiet,
    non-splaying search, so the tree keeps exactly the shape FreeBSD gives it."""
    t = map._t
    if map.root == NULL:
        return NULL
    saved, map._trace = map._trace, None
    try:
        found, e = tree_search(map, start)
    finally:
        map._trace = saved
    if not found:
        e = vm_map_entry_succ_id(map, e)
    while e != HEADER and t.start[e] < end:
        if t.eflags[e] & ME.IN_TRANSITION or _system_wired_count(t, e) != 0:
            return e
        e = vm_map_entry_succ_id(map, e)
    return NULL


def _delete(map: VmMap, start: int, end: int) -> KERN:
    t = map._t
    if start == end:
        return KERN.SUCCESS
    if _clip_would_fail(map, start) or _clip_would_fail(map, end):
        # FreeBSD returns the same code, possibly after deleting part of the range.
        return KERN.INVALID_ARGUMENT
    w = _delete_must_wait(map, start, end)
    if w != NULL:
        from .lock import LockWouldBlock

        raise LockWouldBlock(
            f"vm_map_delete: {_er(t, w)} is being wired or is wired by the kernel; the thread "
            f"would sleep until it is released (nothing was changed)"
        )
    rv, entry, _ = _lookup_clip_start(map, start)
    if rv != KERN.SUCCESS:
        return rv
    while entry != HEADER and t.start[entry] < end:
        rv = _clip_end(map, entry, end)
        if rv != KERN.SUCCESS:
            break
        nxt = vm_map_entry_succ_id(map, entry)
        if t.wired_count[entry] != 0:
            _entry_unwire(map, entry)
        if (t.eflags[entry] & ME.IS_SUB_MAP or t.objects[entry] is not None) and (
            map.pmap is not None
        ):
            map.pmap.remove(t.start[entry], t.end[entry])
            if map._trace is not None:
                map._trace.record(
                    map, "note",
                    f"pmap_remove({t.start[entry]:#x}, {t.end[entry]:#x}): the page-table "
                    f"entries of this range are cleared first.",
                )
        if t.end[entry] == map.anon_loc:
            old = map.anon_loc
            map.anon_loc = t.start[entry]
            if map._trace is not None:
                _rec(map, "map_field",
                     f"anon_loc moves back from {old:#x} to {map.anon_loc:#x}, so the next "
                     f"anonymous mapping can reuse this space.",
                     field="anon_loc", old=old, new=map.anon_loc)
        _entry_delete(map, entry)
        entry = nxt
    return rv


def vm_map_delete(map: VmMap, start: int, end: int) -> KERN:
    """vm_map_delete(9): remove every mapping in [start, end); holes are fine. The map must be
    locked. Entries are clipped at both ends, unwired, their pages removed from the pmap (only
    when the entry has an object or is a submap), then unlinked; they are freed at the next
    unlock. If an entry ending at ``anon_loc`` goes, ``anon_loc`` moves back to its start.

    Returns KERN_SUCCESS, or KERN_INVALID_ARGUMENT when start or end splits a split-boundary
    (largepage) entry at an unaligned address; vmlab checks this before changing anything, where
    FreeBSD may already have deleted the front of the range. Where FreeBSD would sleep (an
    entry in transition or wired by the kernel), vmlab raises LockWouldBlock before changing
    anything.
    """
    vm_map_assert_locked(map, "vm_map_delete")
    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_delete", "start", start)
    _aligned("vm_map_delete", "end", end)
    if map._trace is not None:
        _call(map, "vm_map_delete", start=start, end=end)
    if end < start:
        raise ValueError(f"vm_map_delete: end {end:#x} is below start {start:#x}")
    rv = _delete(map, start, end)
    return _ret(map, "vm_map_delete", rv, why="a clip hit a largepage boundary")


def _range_check(map: VmMap, start: int, end: int) -> tuple[int, int]:
    """VM_MAP_RANGE_CHECK: clamp [start, end) into the map; start > end becomes empty."""
    lo, hi = vm_map_min(map), vm_map_max(map)
    if start < lo:
        start = lo
    if end > hi:
        end = hi
    if start > end:
        start = end
    return start, end


def vm_map_remove(map: VmMap, start: int, end: int) -> KERN:
    """vm_map_remove(9): lock the map, clamp the range into it, vm_map_delete, unlock."""
    from .lock import vm_map_lock, vm_map_unlock

    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_remove", "start", start)
    _aligned("vm_map_remove", "end", end)
    _call(map, "vm_map_remove", start=start, end=end)
    vm_map_lock(map)
    try:
        s, e = _range_check(map, start, end)
        rv = _delete(map, s, e)
    finally:
        vm_map_unlock(map)
    return _ret(map, "vm_map_remove", rv, why="a clip hit a largepage boundary")


# ---------------------------------------------------------------------------------------------
# check_protection


def vm_map_check_protection(map: VmMap, start: int, end: int, protection: int) -> bool:
    """vm_map_check_protection(9): TRUE when all of [start, end) is mapped without holes and
    every entry allows ``protection``. VM_PROT_NONE tests "fully mapped". Needs the map lock
    (shared is enough)."""
    vm_map_assert_locked(map, "vm_map_check_protection", read_ok=True)
    start = _u64("start", start)
    end = _u64("end", end)
    _aligned("vm_map_check_protection", "start", start)
    _aligned("vm_map_check_protection", "end", end)
    protection = _int("protection", protection, 8)
    _call(map, "vm_map_check_protection", start=start, end=end, protection=protection)
    t = map._t
    found, e = _lookup(map, start)
    if not found:
        return _ret(map, "vm_map_check_protection", False)
    while start < end:
        if start < t.start[e] or e == HEADER:
            return _ret(map, "vm_map_check_protection", False)
        if t.protection[e] & protection != protection:
            return _ret(map, "vm_map_check_protection", False)
        start = t.end[e]
        e = vm_map_entry_succ_id(map, e)
    return _ret(map, "vm_map_check_protection", True)


# ---------------------------------------------------------------------------------------------
# consistency check


def vm_map_check(map: VmMap) -> None:
    """Check every invariant of FreeBSD's _vm_map_assert_consistent and more: address order,
    no overlap, start < end, entries inside [min, max], the threaded links (each missing child
    points at the in-order neighbour, header.right/left are the first/last entry), every node's
    max_free, nentries and size, and page alignment (the map's bounds, every entry's start and
    end, and the offset of every entry with an object: a guard gap keeps its stack's
    protections in its offset, so its offset is not checked). Raises VmMapInconsistent naming
    the first bad entry."""
    t = map._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    lo, hi = vm_map_min(map), vm_map_max(map)
    if not t.eflags[HEADER] & ME.HEADER:
        raise VmMapInconsistent("the header lost its MAP_ENTRY_HEADER flag")
    if lo & PAGE_MASK or hi & PAGE_MASK:
        raise VmMapInconsistent(f"the map's bounds [{lo:#x}, {hi:#x}) are not page-aligned")
    if map.root == NULL:
        if map.nentries != 0 or map.size != 0:
            raise VmMapInconsistent(
                f"empty tree but nentries={map.nentries} size={map.size:#x}"
            )
        if L[HEADER] != HEADER or R[HEADER] != HEADER:
            raise VmMapInconsistent("empty map: header links must point at the header")
        return
    # walk with bounds, guarding against cycles
    order: list[int] = []
    seen: set[int] = set()
    stack: list[tuple[int, int, int, bool]] = [(map.root, HEADER, HEADER, False)]
    while stack:
        node, lb, ub, expanded = stack.pop()
        if not 0 < node < t.capacity:
            raise VmMapInconsistent(f"a tree link points at invalid slot {node}")
        if expanded:
            order.append(node)
            lp = MF[L[node]] if L[node] != lb else S[node] - E[lb]
            rp = MF[R[node]] if R[node] != ub else S[ub] - E[node]
            if MF[node] != max(lp, rp):
                raise VmMapInconsistent(
                    f"{_er(t, node)}: max_free is {MF[node]:#x} but its gaps say "
                    f"max({lp:#x}, {rp:#x})"
                )
            continue
        if node in seen:
            raise VmMapInconsistent(f"entry #{node} is reachable twice (cycle in the tree)")
        seen.add(node)
        if len(seen) > map.nentries:
            raise VmMapInconsistent(f"more than nentries={map.nentries} entries in the tree")
        if R[node] != ub:
            stack.append((R[node], node, ub, False))
        stack.append((node, lb, ub, True))
        if L[node] != lb:
            stack.append((L[node], lb, node, False))
    if len(order) != map.nentries:
        raise VmMapInconsistent(f"tree holds {len(order)} entries but nentries={map.nentries}")
    if R[HEADER] != order[0]:
        raise VmMapInconsistent(f"header.right is #{R[HEADER]}, not the first entry #{order[0]}")
    if L[HEADER] != order[-1]:
        raise VmMapInconsistent(f"header.left is #{L[HEADER]}, not the last entry #{order[-1]}")
    size = 0
    prev = HEADER
    prev_end = lo
    free = set(t.free)
    for i, e in enumerate(order):
        if e in free:
            raise VmMapInconsistent(f"entry #{e} is linked but its slot is on the free list")
        if not S[e] < E[e]:
            raise VmMapInconsistent(f"{_er(t, e)}: start is not below end")
        if S[e] & PAGE_MASK or E[e] & PAGE_MASK:
            raise VmMapInconsistent(f"{_er(t, e)} is not page-aligned")
        if t.objects[e] is not None and t.offset[e] & PAGE_MASK:
            raise VmMapInconsistent(
                f"{_er(t, e)}: its object offset {t.offset[e]:#x} is not page-aligned"
            )
        if S[e] < prev_end:
            raise VmMapInconsistent(
                f"{_er(t, e)} starts below the end {prev_end:#x} of the entry before it"
            )
        if E[e] > hi:
            raise VmMapInconsistent(f"{_er(t, e)} ends above the map's max {hi:#x}")
        nxt = order[i + 1] if i + 1 < len(order) else HEADER
        # a missing child is a thread to the in-order neighbour (succ/pred walk the threads)
        if vm_map_entry_succ_id(map, e) != nxt:
            raise VmMapInconsistent(f"{_er(t, e)}: its successor link does not lead to #{nxt}")
        if vm_map_entry_pred_id(map, e) != prev:
            raise VmMapInconsistent(f"{_er(t, e)}: its predecessor link does not lead to #{prev}")
        obj = t.objects[e]
        oid = -1 if obj is None else getattr(obj, "id", -1)
        if t.object_id[e] != oid:
            raise VmMapInconsistent(f"{_er(t, e)}: object id column out of sync")
        if not t.eflags[e] & ME.GUARD:
            size += E[e] - S[e]
        prev, prev_end = e, E[e]
    if size != map.size:
        raise VmMapInconsistent(f"map.size is {map.size:#x} but the entries add up to {size:#x}")

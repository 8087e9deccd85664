"""The vm_map lock family and the map timestamp (sys/vm/vm_map.c: _vm_map_lock and friends).

A user map's lock is an sx lock: one exclusive holder, or any number of shared holders.
``map.timestamp`` counts exclusive acquisitions exactly as FreeBSD 14 does: vm_map_lock,
a successful vm_map_trylock and a successful vm_map_lock_upgrade add 1; vm_map_wait_busy adds 1;
read locks, unlocks and downgrades do not.

vmlab is single-threaded, so "threads" are names: every lock call acts for the current thread
(`curthread()`, changed with ``with as_thread("B"): ...``) or for ``thread="B"``. A call that would
sleep in the kernel (the lock is held in a conflicting mode by another thread) raises
`LockWouldBlock` and changes nothing; the trylock functions return 0 instead, so they double as
probes. Taking a lock the same thread already holds exclusively raises `LockRecursion`
(FreeBSD panics: "recursed on non-recursive sx").

A failed vm_map_lock_upgrade: FreeBSD drops the shared lock, sleeps for the exclusive one and
fails if the timestamp moved meanwhile. vmlab cannot sleep, so the upgrade fails exactly when
other threads share the lock (someone may change the map before we get it): the caller is left
holding no lock and gets 1.

Entries that vm_map_delete removes from a user map are freed (their objects released) at the
deleting thread's next unlock, as FreeBSD's td_map_def_user list does.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .vm_map import VmMap

__all__ = [
    "LockNotHeld",
    "LockRecursion",
    "LockWouldBlock",
    "Thread",
    "Ucred",
    "VmMapLock",
    "as_thread",
    "curthread",
    "vm_map_assert_locked",
    "vm_map_lock",
    "vm_map_lock_downgrade",
    "vm_map_lock_read",
    "vm_map_lock_upgrade",
    "vm_map_locked",
    "vm_map_trylock",
    "vm_map_trylock_read",
    "vm_map_unlock",
    "vm_map_unlock_read",
    "vm_map_wait_busy",
]


class LockWouldBlock(RuntimeError):
    """The kernel would put this thread to sleep here; vmlab refuses and changes nothing."""


class LockRecursion(RuntimeError):
    """The thread already holds the lock exclusively (FreeBSD panics)."""


class LockNotHeld(RuntimeError):
    """A function that needs the map lock was called without it (FreeBSD's KASSERT)."""


@dataclass(frozen=True)
class Ucred:
    """struct ucred, reduced to an identity: entries charged for swap point at one."""

    uid: int = 0

    def __repr__(self) -> str:
        return f"<ucred uid={self.uid}>"


@dataclass(eq=False)
class Thread:
    """A named kernel thread: the lock holder identity, its credential, and its list of
    map entries waiting to be freed at its next unlock (td_map_def_user)."""

    name: str
    td_ucred: Ucred = field(default_factory=Ucred)
    deferred: list[tuple[Any, int]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<thread {self.name}>"


_threads: dict[str, Thread] = {}
_current: contextvars.ContextVar[str] = contextvars.ContextVar("vmlab_curthread", default="td0")


def _thread(name: str | None) -> Thread:
    if name is None:
        name = _current.get()
    if not isinstance(name, str):
        raise TypeError(f"thread names are strings, not {type(name).__name__}")
    td = _threads.get(name)
    if td is None:
        td = _threads[name] = Thread(name)
    return td


def curthread() -> Thread:
    """The current thread (FreeBSD's ``curthread``); "td0" unless changed with `as_thread`."""
    return _thread(None)


@contextmanager
def as_thread(name: str) -> Iterator[Thread]:
    """Run the ``with`` block as thread ``name`` (lock calls inside act for it)."""
    td = _thread(name)
    token = _current.set(name)
    try:
        yield td
    finally:
        _current.reset(token)


class VmMapLock:
    """The sx lock of one map: ``mode`` is "unlocked", "shared" or "exclusive"; ``holders``
    lists thread names (one per shared acquisition)."""

    __slots__ = ("mode", "holders")

    def __init__(self) -> None:
        self.mode = "unlocked"
        self.holders: list[str] = []

    def held_by(self, name: str) -> bool:
        return name in self.holders

    def __repr__(self) -> str:
        return f"<vm_map lock {self.mode} by {', '.join(self.holders) or 'nobody'}>"


def _record(map: VmMap, op: str, td: Thread, ok: bool, text: str, old_ts: int) -> None:
    tr = map._trace
    if tr is None:
        return
    tr.mark_dirty(map)
    lk = map.lock
    tr.record(
        map,
        "lock",
        text,
        op=op,
        thread=td.name,
        holder=td.name,
        ok=ok,
        mode=lk.mode,
        holders=tuple(lk.holders),
        timestamp=map.timestamp,
    )
    if map.timestamp != old_ts:
        tr.record(
            map,
            "timestamp",
            f"map.timestamp goes from {old_ts} to {map.timestamp}: threads that slept can tell "
            f"the map may have changed.",
            old=old_ts,
            new=map.timestamp,
        )


def _bump(map: VmMap) -> None:
    map.timestamp = (map.timestamp + 1) & 0xFFFFFFFF  # u_int


def _holders_text(map: VmMap) -> str:
    return ", ".join(sorted(set(map.lock.holders)))


def vm_map_lock(map: VmMap, *, thread: str | None = None) -> None:
    """vm_map_lock(9): take the map lock exclusively; timestamp += 1."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode == "exclusive" and lk.holders == [td.name]:
        raise LockRecursion(f"thread {td.name} already holds the map lock exclusively")
    if lk.mode != "unlocked":
        if map._trace is not None:
            _record(map, "lock", td, False,
                    f"Thread {td.name} wants the map lock exclusively but {_holders_text(map)} "
                    f"hold(s) it ({lk.mode}): it would sleep.", map.timestamp)
        raise LockWouldBlock(
            f"vm_map_lock: thread {td.name} would sleep: the map is locked {lk.mode} by "
            f"{_holders_text(map)}"
        )
    old = map.timestamp
    lk.mode = "exclusive"
    lk.holders = [td.name]
    _bump(map)
    if map._trace is not None:
        _record(map, "lock", td, True,
                f"Thread {td.name} locks the map exclusively (writers must be alone).", old)


def vm_map_trylock(map: VmMap, *, thread: str | None = None) -> int:
    """vm_map_trylock(9): exclusive lock if free right now; nonzero on success (timestamp += 1)."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode != "unlocked":
        if map._trace is not None:
            _record(map, "trylock", td, False,
                    f"Thread {td.name} tries the exclusive lock: held {lk.mode} by "
                    f"{_holders_text(map)}, so it gets 0 instead of sleeping.", map.timestamp)
        return 0
    old = map.timestamp
    lk.mode = "exclusive"
    lk.holders = [td.name]
    _bump(map)
    if map._trace is not None:
        _record(map, "trylock", td, True, f"Thread {td.name} gets the exclusive lock.", old)
    return 1


def vm_map_lock_read(map: VmMap, *, thread: str | None = None) -> None:
    """vm_map_lock_read(9): take the lock shared (many readers at once)."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode == "exclusive":
        if lk.holders == [td.name]:
            raise LockRecursion(
                f"thread {td.name} holds the map lock exclusively and asks for a read lock"
            )
        if map._trace is not None:
            _record(map, "lock_read", td, False,
                    f"Thread {td.name} wants a read lock but {_holders_text(map)} holds the "
                    f"map exclusively: it would sleep.", map.timestamp)
        raise LockWouldBlock(
            f"vm_map_lock_read: thread {td.name} would sleep: {_holders_text(map)} holds the "
            f"map exclusively"
        )
    lk.mode = "shared"
    lk.holders.append(td.name)
    if map._trace is not None:
        _record(map, "lock_read", td, True,
                f"Thread {td.name} takes a read (shared) lock; readers: {_holders_text(map)}.",
                map.timestamp)


def vm_map_trylock_read(map: VmMap, *, thread: str | None = None) -> int:
    """vm_map_trylock_read(9): shared lock unless someone holds it exclusively; nonzero on
    success."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode == "exclusive":
        if map._trace is not None:
            _record(map, "trylock_read", td, False,
                    f"Thread {td.name} tries a read lock: {_holders_text(map)} holds the map "
                    f"exclusively, so it gets 0.", map.timestamp)
        return 0
    lk.mode = "shared"
    lk.holders.append(td.name)
    if map._trace is not None:
        _record(map, "trylock_read", td, True, f"Thread {td.name} gets a read lock.",
                map.timestamp)
    return 1


def _process_deferred(map: VmMap, td: Thread) -> None:
    """vm_map_process_deferred: free the entries this thread deleted while it held a lock."""
    if not td.deferred:
        return
    pending, td.deferred = td.deferred, []
    for m, slot in pending:
        m._free_deferred_entry(slot)


def vm_map_unlock(map: VmMap, *, thread: str | None = None) -> None:
    """vm_map_unlock(9): release the exclusive lock, then free deferred entries."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode != "exclusive" or lk.holders != [td.name]:
        raise LockNotHeld(
            f"vm_map_unlock: thread {td.name} does not hold the map lock exclusively "
            f"(it is {lk.mode}{' by ' + _holders_text(map) if lk.holders else ''})"
        )
    lk.mode = "unlocked"
    lk.holders = []
    if map._trace is not None:
        _record(map, "unlock", td, True, f"Thread {td.name} unlocks the map.", map.timestamp)
    _process_deferred(map, td)


def vm_map_unlock_read(map: VmMap, *, thread: str | None = None) -> None:
    """vm_map_unlock_read(9): drop one shared hold, then free deferred entries."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode != "shared" or td.name not in lk.holders:
        raise LockNotHeld(
            f"vm_map_unlock_read: thread {td.name} holds no read lock on this map "
            f"(it is {lk.mode})"
        )
    lk.holders.remove(td.name)
    if not lk.holders:
        lk.mode = "unlocked"
    if map._trace is not None:
        _record(map, "unlock_read", td, True, f"Thread {td.name} drops its read lock.",
                map.timestamp)
    _process_deferred(map, td)


def vm_map_lock_upgrade(map: VmMap, *, thread: str | None = None) -> int:
    """vm_map_lock_upgrade: shared -> exclusive. 0 on success (timestamp += 1). Nonzero on
    failure, and then the caller holds NO lock (FreeBSD's rule). See the module docstring for
    when vmlab's upgrade fails."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode != "shared" or td.name not in lk.holders:
        raise LockNotHeld(f"vm_map_lock_upgrade: thread {td.name} holds no read lock")
    old = map.timestamp
    if len(lk.holders) == 1:
        lk.mode = "exclusive"
        _bump(map)
        if map._trace is not None:
            _record(map, "upgrade", td, True,
                    f"Thread {td.name} is the only reader: its lock becomes exclusive.", old)
        return 0
    lk.holders.remove(td.name)
    if map._trace is not None:
        _record(map, "upgrade", td, False,
                f"Thread {td.name} cannot upgrade while {_holders_text(map)} also read(s): it "
                f"drops its lock and must start over.", old)
    _process_deferred(map, td)
    return 1


def vm_map_lock_downgrade(map: VmMap, *, thread: str | None = None) -> None:
    """vm_map_lock_downgrade: exclusive -> shared, without letting go."""
    td = _thread(thread)
    lk = map.lock
    if lk.mode != "exclusive" or lk.holders != [td.name]:
        raise LockNotHeld(f"vm_map_lock_downgrade: thread {td.name} holds no exclusive lock")
    lk.mode = "shared"
    if map._trace is not None:
        _record(map, "downgrade", td, True,
                f"Thread {td.name} downgrades to a read lock; other readers may now enter.",
                map.timestamp)


def vm_map_locked(map: VmMap, *, thread: str | None = None) -> int:
    """vm_map_locked: nonzero when the (current) thread holds the lock exclusively."""
    td = _thread(thread)
    return int(map.lock.mode == "exclusive" and map.lock.holders == [td.name])


def vm_map_assert_locked(map: VmMap, fname: str, read_ok: bool = False) -> None:
    """VM_MAP_ASSERT_LOCKED: raise LockNotHeld unless the current thread holds the lock
    exclusively (or, with read_ok, shared)."""
    td = _thread(None)
    lk = map.lock
    if lk.mode == "exclusive" and lk.holders == [td.name]:
        return
    if read_ok and lk.mode == "shared" and td.name in lk.holders:
        return
    need = "the map lock (a read lock is enough)" if read_ok else "the map lock exclusively"
    raise LockNotHeld(
        f"{fname}() needs {need}; thread {td.name} does not hold it. Call vm_map_lock(map) "
        f"first."
    )


def vm_map_wait_busy(map: VmMap) -> None:
    """vm_map_wait_busy: wait until no wiring is in progress (map.busy == 0), then
    timestamp += 1 (it always bumps, even when the map was not busy)."""
    vm_map_assert_locked(map, "vm_map_wait_busy")
    if map.busy:
        raise LockWouldBlock(
            f"vm_map_wait_busy: the map is busy (a wiring is in progress, busy={map.busy}); "
            f"the thread would sleep"
        )
    old = map.timestamp
    _bump(map)
    if map._trace is not None:
        map._trace.mark_dirty(map)
        map._trace.record(
            map,
            "timestamp",
            f"vm_map_wait_busy: no wiring in progress; map.timestamp goes from {old} to "
            f"{map.timestamp}.",
            old=old,
            new=map.timestamp,
        )

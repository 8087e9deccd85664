"""A simulated machine: one physical memory, one disk, shared by every address space on it.

Every vmspace of a machine allocates its page frames (and, with the amd64 pmap, its page
tables) from the same `PhysicalMemory`, so a page shared by fork (COW or SHARE) is the very
same frame in both processes. FreeBSD counterpart: the one ``vm_page`` array of a running kernel.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .pager import Pager, SimFile
from .x86.physmem import PhysicalMemory

__all__ = ["DEFAULT_MEMORY", "Machine", "default_machine", "set_default_machine"]

DEFAULT_MEMORY = 64 << 20


def _amd64_factory(machine: Machine, la57: bool = False) -> Any:
    from .x86.pmap import Amd64Pmap

    return Amd64Pmap(machine.physmem, la57=la57)


def _mem_factory(machine: Machine, la57: bool = False) -> Any:
    """MemPmap has no page tables, hence no paging mode: every user address fits."""
    from .pmap import MemPmap

    return MemPmap(machine.physmem)


def _auto_pmap_factory() -> Callable[..., Any]:
    """Amd64Pmap once the x86 layer provides it, else the in-memory MemPmap."""
    try:
        from .x86.pmap import Amd64Pmap  # noqa: F401

        return _amd64_factory
    except ImportError:
        return _mem_factory


def _takes_la57(factory: Callable[..., Any]) -> bool:
    """Whether a user-supplied factory accepts the ``la57`` keyword."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "la57" or p.kind is p.VAR_KEYWORD for p in params)


class Machine:
    """One PhysicalMemory (``mem_bytes``, default 64 MiB), one `Pager` (the disk and its
    files), and ``pmap_factory(machine, la57=False) -> pmap`` for new address spaces: "mem"
    (MemPmap), "amd64" (Amd64Pmap), "auto" (amd64 when available) or a callable (one that
    takes only ``machine`` is called without ``la57``)."""

    def __init__(
        self, mem_bytes: int = DEFAULT_MEMORY, pmap_factory: str | Callable[..., Any] = "auto"
    ) -> None:
        self.physmem = PhysicalMemory(mem_bytes)
        self.pager = Pager()
        self.files: dict[str, SimFile] = {}
        if pmap_factory == "auto":
            self.pmap_factory = _auto_pmap_factory()
        elif pmap_factory == "mem":
            self.pmap_factory = _mem_factory
        elif pmap_factory == "amd64":
            self.pmap_factory = _amd64_factory
        elif callable(pmap_factory):
            self.pmap_factory = pmap_factory
        else:
            raise ValueError(f"unknown pmap factory {pmap_factory!r}")

    def new_pmap(self, la57: bool = False) -> Any:
        """pmap_pinit: a fresh, empty pmap on this machine's memory. ``la57`` asks for 5-level
        paging (amd64 pmap_pinit_type → pmap_pinit_pml5 instead of pmap_pinit_pml4; the
        Amd64Pmap's Mmu then runs with CR4.LA57). `vmspace_alloc` sets it when the map's top
        is above VM_MAXUSER_ADDRESS_LA48, as FreeBSD does for an LA57 process."""
        if la57 and _takes_la57(self.pmap_factory):
            pmap = self.pmap_factory(self, la57=True)
        else:
            pmap = self.pmap_factory(self)
        if not hasattr(pmap, "unwire"):
            pmap.unwire = _unwire_by_reentering.__get__(pmap)
        return pmap

    def file(self, name: str, size_or_bytes: int | bytes | None = None) -> SimFile:
        """The file called ``name``, created with ``size_or_bytes`` if it does not exist."""
        f = self.files.get(name)
        if f is None:
            if size_or_bytes is None:
                raise FileNotFoundError(name)
            f = self.files[name] = SimFile(name, size_or_bytes)
        return f

    def __repr__(self) -> str:
        return f"<Machine {self.physmem!r}, {len(self.files)} files>"


def _unwire_by_reentering(pmap: Any, sva: int, eva: int) -> None:
    """pmap_unwire(9) for a pmap that lacks it: enter each wired page again, unwired, with
    the rights it has (a read access, so no modified bit is added)."""
    for va, _pa, prot, wired in list(pmap.mappings()):
        if wired and sva <= va < eva:
            pmap.enter(va, pmap.page_at(va), int(prot), 0, 0)


_default: Machine | None = None


def default_machine() -> Machine:
    """The machine used when none is given (created on first use, 64 MiB)."""
    global _default
    if _default is None:
        _default = Machine()
    return _default


def set_default_machine(machine: Machine | None) -> None:
    """Replace (or with None, forget) the default machine."""
    global _default
    _default = machine

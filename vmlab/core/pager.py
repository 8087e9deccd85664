"""The simulated disk: files with per-page contents and a log of every page-in and page-out.

FreeBSD counterparts: the vnode pager (sys/vm/vnode_pager.c: vnode_pager_getpages,
vnode_pager_putpages) behind an OBJT_VNODE object, and vm_pager_get_pages /
vm_pager_put_pages (sys/vm/vm_pager.h). Anonymous memory is never paged out in this model
(there is no page daemon), so only vnode objects talk to the pager. Every transfer is appended
to `Pager.log` so lessons can show read-ahead clusters and msync write-backs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .constants import PAGE_SIZE

if TYPE_CHECKING:
    from .vm_object import VmObject
    from .vm_page import VmPage

__all__ = ["Pager", "PagerOp", "SimFile"]

_file_ids = itertools.count(1)


class SimFile:
    """A file on the simulated disk (the vnode behind an OBJT_VNODE object).

    ``contents[i]`` is the content of page i. ``object`` is the vnode's VM object
    (``vp->v_object``), created on first mmap and dropped when its last reference goes.
    """

    def __init__(self, name: str, size_or_bytes: int | bytes) -> None:
        self.id = next(_file_ids)
        self.name = name
        if isinstance(size_or_bytes, (bytes, bytearray)):
            data = bytes(size_or_bytes)
            self.size = len(data)
            self.contents: list[Any] = [
                data[i : i + PAGE_SIZE].ljust(PAGE_SIZE, b"\0")
                for i in range(0, len(data), PAGE_SIZE)
            ]
        elif isinstance(size_or_bytes, int) and not isinstance(size_or_bytes, bool):
            if size_or_bytes < 0:
                raise ValueError(f"file size {size_or_bytes} is negative")
            self.size = size_or_bytes
            self.contents = [f"{name}[{i}]" for i in range(self.npages)]
        else:
            raise TypeError("a file is made from a size in bytes or a bytes object")
        self.object: VmObject | None = None

    @property
    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE

    def __repr__(self) -> str:
        return f"<SimFile {self.name!r} {self.size} bytes>"


@dataclass(frozen=True)
class PagerOp:
    """One disk transfer: ``op`` is "pagein" or "pageout"; pages [pindex, pindex + count)."""

    op: str
    object: int
    file: str
    pindex: int
    count: int
    reqpage: int  # the page the fault asked for (pagein), -1 otherwise


@dataclass
class Pager:
    """The machine's disk: the log of transfers and the counters."""

    log: list[PagerOp] = field(default_factory=list)
    pageins: int = 0
    pageouts: int = 0

    def getpages(self, obj: VmObject, pages: list[VmPage], reqpage: int) -> None:
        """vm_pager_get_pages: fill consecutive ``pages`` of a vnode object from its file and
        mark them valid (one recorded transfer)."""
        f: SimFile = obj.handle
        for m in pages:
            m.value = f.contents[m.pindex] if m.pindex < len(f.contents) else 0
            m.valid = True
            m.dirty = False
        self.pageins += len(pages)
        self.log.append(PagerOp("pagein", obj.id, f.name, pages[0].pindex, len(pages), reqpage))

    def putpages(self, obj: VmObject, pages: list[VmPage]) -> None:
        """vm_pager_put_pages: write consecutive dirty ``pages`` back to the file."""
        f: SimFile = obj.handle
        for m in pages:
            if m.pindex < len(f.contents):
                f.contents[m.pindex] = m.value
            m.dirty = False
        self.pageouts += len(pages)
        self.log.append(PagerOp("pageout", obj.id, f.name, pages[0].pindex, len(pages), -1))

"""The simulated disk: files with per-page contents and a log of every page-in and page-out.

FreeBSD counterparts: the vnode pager (sys/vm/vnode_pager.c: vnode_pager_getpages,
vnode_pager_putpages) behind an OBJT_VNODE object, and vm_pager_get_pages /
vm_pager_put_pages (sys/vm/vm_pager.h). Anonymous memory is never paged out in this model
(there is no page daemon), so only vnode objects talk to the pager. Every transfer is appended
to `Pager.log` so lessons can show read-ahead clusters and msync write-backs.

Write errors: set ``machine.pager.fail_putpages = True`` (every write-back fails, a dead disk)
or ``file.fail_writes = True`` (only that file's, e.g. a full file system under it). A failed
transfer is logged with ``error=EIO``, writes nothing and leaves the pages dirty, as
vnode_pager_putpages reporting VM_PAGER_ERROR does (vm_pageout_flush keeps the page dirty and
sets ``eio``); vm_object_page_clean then returns FALSE, vm_object_sync FALSE, vm_map_sync
KERN_FAILURE and msync(2) EIO.
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

_EIO = 5  # sys/sys/errno.h

_file_ids = itertools.count(1)


class SimFile:
    """A file on the simulated disk (the vnode behind an OBJT_VNODE object).

    ``contents[i]`` is the content of page i. ``object`` is the vnode's VM object
    (``vp->v_object``), created on first mmap and dropped when its last reference goes.
    ``fail_writes`` (default False) makes every write-back of this file fail with EIO.
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
        self.fail_writes = False

    @property
    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE

    def __repr__(self) -> str:
        return f"<SimFile {self.name!r} {self.size} bytes>"


@dataclass(frozen=True, repr=False)
class PagerOp:
    """One disk transfer: ``op`` is "pagein" or "pageout"; pages [pindex, pindex + count).
    ``error`` is the errno of a transfer that failed (EIO, nothing was written), else 0."""

    op: str
    object: int
    file: str
    pindex: int
    count: int
    reqpage: int  # the page the fault asked for (pagein), -1 otherwise
    error: int = 0

    def __repr__(self) -> str:
        # The dataclass form, with ``error`` shown only for a failed transfer.
        shown = [f"{k}={getattr(self, k)!r}" for k in
                 ("op", "object", "file", "pindex", "count", "reqpage")]
        if self.error:
            shown.append(f"error={self.error!r}")
        return f"PagerOp({', '.join(shown)})"


@dataclass
class Pager:
    """The machine's disk: the log of transfers and the counters (``pageouts`` counts pages
    written, ``pageout_errors`` pages whose write-back failed). ``fail_putpages = True`` makes
    every write-back fail with EIO (see the module docstring)."""

    log: list[PagerOp] = field(default_factory=list)
    pageins: int = 0
    pageouts: int = 0
    pageout_errors: int = 0
    fail_putpages: bool = False

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

    def putpages(self, obj: VmObject, pages: list[VmPage]) -> bool:
        """vm_pager_put_pages: write consecutive dirty ``pages`` back to the file. Returns False
        (VM_PAGER_ERROR for the run; the pages stay dirty, the file keeps its old contents)
        when ``fail_putpages`` or the file's ``fail_writes`` is set, else True."""
        f: SimFile = obj.handle
        if self.fail_putpages or getattr(f, "fail_writes", False):
            self.pageout_errors += len(pages)
            self.log.append(
                PagerOp("pageout", obj.id, f.name, pages[0].pindex, len(pages), -1, _EIO)
            )
            return False
        for m in pages:
            if m.pindex < len(f.contents):
                f.contents[m.pindex] = m.value
            m.dirty = False
        self.pageouts += len(pages)
        self.log.append(PagerOp("pageout", obj.id, f.name, pages[0].pindex, len(pages), -1))
        return True

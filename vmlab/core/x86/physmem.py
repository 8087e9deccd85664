"""Emulated physical memory: 4 KiB frames in one numpy array, with a frame allocator.

The page tables the amd64 pmap builds live here exactly as the hardware reads them: entry
``i`` of the table at physical address ``pa`` is the little-endian u64 at ``pa + 8 * i``. The
raw image (`PhysicalMemory.to_bytes`) can be loaded by any x86-64 emulator together with a CR3.

FreeBSD counterpart: the physical page allocator (``vm_page_alloc`` / ``vm_page_free`` in
sys/vm/vm_page.c) reduced to what the pmap and the process layer need: frames, what each holds
(a page-table page of which level, or a data page and its owner ``vm_page``), and a clean
resource-shortage error (``OutOfFrames``, FreeBSD's ``KERN_RESOURCE_SHORTAGE`` path) that
changes nothing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FRAME_KINDS", "OutOfFrames", "PhysicalMemory"]

#: What a frame may hold. "raw" marks nonzero frames of an image loaded with ``from_bytes``.
FRAME_KINDS: tuple[str, ...] = ("PML5", "PML4", "PDPT", "PD", "PT", "data")
_CODES: dict[str, int] = {k: i + 1 for i, k in enumerate(FRAME_KINDS)}
_RAW = len(FRAME_KINDS) + 1
_NAMES: tuple[str | None, ...] = (None, *FRAME_KINDS, "raw")

FRAME_SHIFT = 12
FRAME_SIZE = 1 << FRAME_SHIFT
WORDS_PER_FRAME = FRAME_SIZE // 8


class OutOfFrames(MemoryError):
    """No free frame left (FreeBSD: the allocation fails, KERN_RESOURCE_SHORTAGE). Nothing was
    changed by the failing call."""


class PhysicalMemory:
    """``size_bytes`` of emulated RAM starting at physical address 0.

    Frame 0 is never handed out (so a physical address of 0 can mean "none", as in
    ``pmap_extract``). Allocation takes the lowest free frame first on a fresh memory and then
    reuses freed frames last-freed-first, so runs are deterministic.
    """

    def __init__(self, size_bytes: int, maxphyaddr: int = 52) -> None:
        if not isinstance(size_bytes, int) or isinstance(size_bytes, bool):
            raise TypeError("size_bytes must be an int")
        if size_bytes <= FRAME_SIZE or size_bytes % FRAME_SIZE:
            raise ValueError(
                f"memory size {size_bytes:#x} must be a multiple of 4096 and hold at least 2 frames"
            )
        if not isinstance(maxphyaddr, int) or not 13 <= maxphyaddr <= 52:
            raise ValueError(f"MAXPHYADDR {maxphyaddr!r} must be an int in 13..52")
        if size_bytes > 1 << maxphyaddr:
            raise ValueError(
                f"{size_bytes:#x} bytes do not fit below 2**MAXPHYADDR = {1 << maxphyaddr:#x}"
            )
        self.maxphyaddr = maxphyaddr
        self.size = size_bytes
        self.nframes = size_bytes >> FRAME_SHIFT
        self.frames: np.ndarray = np.zeros(self.nframes * WORDS_PER_FRAME, dtype=np.uint64)
        self._kind = np.zeros(self.nframes, dtype=np.int8)
        self._owner: dict[int, object] = {}
        # A stack: pop() gives the next frame. Frame 0 is never on it.
        self._free: list[int] = list(range(self.nframes - 1, 0, -1))
        #: The amd64 kernel's shared page-table pages, made by the first Amd64Pmap (pmap.py).
        self.kernel_tables: object | None = None

    # ---- allocator ---------------------------------------------------------------------
    @property
    def nfree(self) -> int:
        """Frames that ``alloc_frame`` can still hand out."""
        return len(self._free)

    @property
    def nallocated(self) -> int:
        """Frames in use (frame 0 excluded)."""
        return self.nframes - 1 - len(self._free)

    def alloc_frame(self, kind: str, owner: object | None = None) -> int:
        """Take a free frame, zero it, remember ``kind`` and ``owner``; return its physical
        address. Raises `OutOfFrames` (state unchanged) when none is left."""
        code = _CODES.get(kind)
        if code is None:
            raise ValueError(f"frame kind {kind!r} is not one of {FRAME_KINDS}")
        if not self._free:
            raise OutOfFrames(
                f"out of physical frames: all {self.nframes - 1} frames are in use "
                "(FreeBSD: KERN_RESOURCE_SHORTAGE)"
            )
        f = self._free.pop()
        w = f * WORDS_PER_FRAME
        self.frames[w : w + WORDS_PER_FRAME] = 0
        self._kind[f] = code
        if owner is not None:
            self._owner[f] = owner
        return f << FRAME_SHIFT

    def free_frame(self, pa: int) -> None:
        """Return the frame at ``pa`` to the free list and zero it. ValueError (nothing changed)
        for an unaligned or out-of-range address, frame 0, or a frame that is already free."""
        f = self._frame_number(pa, aligned=True)
        if f == 0:
            raise ValueError("frame 0 is reserved and never allocated")
        if self._kind[f] == 0:
            raise ValueError(f"double free: frame {pa:#x} is not allocated")
        w = f * WORDS_PER_FRAME
        self.frames[w : w + WORDS_PER_FRAME] = 0
        self._kind[f] = 0
        self._owner.pop(f, None)
        self._free.append(f)

    def frame_kind(self, pa: int) -> str | None:
        """What the frame containing ``pa`` holds, or None if it is free."""
        return _NAMES[self._kind[self._frame_number(pa)]]

    def frame_owner(self, pa: int) -> object | None:
        """The owner given to ``alloc_frame`` for the frame containing ``pa`` (e.g. a vm_page)."""
        return self._owner.get(self._frame_number(pa))

    def set_frame_owner(self, pa: int, owner: object | None) -> None:
        """Change the owner recorded for an allocated frame."""
        f = self._frame_number(pa)
        if self._kind[f] == 0:
            raise ValueError(f"frame {pa:#x} is not allocated")
        if owner is None:
            self._owner.pop(f, None)
        else:
            self._owner[f] = owner

    def is_allocated(self, pa: int) -> bool:
        return bool(self._kind[self._frame_number(pa)])

    def kind_counts(self) -> dict[str, int]:
        """Allocated frames per kind (kinds with none are left out)."""
        counts = np.bincount(self._kind, minlength=len(_NAMES))
        return {_NAMES[i]: int(c) for i, c in enumerate(counts) if i and c}  # type: ignore[misc]

    # ---- raw access --------------------------------------------------------------------
    def read_u64(self, pa: int) -> int:
        """The little-endian u64 at ``pa`` (8-byte aligned, inside memory, allocated or not)."""
        return int(self.frames[self._word(pa)])

    def write_u64(self, pa: int, value: int) -> None:
        """Store a u64 at ``pa`` (8-byte aligned, inside memory, allocated or not)."""
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError("value must be an int")
        if not 0 <= int(value) < 1 << 64:
            raise ValueError(f"value {int(value):#x} does not fit in 64 bits")
        self.frames[self._word(pa)] = np.uint64(int(value))

    def to_bytes(self) -> bytes:
        """The raw little-endian image; physical address 0 at offset 0."""
        return self.frames.astype("<u8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, maxphyaddr: int = 52) -> PhysicalMemory:
        """Load an image made by ``to_bytes`` (or any emulator). Frames holding a nonzero byte
        are marked allocated with kind "raw" so the allocator will not hand them out."""
        pm = cls(len(data), maxphyaddr)
        pm.frames[:] = np.frombuffer(data, dtype="<u8")
        used = pm.frames.reshape(pm.nframes, WORDS_PER_FRAME).any(axis=1)
        used[0] = False
        pm._kind[used] = _RAW
        pm._free = [f for f in range(pm.nframes - 1, 0, -1) if not used[f]]
        return pm

    # ---- helpers -----------------------------------------------------------------------
    def _frame_number(self, pa: int, aligned: bool = False) -> int:
        if not isinstance(pa, (int, np.integer)) or isinstance(pa, bool):
            raise TypeError("physical address must be an int")
        pa = int(pa)
        if not 0 <= pa < self.size:
            raise ValueError(f"physical address {pa:#x} is outside memory (size {self.size:#x})")
        if aligned and pa & (FRAME_SIZE - 1):
            raise ValueError(f"physical address {pa:#x} is not 4096-byte aligned")
        return pa >> FRAME_SHIFT

    def _word(self, pa: int) -> int:
        if not isinstance(pa, (int, np.integer)) or isinstance(pa, bool):
            raise TypeError("physical address must be an int")
        pa = int(pa)
        if pa & 7:
            raise ValueError(f"physical address {pa:#x} is not 8-byte aligned")
        if not 0 <= pa < self.size:
            raise ValueError(f"physical address {pa:#x} is outside memory (size {self.size:#x})")
        return pa >> 3

    def __repr__(self) -> str:
        return (
            f"PhysicalMemory({self.size:#x} bytes, {self.nframes} frames, {self.nfree} free, "
            f"MAXPHYADDR={self.maxphyaddr})"
        )

"""The system-call view: mmap(2), munmap(2), mprotect(2), minherit(2), msync(2), madvise(2),
mlock(2), munlock(2), fork(2) on a `Vmspace`, with FreeBSD's argument checks and errno values.

Sources (sys/vm/vm_mmap.c, FreeBSD 14): kern_mmap, vm_mmap_object, vm_mmap_vnode (vn_mmap in
sys/kern/vfs_vnops.c for the file max-protection rules), vm_mmap_to_errno, kern_munmap,
kern_mprotect, kern_minherit, kern_msync, kern_madvise, kern_mlock, kern_munlock;
sys/sys/mman.h for the constants; sys/sys/errno.h for errno values.

Each call takes the vmspace first and then C's arguments in C's order; ``mmap`` returns
``(errno, addr)``, ``fork`` returns ``(errno, child)``, the others return an errno (0 = success).
The process issuing the call is the vmspace's own (there is no separate "current process").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import (
    KERN,
    MAP,
    MAP_32BIT_MAX_ADDR,
    PAGE_MASK,
    PAGE_SHIFT,
    VM_INHERIT,
    VM_MAP_FLAGS,
    VM_MAP_PROTECT,
    VM_PROT,
    VMFS,
    VMFS_ALIGNED_SPACE,
    round_page,
    trunc_page,
)

if TYPE_CHECKING:
    from .vmspace import Vmspace

__all__ = [
    "EACCES",
    "EAGAIN",
    "EBADF",
    "EBUSY",
    "EINVAL",
    "EIO",
    "ENODEV",
    "ENOMEM",
    "ENOTSUP",
    "EPERM",
    "INHERIT_COPY",
    "INHERIT_NONE",
    "INHERIT_SHARE",
    "INHERIT_ZERO",
    "MADV_AUTOSYNC",
    "MADV_CORE",
    "MADV_DONTNEED",
    "MADV_FREE",
    "MADV_NOCORE",
    "MADV_NORMAL",
    "MADV_NOSYNC",
    "MADV_PROTECT",
    "MADV_RANDOM",
    "MADV_SEQUENTIAL",
    "MADV_WILLNEED",
    "MAP_32BIT",
    "MAP_ALIGNED",
    "MAP_ALIGNED_SUPER",
    "MAP_ALIGNMENT_MASK",
    "MAP_ALIGNMENT_SHIFT",
    "MAP_ANON",
    "MAP_ANONYMOUS",
    "MAP_EXCL",
    "MAP_FAILED",
    "MAP_FIXED",
    "MAP_GUARD",
    "MAP_HASSEMAPHORE",
    "MAP_NOCORE",
    "MAP_NOSYNC",
    "MAP_PREFAULT_READ",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "MAP_STACK",
    "MS_ASYNC",
    "MS_INVALIDATE",
    "MS_SYNC",
    "O_RDONLY",
    "O_RDWR",
    "O_WRONLY",
    "PROT_EXEC",
    "PROT_MAX",
    "PROT_MAX_EXTRACT",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "close",
    "fork",
    "madvise",
    "minherit",
    "mlock",
    "mmap",
    "mprotect",
    "msync",
    "munlock",
    "munmap",
    "open_file",
    "vm_mmap_to_errno",
]

# ---- errno (sys/sys/errno.h) --------------------------------------------------------------
EPERM = 1
EIO = 5
EBADF = 9
ENOMEM = 12
EACCES = 13
EBUSY = 16
ENODEV = 19
EINVAL = 22
EAGAIN = 35
ENOTSUP = 45

# ---- mman.h -------------------------------------------------------------------------------
PROT_NONE = 0x00
PROT_READ = 0x01
PROT_WRITE = 0x02
PROT_EXEC = 0x04
_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


def PROT_MAX(prot: int) -> int:  # noqa: N802 - mman.h macro
    """PROT_MAX(prot): the maximum protection, passed in bits 16..18 of mmap's prot."""
    return prot << 16


def PROT_MAX_EXTRACT(prot: int) -> int:  # noqa: N802 - mman.h macro
    return (prot >> 16) & _PROT_ALL


MAP_SHARED = 0x0001
MAP_PRIVATE = 0x0002
MAP_FIXED = 0x0010
MAP_RESERVED0020 = 0x0020
MAP_RESERVED0040 = 0x0040
MAP_RESERVED0080 = 0x0080
MAP_RESERVED0100 = 0x0100
MAP_HASSEMAPHORE = 0x0200
MAP_STACK = 0x0400
MAP_NOSYNC = 0x0800
MAP_ANON = 0x1000
MAP_ANONYMOUS = MAP_ANON
MAP_GUARD = 0x2000
MAP_EXCL = 0x4000
MAP_NOCORE = 0x00020000
MAP_PREFAULT_READ = 0x00040000
MAP_32BIT = 0x00080000
MAP_ALIGNMENT_SHIFT = 24
MAP_ALIGNMENT_MASK = 0xFF << MAP_ALIGNMENT_SHIFT
MAP_FAILED = -1


def MAP_ALIGNED(n: int) -> int:  # noqa: N802 - mman.h macro
    """MAP_ALIGNED(n): align the mapping to 2**n bytes."""
    return n << MAP_ALIGNMENT_SHIFT


MAP_ALIGNED_SUPER = MAP_ALIGNED(1)

MS_SYNC = 0x0000
MS_ASYNC = 0x0001
MS_INVALIDATE = 0x0002

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 5
MADV_NOSYNC = 6
MADV_AUTOSYNC = 7
MADV_NOCORE = 8
MADV_CORE = 9
MADV_PROTECT = 10

INHERIT_SHARE = int(VM_INHERIT.SHARE)
INHERIT_COPY = int(VM_INHERIT.COPY)
INHERIT_NONE = int(VM_INHERIT.NONE)
INHERIT_ZERO = int(VM_INHERIT.ZERO)

# open(2) access modes (sys/fcntl.h)
O_RDONLY = 0x0000
O_WRONLY = 0x0001
O_RDWR = 0x0002

_MMAP_KNOWN_FLAGS = (
    MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_HASSEMAPHORE | MAP_STACK | MAP_NOSYNC | MAP_ANON
    | MAP_EXCL | MAP_NOCORE | MAP_PREFAULT_READ | MAP_GUARD | MAP_32BIT | MAP_ALIGNMENT_MASK
)
_M64 = (1 << 64) - 1


def vm_mmap_to_errno(rv: int) -> int:
    """vm_mmap_to_errno (vm_mmap.c): KERN_* -> errno for mmap and munmap."""
    if rv == KERN.SUCCESS:
        return 0
    if rv in (KERN.INVALID_ADDRESS, KERN.NO_SPACE):
        return ENOMEM
    if rv == KERN.PROTECTION_FAILURE:
        return EACCES
    return EINVAL


class _OpenFile:
    """struct file for a vnode: the simulated file and the open(2) access mode."""

    __slots__ = ("file", "flags")

    def __init__(self, file: Any, flags: int) -> None:
        self.file = file
        self.flags = flags

    @property
    def readable(self) -> bool:
        return (self.flags & 3) in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return (self.flags & 3) in (O_WRONLY, O_RDWR)


def open_file(
    vm: Vmspace, name: str, size_or_bytes: int | bytes | None = None, flags: int = O_RDWR
) -> int:
    """open(2) on the machine's simulated disk: a file descriptor for ``name``.

    The file is created with ``size_or_bytes`` (a size in bytes, whose page i then holds
    ``"name[i]"``, or the bytes themselves, one 4 KiB chunk per page) unless it exists. Its
    VM object (the vnode's ``v_object``, OBJT_VNODE) is created now, as VOP_OPEN does with
    vnode_create_vobject, and lives with the file.
    """
    from .vm_object import OBJT, vm_object_allocate

    f = vm.machine.file(name, size_or_bytes)
    if f.object is None:
        obj = vm_object_allocate(OBJT.VNODE, f.npages)
        obj.handle = f
        obj.machine = vm.machine
        obj.ref_count = 0  # the vnode holds the object without a reference (FreeBSD 14)
        f.object = obj
    fd = 3
    while fd in vm.fd_table:
        fd += 1
    vm.fd_table[fd] = _OpenFile(f, flags)
    return fd


def close(vm: Vmspace, fd: int) -> int:
    """close(2): mappings made from the descriptor stay."""
    if vm.fd_table.pop(fd, None) is None:
        return EBADF
    return 0


def _rlimit(vm: Vmspace, which: int, hard: bool = False) -> int:
    from .vmspace import getrlimit

    return getrlimit(vm, which, hard=hard)


def mmap(
    vm: Vmspace, addr: int, length: int, prot: int, flags: int, fd: int = -1, pos: int = 0
) -> tuple[int, int]:
    """mmap(2) → kern_mmap + vm_mmap_object (vm_mmap.c). Returns (errno, address)."""
    from .vm_map import vm_map_max, vm_map_min
    from .vmspace import RLIMIT_DATA

    if prot & ~(_PROT_ALL | PROT_MAX(_PROT_ALL)):
        return EINVAL, MAP_FAILED
    max_prot = PROT_MAX_EXTRACT(prot)
    prot &= _PROT_ALL
    if max_prot != 0 and (max_prot & prot) != prot:
        return ENOTSUP, MAP_FAILED
    if max_prot == 0:
        max_prot = _PROT_ALL  # kern_mmap_maxprot without imply_prot_max
    flags &= ~(MAP_RESERVED0020 | MAP_RESERVED0040)  # old flags that did nothing
    if length == 0 or (flags & MAP_ANON and (fd != -1 or pos != 0)):
        return EINVAL, MAP_FAILED
    if flags & MAP_STACK:
        if fd != -1 or (prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE):
            return EINVAL, MAP_FAILED
        flags |= MAP_ANON
        pos = 0
    if flags & ~_MMAP_KNOWN_FLAGS:
        return EINVAL, MAP_FAILED
    if flags & (MAP_EXCL | MAP_FIXED) == MAP_EXCL:
        return EINVAL, MAP_FAILED
    if flags & (MAP_SHARED | MAP_PRIVATE) == (MAP_SHARED | MAP_PRIVATE):
        return EINVAL, MAP_FAILED
    if flags & MAP_GUARD and (
        prot != PROT_NONE
        or fd != -1
        or pos != 0
        or flags & ~(MAP_FIXED | MAP_GUARD | MAP_EXCL | MAP_32BIT | MAP_ALIGNMENT_MASK)
    ):
        return EINVAL, MAP_FAILED
    pageoff = pos & PAGE_MASK
    pos -= pageoff
    size = round_page(length + pageoff)
    if length > size or size > _M64:
        return ENOMEM, MAP_FAILED
    align = flags & MAP_ALIGNMENT_MASK
    if align not in (0, MAP_ALIGNED_SUPER) and not (
        PAGE_SHIFT <= align >> MAP_ALIGNMENT_SHIFT < 64
    ):
        return EINVAL, MAP_FAILED
    map = vm.vm_map
    max_addr = 0
    if flags & MAP_FIXED:
        addr -= pageoff
        if addr & PAGE_MASK:
            return EINVAL, MAP_FAILED
        if not (vm_map_min(map) <= addr <= addr + size <= vm_map_max(map)):
            return EINVAL, MAP_FAILED
        if flags & MAP_32BIT:
            max_addr = MAP_32BIT_MAX_ADDR
            if addr + size > MAP_32BIT_MAX_ADDR:
                return EINVAL, MAP_FAILED
    elif flags & MAP_32BIT:
        max_addr = MAP_32BIT_MAX_ADDR
        if addr + size > MAP_32BIT_MAX_ADDR:
            addr = 0
    else:
        heap_end = round_page(vm.vm_daddr + _rlimit(vm, RLIMIT_DATA, hard=True))
        if addr == 0 or round_page(vm.vm_taddr) <= addr < heap_end:
            addr = heap_end

    obj = None
    if flags & MAP_GUARD:
        prot, max_prot = PROT_NONE, PROT_NONE  # kern_mmap passes max_prot; vm_map_insert wants NONE
    elif not flags & MAP_ANON:
        of = vm.fd_table.get(fd)
        if of is None:
            return EBADF, MAP_FAILED
        if flags & (MAP_SHARED | MAP_PRIVATE) == 0:
            return EINVAL, MAP_FAILED  # P_OSREL_MAP_FSTRICT
        # vn_mmap (vfs_vnops.c): what the descriptor allows bounds max_prot.
        file_max = PROT_EXEC
        if of.readable:
            file_max |= PROT_READ
        elif prot & PROT_READ:
            return EACCES, MAP_FAILED
        if flags & MAP_SHARED:
            if of.writable:
                file_max |= PROT_WRITE
            elif prot & PROT_WRITE:
                return EACCES, MAP_FAILED
        else:
            file_max |= PROT_WRITE
        max_prot &= file_max
        obj = of.file.object
    errno, addr = _vm_mmap_object(vm, addr, max_addr, size, prot, max_prot, flags, obj, pos)
    if errno:
        return errno, MAP_FAILED
    return 0, addr + pageoff


def _vm_mmap_object(
    vm: Vmspace,
    addr: int,
    max_addr: int,
    size: int,
    prot: int,
    maxprot: int,
    flags: int,
    obj: Any,
    foff: int,
) -> tuple[int, int]:
    """vm_mmap_object (vm_mmap.c): limits, the cow bits, then find or fixed placement."""
    from .lock import vm_map_lock, vm_map_unlock
    from .pmap import pmap_wired_count
    from .vm_map_find import vm_map_find_min, vm_map_fixed
    from .vm_object import vm_object_deallocate, vm_object_reference
    from .vm_sync import (
        VM_MAP_WIRE_HOLESOK,
        VM_MAP_WIRE_NOHOLES,
        VM_MAP_WIRE_USER,
        vm_map_wire_locked,
    )
    from .vmspace import RLIMIT_DATA, RLIMIT_MEMLOCK, RLIMIT_VMEM

    map = vm.vm_map
    if map.size + size > _rlimit(vm, RLIMIT_VMEM):
        return ENOMEM, 0
    if map.flags & VM_MAP_FLAGS.WIREFUTURE and (
        (pmap_wired_count(map.pmap) << PAGE_SHIFT) + size > _rlimit(vm, RLIMIT_MEMLOCK)
    ):
        return ENOMEM, 0
    if foff & PAGE_MASK:
        return EINVAL, 0
    fitit = not flags & MAP_FIXED
    if fitit:
        addr = round_page(addr) & _M64  # vm_offset_t arithmetic: wraps to 0 at the top
    elif addr != trunc_page(addr):
        return EINVAL, 0
    if flags & MAP_ANON:
        if obj is not None or foff != 0:
            return EINVAL, 0
        docow = MAP.NONE
    elif flags & MAP_PREFAULT_READ:
        docow = MAP.PREFAULT
    else:
        docow = MAP.PREFAULT_PARTIAL
    if not flags & (MAP_ANON | MAP_SHARED):
        docow |= MAP.COPY_ON_WRITE
    if flags & MAP_NOSYNC:
        docow |= MAP.DISABLE_SYNCER
    if flags & MAP_NOCORE:
        docow |= MAP.DISABLE_COREDUMP
    if flags & MAP_SHARED:
        docow |= MAP.INHERIT_SHARE
    if flags & MAP_STACK:
        if obj is not None:
            return EINVAL, 0
        docow |= MAP.STACK_GROWS_DOWN
    if flags & MAP_EXCL:
        docow |= MAP.CHECK_EXCL
    if flags & MAP_GUARD:
        docow |= MAP.CREATE_GUARD

    # vm_mmap_vnode took a reference on the object; vm_map keeps it on success.
    vm_object_reference(obj)
    if fitit:
        align = flags & MAP_ALIGNMENT_MASK
        if align == MAP_ALIGNED_SUPER:
            findspace = int(VMFS.SUPER_SPACE)
        elif align:
            findspace = VMFS_ALIGNED_SPACE(align >> MAP_ALIGNMENT_SHIFT)
        else:
            findspace = int(VMFS.OPTIMAL_SPACE)
        # The calling process's own map: vm_map_find_min with the end of the heap window.
        default_addr = round_page(vm.vm_daddr + _rlimit(vm, RLIMIT_DATA, hard=True))
        rv, addr = vm_map_find_min(
            map, obj, foff, addr, size, default_addr, max_addr, findspace, prot, maxprot,
            int(docow),
        )
    else:
        rv = vm_map_fixed(map, obj, foff, addr, size, prot, maxprot, int(docow))
    if rv != KERN.SUCCESS:
        if obj is not None:
            vm_object_deallocate(obj)
        return vm_mmap_to_errno(rv), 0
    if map.flags & VM_MAP_FLAGS.WIREFUTURE:
        vm_map_lock(map)
        if map.flags & VM_MAP_FLAGS.WIREFUTURE:
            vm_map_wire_locked(
                map, addr, addr + size,
                VM_MAP_WIRE_USER | (VM_MAP_WIRE_HOLESOK if flags & MAP_STACK
                                    else VM_MAP_WIRE_NOHOLES),
            )
        vm_map_unlock(map)
    return 0, addr


def munmap(vm: Vmspace, addr: int, length: int) -> int:
    """munmap(2) → kern_munmap: EINVAL for length 0 or a range outside the map; then
    vm_map_remove_locked and vm_mmap_to_errno."""
    from .lock import vm_map_lock, vm_map_unlock
    from .vm_map import vm_map_delete, vm_map_max, vm_map_min

    if length == 0:
        return EINVAL
    pageoff = addr & PAGE_MASK
    addr -= pageoff
    size = round_page(length + pageoff)
    end = addr + size
    map = vm.vm_map
    if not (vm_map_min(map) <= addr <= end <= vm_map_max(map)):
        return EINVAL
    vm_map_lock(map)
    try:
        rv = vm_map_delete(map, addr, end)
    finally:
        vm_map_unlock(map)
    return vm_mmap_to_errno(rv)


def mprotect(vm: Vmspace, addr: int, length: int, prot: int) -> int:
    """mprotect(2) → kern_mprotect: PROT_MAX sets the maximum too; KERN_PROTECTION_FAILURE →
    EACCES, KERN_RESOURCE_SHORTAGE → ENOMEM, KERN_OUT_OF_BOUNDS → ENOTSUP, else EINVAL."""
    from .vm_map_protect import vm_map_protect

    if prot & ~(_PROT_ALL | PROT_MAX(_PROT_ALL)):
        return EINVAL
    max_prot = PROT_MAX_EXTRACT(prot)
    prot &= _PROT_ALL
    pageoff = addr & PAGE_MASK
    addr -= pageoff
    size = round_page(length + pageoff)
    if addr + size > _M64:
        return EINVAL
    flags = VM_MAP_PROTECT.SET_PROT
    if max_prot != 0:
        if (max_prot & prot) != prot:
            return ENOTSUP
        flags |= VM_MAP_PROTECT.SET_MAXPROT
    rv = vm_map_protect(vm.vm_map, addr, addr + size, prot, max_prot, int(flags))
    return {
        KERN.SUCCESS: 0,
        KERN.PROTECTION_FAILURE: EACCES,
        KERN.RESOURCE_SHORTAGE: ENOMEM,
        KERN.OUT_OF_BOUNDS: ENOTSUP,
    }.get(rv, EINVAL)


def minherit(vm: Vmspace, addr: int, length: int, inherit: int) -> int:
    """minherit(2) → kern_minherit: the raw value goes to vm_map_inherit."""
    from .vm_map_protect import vm_map_inherit

    pageoff = addr & PAGE_MASK
    addr -= pageoff
    size = round_page(length + pageoff)
    if addr + size > _M64:
        return EINVAL
    rv = vm_map_inherit(vm.vm_map, addr, addr + size, inherit)
    if rv == KERN.SUCCESS:
        return 0
    return EACCES if rv == KERN.PROTECTION_FAILURE else EINVAL


def msync(vm: Vmspace, addr: int, length: int, flags: int) -> int:
    """msync(2) → kern_msync → vm_map_sync (= `vm_map_clean`). KERN_INVALID_ADDRESS → ENOMEM,
    KERN_INVALID_ARGUMENT → EBUSY, KERN_FAILURE → EIO. Length 0 acts on the whole entry."""
    from .vm_sync import vm_map_sync

    pageoff = addr & PAGE_MASK
    addr -= pageoff
    size = round_page(length + pageoff)
    if addr + size > _M64:
        return EINVAL
    if flags & ~(MS_ASYNC | MS_INVALIDATE):
        return EINVAL
    if flags & (MS_ASYNC | MS_INVALIDATE) == (MS_ASYNC | MS_INVALIDATE):
        return EINVAL
    rv = vm_map_sync(vm.vm_map, addr, addr + size, not flags & MS_ASYNC,
                     bool(flags & MS_INVALIDATE))
    return {
        KERN.SUCCESS: 0,
        KERN.INVALID_ADDRESS: ENOMEM,
        KERN.INVALID_ARGUMENT: EBUSY,
        KERN.FAILURE: EIO,
    }.get(rv, EINVAL)


def madvise(vm: Vmspace, addr: int, length: int, behav: int) -> int:
    """madvise(2) → kern_madvise: MADV_PROTECT goes to procctl (accepted, no VM effect);
    a range outside the map → EINVAL; vm_map_madvise checks ``behav`` (EINVAL)."""
    from .vm_map import vm_map_max, vm_map_min
    from .vm_sync import vm_map_madvise

    if behav == MADV_PROTECT:
        return 0
    map = vm.vm_map
    if not (vm_map_min(map) <= addr <= addr + length <= vm_map_max(map)):
        return EINVAL
    return vm_map_madvise(map, trunc_page(addr), round_page(addr + length), behav)


def mlock(vm: Vmspace, addr: int, length: int) -> int:
    """mlock(2) → kern_mlock: RLIMIT_MEMLOCK counts the pmap's wired pages; vm_map_wire(USER |
    NOHOLES): KERN_INVALID_ARGUMENT → EINVAL, other failures → ENOMEM."""
    from .pmap import pmap_wired_count
    from .vm_sync import VM_MAP_WIRE_NOHOLES, VM_MAP_WIRE_USER, vm_map_wire
    from .vmspace import RLIMIT_MEMLOCK

    last = addr + length
    start = trunc_page(addr)
    end = round_page(last)
    if last > _M64 or end > _M64 or last < addr or end < addr:
        return EINVAL
    npages = (end - start) >> PAGE_SHIFT
    nsize = (npages + pmap_wired_count(vm.vm_map.pmap)) << PAGE_SHIFT
    if nsize > _rlimit(vm, RLIMIT_MEMLOCK):
        return ENOMEM
    rv = vm_map_wire(vm.vm_map, start, end, VM_MAP_WIRE_USER | VM_MAP_WIRE_NOHOLES)
    if rv == KERN.SUCCESS:
        return 0
    return EINVAL if rv == KERN.INVALID_ARGUMENT else ENOMEM


def munlock(vm: Vmspace, addr: int, length: int) -> int:
    """munlock(2) → kern_munlock: vm_map_unwire(USER | NOHOLES); any failure → ENOMEM."""
    from .vm_sync import VM_MAP_WIRE_NOHOLES, VM_MAP_WIRE_USER, vm_map_unwire

    last = addr + length
    start = trunc_page(addr)
    end = round_page(last)
    if last > _M64 or end > _M64 or last < addr or end < addr:
        return EINVAL
    rv = vm_map_unwire(vm.vm_map, start, end, VM_MAP_WIRE_USER | VM_MAP_WIRE_NOHOLES)
    return 0 if rv == KERN.SUCCESS else ENOMEM


def fork(vm: Vmspace) -> tuple[int, Vmspace | None]:
    """fork(2) → fork1 → vmspace_fork (RFMEM clear). ENOMEM if the copy cannot be made."""
    from .vmspace import vmspace_fork

    try:
        child = vmspace_fork(vm)
    except MemoryError:
        return ENOMEM, None
    return 0, child


_ = VM_PROT  # re-exported names used by callers

"""FreeBSD 14 VM constants with their numeric values.

Sources: sys/vm/vm.h (VM_PROT, VM_INHERIT, obj_type), sys/vm/vm_param.h (KERN_*),
sys/vm/vm_map.h (MAP_ENTRY_*, the cow argument MAP_*, VMFS_*, VM_MAP_PROTECT_*, map flags),
sys/amd64/include/vmparam.h (address-space limits). See shared/reference/freebsd-vm.md section 1.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "DFLDSIZ",
    "DFLSSIZ",
    "KERN",
    "MAP",
    "MAP_32BIT_MAX_ADDR",
    "MAP_ALL_COW_BITS",
    "MAP_ENTRY",
    "MAP_ENTRY_NOMERGE_MASK",
    "MAP_ENTRY_SPLIT_BOUNDARY_SHIFT",
    "MAP_SPLIT_BOUNDARY_SHIFT",
    "MAP_STACK_GROWS",
    "MAXDSIZ",
    "MAXSSIZ",
    "MAXTSIZ",
    "MAX_INIT_PT",
    "NBPDR",
    "OBJT",
    "PAGE_MASK",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "PDRSHIFT",
    "PFBAK",
    "PFFOR",
    "SGROWSIZ",
    "SHAREDPAGE_LA48",
    "SHAREDPAGE_LA57",
    "USRSTACK",
    "USRSTACK_LA48",
    "USRSTACK_LA57",
    "VMFS",
    "VMFS_ALIGNED_SPACE",
    "VM_FAULT",
    "VM_INHERIT",
    "VM_MAP_FLAGS",
    "VM_MAP_PROTECT",
    "VM_MAXUSER_ADDRESS",
    "VM_MAXUSER_ADDRESS_LA48",
    "VM_MAXUSER_ADDRESS_LA57",
    "VM_MIN_ADDRESS",
    "VM_PROT",
    "atop",
    "ptoa",
    "round_page",
    "trunc_page",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
PDRSHIFT = 21  # amd64 2 MiB superpage
NBPDR = 1 << PDRSHIFT


def round_page(x: int) -> int:
    """round_page(9): round up to a page boundary."""
    return (x + PAGE_MASK) & ~PAGE_MASK


def trunc_page(x: int) -> int:
    """trunc_page(9): round down to a page boundary."""
    return x & ~PAGE_MASK


def atop(x: int) -> int:
    """Bytes to pages (truncating)."""
    return x >> PAGE_SHIFT


def ptoa(x: int) -> int:
    """Pages to bytes."""
    return x << PAGE_SHIFT


class KERN(IntEnum):
    """kern_return_t values (sys/vm/vm_param.h; OUT_OF_BOUNDS and RESTART from vm_map.c's users)."""

    SUCCESS = 0
    INVALID_ADDRESS = 1
    PROTECTION_FAILURE = 2
    NO_SPACE = 3
    INVALID_ARGUMENT = 4
    FAILURE = 5
    RESOURCE_SHORTAGE = 6
    NOT_RECEIVER = 7
    NO_ACCESS = 8
    OUT_OF_BOUNDS = 9
    RESTART = 10


class VM_PROT(IntFlag):
    """vm_prot_t (sys/vm/vm.h). FAULT_LOOKUP and QUICK_NOFAULT share PRIV_FLAG's bit."""

    NONE = 0x00
    READ = 0x01
    WRITE = 0x02
    EXECUTE = 0x04
    COPY = 0x08
    PRIV_FLAG = 0x10
    FAULT_LOOKUP = 0x10
    QUICK_NOFAULT = 0x10
    RW = 0x03
    ALL = 0x07
    DEFAULT = 0x07


class VM_INHERIT(IntEnum):
    """vm_inherit_t (sys/vm/vm.h); minherit(2) passes the same numbers through."""

    SHARE = 0
    COPY = 1
    NONE = 2
    ZERO = 3
    DEFAULT = 1


class MAP_ENTRY(IntFlag):
    """vm_map_entry eflags (sys/vm/vm_map.h, FreeBSD 14)."""

    NONE = 0
    NOSYNC = 0x0001
    IS_SUB_MAP = 0x0002
    COW = 0x0004
    NEEDS_COPY = 0x0008
    NOFAULT = 0x0010
    USER_WIRED = 0x0020
    BEHAV_NORMAL = 0x0000
    BEHAV_SEQUENTIAL = 0x0040
    BEHAV_RANDOM = 0x0080
    BEHAV_MASK = 0x00C0
    IN_TRANSITION = 0x0100
    NEEDS_WAKEUP = 0x0200
    NOCOREDUMP = 0x0400
    VN_EXEC = 0x0800
    GROWS_DOWN = 0x1000
    GROWS_UP = 0x2000
    WIRE_SKIPPED = 0x4000
    WRITECNT = 0x8000
    GUARD = 0x10000
    STACK_GAP_DN = 0x20000
    STACK_GAP_UP = 0x40000
    HEADER = 0x80000
    SPLIT_BOUNDARY_MASK = 0x300000


MAP_ENTRY_SPLIT_BOUNDARY_SHIFT = 20

#: Entries with any of these flags never merge (vm_map.c MAP_ENTRY_NOMERGE_MASK, FreeBSD 14).
MAP_ENTRY_NOMERGE_MASK = (
    MAP_ENTRY.GROWS_DOWN
    | MAP_ENTRY.GROWS_UP
    | MAP_ENTRY.IN_TRANSITION
    | MAP_ENTRY.IS_SUB_MAP
    | MAP_ENTRY.VN_EXEC
)


class MAP(IntFlag):
    """The ``cow`` argument of vm_map_insert / vm_map_find / vm_map_fixed (sys/vm/vm_map.h)."""

    NONE = 0
    INHERIT_SHARE = 0x1
    COPY_ON_WRITE = 0x2
    NOFAULT = 0x4
    PREFAULT = 0x8
    PREFAULT_PARTIAL = 0x10
    DISABLE_SYNCER = 0x20
    CHECK_EXCL = 0x40
    CREATE_GUARD = 0x80
    DISABLE_COREDUMP = 0x100
    PREFAULT_MADVISE = 0x200
    WRITECOUNT = 0x400
    REMAP = 0x800
    STACK_GROWS_DOWN = 0x1000
    STACK_GROWS_UP = 0x2000
    ACC_CHARGED = 0x4000
    ACC_NO_CHARGE = 0x8000
    CREATE_STACK_GAP_UP = 0x10000
    CREATE_STACK_GAP_DN = 0x20000
    VN_EXEC = 0x40000
    SPLIT_BOUNDARY_MASK = 0x180000
    NO_HINT = 0x200000


MAP_SPLIT_BOUNDARY_SHIFT = 19
MAP_STACK_GROWS = MAP.STACK_GROWS_DOWN | MAP.STACK_GROWS_UP
#: Every cow bit FreeBSD 14 defines; anything else is rejected as an unknown flag.
MAP_ALL_COW_BITS = 0x3FFFFF


class VMFS(IntEnum):
    """find_space argument of vm_map_find (sys/vm/vm_map.h). See VMFS_ALIGNED_SPACE."""

    NO_SPACE = 0
    ANY_SPACE = 1
    OPTIMAL_SPACE = 2
    SUPER_SPACE = 3


def VMFS_ALIGNED_SPACE(x: int) -> int:  # noqa: N802 - FreeBSD's macro name
    """VMFS_ALIGNED_SPACE(x): find space aligned to 2**x bytes (x << 8)."""
    return x << 8


class VM_MAP_PROTECT(IntFlag):
    """flags of vm_map_protect (sys/vm/vm_map.h)."""

    NONE = 0
    SET_PROT = 0x1
    SET_MAXPROT = 0x2
    GROWSDOWN = 0x4


class VM_MAP_FLAGS(IntFlag):
    """vm_map.flags (MAP_WIREFUTURE ... MAP_ASLR_STACK in sys/vm/vm_map.h)."""

    NONE = 0
    WIREFUTURE = 0x01
    BUSY_WAKEUP = 0x02
    IS_SUB_MAP = 0x04
    ASLR = 0x08
    ASLR_IGNSTART = 0x10
    REPLENISH = 0x20
    WXORX = 0x40
    ASLR_STACK = 0x80


class OBJT(IntEnum):
    """enum obj_type (sys/vm/vm.h, FreeBSD 14). There is no OBJT_DEFAULT: 14 removed it
    (anonymous memory is OBJT_SWAP with OBJ_ANON, made by vm_object_allocate_anon) and value 8
    is OBJT_FIRST_DYN, where dynamically registered pager types start."""

    INVALID = 0
    SWAP = 1
    VNODE = 2
    DEVICE = 3
    PHYS = 4
    DEAD = 5
    SG = 6
    MGTDEVICE = 7


class VM_FAULT(IntFlag):
    """fault_flags of vm_fault (sys/vm/vm_map.h)."""

    NORMAL = 0
    WIRE = 1
    DIRTY = 2
    NOFILL = 4


# --- amd64 (sys/amd64/include/vmparam.h) ---------------------------------------------------
VM_MIN_ADDRESS = 0
VM_MAXUSER_ADDRESS_LA48 = 256 << 39  # 0x0000_8000_0000_0000
VM_MAXUSER_ADDRESS_LA57 = 256 << 48  # 0x0100_0000_0000_0000
VM_MAXUSER_ADDRESS = VM_MAXUSER_ADDRESS_LA57
SHAREDPAGE_LA48 = VM_MAXUSER_ADDRESS_LA48 - PAGE_SIZE  # 0x7FFF_FFFF_F000
SHAREDPAGE_LA57 = VM_MAXUSER_ADDRESS_LA57 - PAGE_SIZE
USRSTACK_LA48 = SHAREDPAGE_LA48
USRSTACK_LA57 = SHAREDPAGE_LA57
USRSTACK = USRSTACK_LA48
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MAXTSIZ = 32 * GiB
DFLDSIZ = 32 * GiB
MAXDSIZ = 32 * GiB
DFLSSIZ = 8 * MiB
MAXSSIZ = 512 * MiB
SGROWSIZ = 128 * KiB
MAP_32BIT_MAX_ADDR = 1 << 31

# vm_fault.c
PFBAK = 4
PFFOR = 4
MAX_INIT_PT = 96

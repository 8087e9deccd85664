"""exec(2) in one call: a realistic FreeBSD/amd64 process layout to start lessons from.

Follows sys/kern/imgact_elf.c (__elfN(map_insert): file segments are mapped copy-on-write with
MAP_PREFAULT, read-only ones also MAP_DISABLE_COREDUMP, and MAP_VN_EXEC; the bss is anonymous)
and sys/kern/kern_exec.c (exec_new_vmspace: the map starts at sv_minuser raised to PAGE_SIZE, so
page 0 can never be mapped, unless security.bsd.map_at_zero is 1; the main stack reserves
maxssiz = 512 MiB below
USRSTACK with vm_map_stack — only sgrowsiz is mapped, the rest is the guard gap —, then
vm_maxsaddr = stack bottom, vm_stacktop = USRSTACK, vm_ssize = sgrowsiz pages;
exec_map_sharedpage: the shared page at SHAREDPAGE, r-x, MAP_INHERIT_SHARE). The result looks
like ``procstat -v`` of a small non-PIE program linked at 0x200000 by lld::

    0x200000 .. r--  (ELF headers, rodata)      COW vnode
             .. r-x  (text)                     COW vnode
             .. rw-  (data)                     COW vnode
             .. rw-  (bss)                      anonymous
    heap window [data end, vm_daddr + RLIMIT_DATA) left empty for brk/sbrk
    0x7fffdffff000 .. ---  stack guard gap
    0x7ffffffdf000 .. rw-  stack (128 KiB, grows down)
    0x7ffffffff000 .. r-x  shared page
"""

from __future__ import annotations

from typing import Any

from .constants import (
    KERN,
    MAP,
    MAXSSIZ,
    PAGE_SIZE,
    SHAREDPAGE_LA48,
    USRSTACK,
    VM_MAXUSER_ADDRESS_LA48,
    VM_MIN_ADDRESS,
    VM_PROT,
)
from .sysctl import register_sysctl, sysctl

__all__ = ["ELF_BASE", "exec_image", "exec_map_min", "shared_page_object"]

ELF_BASE = 0x200000

# sys/kern/kern_exec.c: SYSCTL_INT(_security_bsd, OID_AUTO, map_at_zero, CTLFLAG_RWTUN, ...)
register_sysctl(
    "security.bsd.map_at_zero",
    0,
    "Permit processes to map an object at virtual address 0.",
    choices=(0, 1),
)


def exec_map_min() -> int:
    """The lowest user address of a freshly exec'ed amd64 process (exec_new_vmspace):
    sv_minuser (VM_MIN_ADDRESS, 0) with security.bsd.map_at_zero=1, else raised to PAGE_SIZE so
    that a NULL pointer dereference always faults."""
    if sysctl("security.bsd.map_at_zero"):
        return VM_MIN_ADDRESS
    return max(VM_MIN_ADDRESS, PAGE_SIZE)


def shared_page_object(machine: Any) -> Any:
    """The machine's shared page object (OBJT_PHYS, one valid page; shared_page_obj)."""
    from .vm_object import OBJT, vm_object_allocate
    from .vm_page import vm_page_alloc, vm_page_valid

    obj = getattr(machine, "shared_page_obj", None)
    if obj is None:
        obj = vm_object_allocate(OBJT.PHYS, 1)
        obj.machine = machine
        m = vm_page_alloc(obj, 0)
        if m is None:
            raise MemoryError("no physical page for the shared page")
        m.value = "shared page (signal trampoline, vdso)"
        vm_page_valid(m)
        machine.shared_page_obj = obj
    return obj


def _check(rv: KERN, what: str) -> None:
    if rv != KERN.SUCCESS:
        raise RuntimeError(f"exec_image: mapping the {what} failed: {KERN(rv).name}")


def exec_image(
    machine: Any = None,
    *,
    name: str = "/bin/prog",
    rodata_pages: int = 2,
    text_pages: int = 8,
    data_pages: int = 2,
    bss_pages: int = 3,
    stack_prot: int = int(VM_PROT.READ | VM_PROT.WRITE),
) -> Any:
    """A new process that has just exec'ed ``name`` (a file created on the machine's disk if it
    does not exist, its pages holding ``"name[i]"``). Returns the Vmspace, with vm_taddr,
    vm_tsize, vm_daddr, vm_dsize, vm_maxsaddr, vm_stacktop and vm_ssize set as exec sets them.
    Its map covers [`exec_map_min`(), VM_MAXUSER_ADDRESS_LA48): page 0 is outside the map
    unless ``sysctl("security.bsd.map_at_zero", 1)``, so mmap(MAP_FIXED) at 0 is EINVAL.
    """
    from .vm_map_find import vm_map_fixed, vm_map_stack
    from .vm_object import vm_object_reference
    from .vmspace import vmspace_alloc

    vm = vmspace_alloc(exec_map_min(), VM_MAXUSER_ADDRESS_LA48, machine=machine)
    machine = vm.machine
    vm.name = name
    npages = rodata_pages + text_pages + data_pages
    f = machine.file(name, npages * PAGE_SIZE)
    if f.object is None:
        from .vm_object import OBJT, vm_object_allocate

        obj = vm_object_allocate(OBJT.VNODE, f.npages)
        obj.handle = f
        obj.machine = machine
        obj.ref_count = 0
        f.object = obj
    obj = f.object
    vm.p_textvp = f
    r, rx, rw = VM_PROT.READ, VM_PROT.READ | VM_PROT.EXECUTE, VM_PROT.READ | VM_PROT.WRITE
    segs = [
        ("rodata", 0, rodata_pages, r, MAP.DISABLE_COREDUMP),
        ("text", rodata_pages, text_pages, rx, MAP.DISABLE_COREDUMP),
        ("data", rodata_pages + text_pages, data_pages, rw, MAP.NONE),
    ]
    addr = ELF_BASE
    for what, first, n, prot, extra in segs:
        if n == 0:
            continue
        vm_object_reference(obj)
        cow = MAP.COPY_ON_WRITE | MAP.PREFAULT | MAP.CHECK_EXCL | MAP.VN_EXEC | extra
        _check(vm_map_fixed(vm.vm_map, obj, first * PAGE_SIZE, addr, n * PAGE_SIZE, int(prot),
                            int(VM_PROT.ALL), int(cow)), what)
        if what == "text" or (what == "rodata" and vm.vm_taddr == 0):
            vm.vm_taddr = vm.vm_taddr or addr
        if what == "data":
            vm.vm_daddr = addr
        addr += n * PAGE_SIZE
    vm.vm_tsize = rodata_pages + text_pages
    if data_pages == 0:
        vm.vm_daddr = addr
    if bss_pages:
        _check(vm_map_fixed(vm.vm_map, None, 0, addr, bss_pages * PAGE_SIZE, int(rw),
                            int(VM_PROT.ALL), int(MAP.CHECK_EXCL)), "bss")
    vm.vm_dsize = data_pages + bss_pages
    # exec_new_vmspace: the main stack.
    ssiz = MAXSSIZ
    stack_addr = USRSTACK - ssiz
    _check(vm_map_stack(vm.vm_map, stack_addr, ssiz, stack_prot, int(VM_PROT.ALL),
                        int(MAP.STACK_GROWS_DOWN)), "stack")
    vm.vm_maxsaddr = stack_addr
    vm.vm_stacktop = USRSTACK
    vm.vm_ssize = sysctl("kern.sgrowsiz") // PAGE_SIZE
    # exec_map_sharedpage
    sp = shared_page_object(machine)
    vm_object_reference(sp)
    _check(vm_map_fixed(vm.vm_map, sp, 0, SHAREDPAGE_LA48, PAGE_SIZE, int(rx), int(rx),
                        int(MAP.INHERIT_SHARE | MAP.ACC_NO_CHARGE)), "shared page")
    return vm

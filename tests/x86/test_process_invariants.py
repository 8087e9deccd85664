"""Process workloads on real amd64 page tables: every present PTE agrees with the vm_map and the
objects, read from the bytes in PhysicalMemory (not from the pmap's own bookkeeping).

Rules checked (shared/reference/x86-64-paging.md §7, freebsd-vm.md: vmspace_fork, vm_fault,
vm_fault_prefault, vm_map_protect; FreeBSD sys/amd64/amd64/pmap.c pmap_enter,
pmap_enter_quick_locked, pmap_protect, pmap_remove, pmap_allocpte, pmap_unwire_ptp):

- user-half intermediate entries are exactly ``child | 0x67`` (PA|U|RW|V|A|M) and point at a
  page-table page of the next level owned by this pmap; no page-table page is empty (emptied
  ones are freed); the kernel half is exactly what pmap_pinit_pml4 wrote;
- a leaf lies inside a vm_map entry, has U, maps the page the entry's shadow chain gives for
  that address (a valid data frame), is never wider than the entry's protection (RW only with
  WRITE, NX without EXECUTE), never RW on a NEEDS_COPY entry or for a page of a backing
  object, M only with RW, W only in a wired entry, MANAGED exactly for managed pages, and the
  page's pv list has it;
- a prefault (pmap_enter_quick) PTE is PA|V|U|MANAGED|NX? (no RW/A/M/W) and only fills an empty
  slot;
- the TLB never lets an access through that a fresh walk would refuse (the pmap invalidated
  whatever it narrowed or removed);
- the pmap's resident/wired counts match the tables; frame kind counts match the live tables
  and pages; after every process exits (and the files' cached pages are dropped) the frame
  counts are exactly where they started.
"""

from __future__ import annotations

import bisect

import hypothesis.strategies as st
import numpy as np
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vmlab.core import (
    INHERIT_COPY,
    INHERIT_NONE,
    INHERIT_SHARE,
    INHERIT_ZERO,
    KERN,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_WILLNEED,
    MAP_ANON,
    MAP_ENTRY,
    MAP_FIXED,
    MAP_PREFAULT_READ,
    MAP_PRIVATE,
    MAP_SHARED,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    OBJ_UNMANAGED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    VM_PROT,
    Machine,
    VmAccessError,
    exec_image,
    fork,
    madvise,
    minherit,
    mlock,
    mmap,
    mprotect,
    msync,
    munlock,
    munmap,
    open_file,
    shared_page_object,
    vm_fault,
    vm_map_lock_read,
    vm_map_unlock_read,
    vm_read,
    vm_write,
    vmspace_alloc,
    vmspace_free,
    vnode_destroy_vobject,
)
from vmlab.core.x86.pmap import Amd64Pmap, amd64_kernel_tables

P = 4096
# SDM / pte.h bit values, written out here so the test does not lean on vmlab's constants.
V, RW, U, A, M = 0x1, 0x2, 0x4, 0x20, 0x40
PS, G, MANAGED, W = 0x80, 0x100, 0x400, 0x800
NX = 1 << 63
FRAME = 0x000F_FFFF_FFFF_F000
PTP_BITS = 0x67
SHIFTS = (39, 30, 21, 12)
KINDS = ("PML4", "PDPT", "PD", "PT")
VM_MAXUSER = 1 << 47

# Two windows of pages: one straddles 1 GiB (two PDs under one PDPT), the other 512 GiB (two
# PML4 slots), so tables at every level are created and freed.
WINDOWS = (0x4000_0000 - 12 * P, 0x80_0000_0000 - 12 * P)
NW = 24
FILE_PAGES = (16, 6)


def _addr(w: int, i: int) -> int:
    return WINDOWS[w % len(WINDOWS)] + i * P


# ---- reading the real tables ------------------------------------------------------------------


def _words(pm, pa: int) -> np.ndarray:
    return pm.frames[pa >> 3 : (pa >> 3) + 512]


def raw_pte(pm, cr3: int, va: int) -> int:
    """The 4 KiB PTE for ``va`` read from memory (0 when a table on the way is missing)."""
    table = cr3
    for depth, sh in enumerate(SHIFTS):
        raw = pm.read_u64(table + 8 * ((va >> sh) & 511))
        if depth == 3 or not raw & V:
            return raw if depth == 3 else 0
        table = raw & FRAME
    raise AssertionError("unreachable")


def walk_user_tables(vm) -> tuple[dict[int, int], dict[int, int]]:
    """Every nonzero user-half entry, checked on the way: returns ({va: leaf PTE},
    {page-table page PA: level 1..3}). Asserts the intermediate-entry rules."""
    pmap = vm.vm_pmap
    pm = pmap.physmem
    cr3 = pmap.pm_cr3
    leaves: dict[int, int] = {}
    ptps: dict[int, int] = {}

    def rec(table: int, depth: int, base: int) -> int:
        ents = _words(pm, table)
        hi = 256 if depth == 0 else 512
        nz = np.flatnonzero(ents[:hi])
        for i in nz:
            raw = int(ents[i])
            va = base | (int(i) << SHIFTS[depth])
            assert raw & V, f"nonzero but not present entry {raw:#x} at depth {depth}"
            if depth == 3:
                leaves[va] = raw
                continue
            child = raw & FRAME
            assert raw == child | PTP_BITS, (
                f"{KINDS[depth]}E for {va:#x} is {raw:#x}, not PA|0x67 (pmap_allocpte)")
            assert pm.frame_kind(child) == KINDS[depth + 1], (
                f"{KINDS[depth]}E for {va:#x} points at a {pm.frame_kind(child)} frame")
            assert pm.frame_owner(child) is pmap
            assert child not in ptps and child != cr3, "a page-table page is linked twice"
            ptps[child] = depth + 1
            n = rec(child, depth + 1, va)
            assert n > 0, f"empty {KINDS[depth + 1]} page {child:#x} was not freed"
        return len(nz)

    assert pm.frame_kind(cr3) == "PML4" and pm.frame_owner(cr3) is pmap
    rec(cr3, 0, 0)
    # The kernel half is what pmap_pinit_pml4 wrote, untouched.
    kt = amd64_kernel_tables(pm)
    root = _words(pm, cr3)
    for slot in range(256, 512):
        want = cr3 | 0x63 if slot == 256 else kt.pml4_slots.get(slot, 0)
        assert int(root[slot]) == want, f"kernel PML4 slot {slot}: {int(root[slot]):#x}"
    return leaves, ptps


def chain_page(entry, va: int):
    """The page the entry's shadow chain gives for ``va``: the first resident one."""
    obj = entry.object
    pindex = (va - entry.start + entry.offset) >> 12
    while obj is not None:
        m = obj.memq.get(pindex)
        if m is not None:
            return m
        pindex += obj.backing_object_offset >> 12
        obj = obj.backing_object
    return None


def _entries(vm) -> list:
    m = vm.vm_map
    vm_map_lock_read(m)
    try:
        return list(m.entries())
    finally:
        vm_map_unlock_read(m)


def check_process(vm) -> tuple[int, int]:
    """Check every present PTE of ``vm``; returns (leaves, page-table pages)."""
    pmap = vm.vm_pmap
    pm = pmap.physmem
    leaves, ptps = walk_user_tables(vm)
    entries = _entries(vm)
    starts = [e.start for e in entries]
    for va, raw in leaves.items():
        k = bisect.bisect_right(starts, va) - 1
        assert k >= 0 and entries[k].start <= va < entries[k].end, f"PTE at {va:#x} outside the map"
        e = entries[k]
        prot = int(e.protection)
        where = f"PTE {raw:#018x} at {va:#x} (entry [{e.start:#x}, {e.end:#x}) {VM_PROT(prot)!r})"
        assert va < VM_MAXUSER and raw & U, f"{where}: U/S clear on a user address"
        assert not raw & (G | 0x200 | 0x18 | 0x80) and not (raw >> 52) & 0x7FF, (
            f"{where}: G/AVAIL1/PCD/PWT/PAT or a high ignored bit set")
        assert (raw & FRAME) < pm.size, f"{where}: frame outside memory"
        if raw & RW:
            assert prot & PROT_WRITE, f"{where}: RW without VM_PROT_WRITE"
            assert not e.eflags & MAP_ENTRY.NEEDS_COPY, f"{where}: RW on a NEEDS_COPY entry"
        if not prot & PROT_EXEC:
            assert raw & NX, f"{where}: executable although the entry lacks EXECUTE"
        assert not raw & M or raw & RW, f"{where}: M without RW"
        assert not raw & W or e.wired_count > 0, f"{where}: wired PTE in an unwired entry"
        m = chain_page(e, va)
        assert m is not None, f"{where}: nothing in the shadow chain backs it"
        assert m.valid, f"{where}: maps an invalid page"
        assert raw & FRAME == m.phys_addr, (
            f"{where}: maps {raw & FRAME:#x}, the chain gives {m.phys_addr:#x} (stale)")
        assert pm.frame_kind(m.phys_addr) == "data" and pm.frame_owner(m.phys_addr) is m
        if raw & RW:
            assert m.object is e.object, f"{where}: RW on a page of a backing object"
        managed = not (m.object.flags & OBJ_UNMANAGED)
        assert bool(raw & MANAGED) == managed, f"{where}: MANAGED bit wrong"
        if managed:
            assert (pmap, va) in m.pv, f"{where}: missing from the page's pv list"
    # The pmap's counters describe these tables.
    assert set(pmap.page_table_pages()) == set(ptps)
    assert pmap.resident_count == 1 + len(ptps) + len(leaves)
    assert pmap.wired_count == sum(1 for r in leaves.values() if r & W)
    check_tlb(vm)
    return len(leaves), len(ptps)


def check_tlb(vm) -> None:
    """No TLB entry of the pmap's CPU grants what a fresh walk refuses (a missing
    invalidation): frame equal, R/W only if the walk allows a write (unless cached with D = 0,
    which makes the CPU re-walk), fetch only if the walk allows it."""
    mmu = vm.vm_pmap.mmu
    for e in mmu.tlb.entries():
        va = np.array([e.va], dtype=np.uint64)
        r = mmu.translate_many(va, "r", 3, set_ad=False)
        assert r.ok[0] and int(r.pa[0]) == e.frame, f"stale TLB entry {e.describe()}"
        if e.rw and e.dirty:
            w = mmu.translate_many(va, "w", 3, set_ad=False)
            assert w.ok[0], f"TLB entry {e.describe()} writable, the tables are not"
        if not e.xd:
            x = mmu.translate_many(va, "x", 3, set_ad=False)
            assert x.ok[0], f"TLB entry {e.describe()} executable, the tables are not"


def instrument_enter_quick(vm, log: list[int]) -> None:
    """Check every pmap_enter_quick on ``vm``'s pmap as it happens (the bits it writes)."""
    pmap = vm.vm_pmap
    orig = pmap.enter_quick

    def enter_quick(va, m, prot):
        pm, cr3 = pmap.physmem, pmap.pm_cr3
        before = raw_pte(pm, cr3, va)
        orig(va, m, prot)
        after = raw_pte(pm, cr3, va)
        if before:
            assert after == before, "pmap_enter_quick overwrote a nonzero PTE"
            return
        want = m.phys_addr | V | U | (MANAGED if not m.object.flags & OBJ_UNMANAGED else 0)
        if not int(prot) & PROT_EXEC:
            want |= NX
        assert after == want, f"prefault PTE {after:#x}, expected {want:#x}"
        log.append(va)

    pmap.enter_quick = enter_quick


def _all_objects(machine, procs) -> dict[int, object]:
    objs: dict[int, object] = {}
    roots = [e.object for vm in procs for e in _entries(vm)]
    roots += [f.object for f in machine.files.values()]
    for o in roots:
        while o is not None and o.id not in objs:
            objs[o.id] = o
            o = o.backing_object
    # The shared page's frame belongs to the machine (counted in the baseline).
    sp = getattr(machine, "shared_page_obj", None)
    if sp is not None:
        objs.pop(sp.id, None)
    return objs


def check_machine(machine, procs, base_kinds: dict[str, int]) -> None:
    """Per process checks, then global frame accounting and pv lists with no stale entry."""
    pm = machine.physmem
    nptp = 0
    for vm in procs:
        _n, k = check_process(vm)
        nptp += 1 + k
    kinds = pm.kind_counts()
    tables = sum(kinds.get(k, 0) - base_kinds.get(k, 0) for k in KINDS)
    assert tables == nptp, f"{tables} page-table frames in use, {nptp} reachable"
    objs = _all_objects(machine, procs)
    pages = [m for o in objs.values() for m in o.memq.values()]
    assert kinds.get("data", 0) - base_kinds.get("data", 0) == len(pages)
    live = {id(vm.vm_pmap): vm for vm in procs}
    for m in pages:
        for pmap, va in m.pv:
            assert id(pmap) in live, f"{m!r} still has a pv entry of an exited process"
            got = raw_pte(pm, pmap.pm_cr3, va)
            assert got & V and got & FRAME == m.phys_addr, f"stale pv ({va:#x}) on {m!r}"


# ---- the random workload ----------------------------------------------------------------------

_PROTS = [PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC,
          PROT_READ | PROT_WRITE | PROT_EXEC]


class PageTableWorkload(RuleBasedStateMachine):
    """Several processes on one Machine with Amd64Pmap; invariants checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = Machine(8 << 20, "amd64")
        pm = self.machine.physmem
        amd64_kernel_tables(pm)
        shared_page_object(self.machine)
        self.base_nfree = pm.nfree
        self.base_kinds = pm.kind_counts()
        self.procs: list = []
        self.quick: list[int] = []
        self.value = 0

    def _add(self, vm) -> None:
        assert isinstance(vm.vm_pmap, Amd64Pmap)
        instrument_enter_quick(vm, self.quick)
        self.procs.append(vm)

    def _vm(self, p: int):
        return self.procs[p % len(self.procs)]

    @initialize(use_exec=st.booleans())
    def start(self, use_exec):
        vm = exec_image(self.machine) if use_exec else vmspace_alloc(machine=self.machine)
        self._add(vm)
        for k, n in enumerate(FILE_PAGES):
            assert open_file(vm, f"f{k}", n * P) == 3 + k

    # ---- rules -------------------------------------------------------------------------------
    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8), shared=st.booleans(), prot=st.sampled_from(_PROTS))
    def mmap_anon(self, p, w, first, n, shared, prot):
        n = min(n, NW - first)
        flags = MAP_ANON | MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE)
        assert mmap(self._vm(p), _addr(w, first), n * P, prot, flags) == (0, _addr(w, first))

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8), f=st.integers(0, 1), off=st.integers(0, 8), shared=st.booleans(),
          prot=st.sampled_from(_PROTS), prefault=st.booleans())
    def mmap_file(self, p, w, first, n, f, off, shared, prot, prefault):
        n = min(n, NW - first)
        flags = MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE)
        if prefault:
            flags |= MAP_PREFAULT_READ
        err, addr = mmap(self._vm(p), _addr(w, first), n * P, prot, flags, 3 + f, off * P)
        assert (err, addr) == (0, _addr(w, first))

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), i=st.integers(0, NW - 1),
          write=st.booleans())
    def touch(self, p, w, i, write):
        self._touch(self._vm(p), _addr(w, i) + 8 * i, write)

    @rule(p=st.integers(0, 3), k=st.integers(0, 40), off=st.integers(0, 40), write=st.booleans())
    def touch_entry(self, p, k, off, write):
        """Touch a page of any entry (exec's segments, the stack and its gap included)."""
        vm = self._vm(p)
        ents = _entries(vm)
        if not ents:
            return
        e = ents[k % len(ents)]
        npages = (e.end - e.start) >> 12
        # pages near either end of the entry (stack gaps are huge: grow from the top)
        j = off % min(npages, 8)
        va = e.start + j * P if off % 2 else e.end - (j + 1) * P
        self._touch(vm, va, write)

    def _touch(self, vm, va, write):
        self.value += 1
        try:
            if write:
                vm_write(vm, va, self.value)
            else:
                vm_read(vm, va)
        except VmAccessError:
            return
        raw = raw_pte(vm.vm_pmap.physmem, vm.vm_pmap.pm_cr3, va & ~0xFFF)
        # The access went through the MMU: A set, D set after a write.
        assert raw & V and raw & A
        if write:
            assert raw & RW and raw & M

    @rule(p=st.integers(0, 3), k=st.integers(0, 63), kinds=st.text("rwx", min_size=1,
                                                                     max_size=4))
    def cpu_access(self, p, k, kinds):
        """User accesses through the TLB to mapped pages (fills it; a fault changes only the
        TLB and A bits, as the hardware does)."""
        vm = self._vm(p)
        leaves = sorted(walk_user_tables(vm)[0])
        for j, kind in enumerate(kinds):
            if leaves:
                vm.vm_pmap.mmu.access(leaves[(k + j) % len(leaves)] + 8 * j, kind, 3)

    @precondition(lambda self: len(self.procs) < 4)
    @rule(p=st.integers(0, 3))
    def do_fork(self, p):
        err, child = fork(self._vm(p))
        assert err == 0
        self._add(child)

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8), prot=st.sampled_from(_PROTS))
    def do_mprotect(self, p, w, first, n, prot):
        assert mprotect(self._vm(p), _addr(w, first), n * P, prot) in (0, 13)

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8),
          inh=st.sampled_from([INHERIT_NONE, INHERIT_ZERO, INHERIT_SHARE, INHERIT_COPY]))
    def do_minherit(self, p, w, first, n, inh):
        assert minherit(self._vm(p), _addr(w, first), n * P, inh) == 0

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8))
    def do_munmap(self, p, w, first, n):
        assert munmap(self._vm(p), _addr(w, first), n * P) == 0

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8), flags=st.sampled_from([MS_SYNC, MS_ASYNC, MS_INVALIDATE]))
    def do_msync(self, p, w, first, n, flags):
        assert msync(self._vm(p), _addr(w, first), n * P, flags) in (0, 12, 16)

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 3), lock=st.booleans())
    def do_mlock(self, p, w, first, n, lock):
        vm = self._vm(p)
        f = mlock if lock else munlock
        assert f(vm, _addr(w, first), n * P) in (0, 12, 22)

    @rule(p=st.integers(0, 3), w=st.integers(0, 1), first=st.integers(0, NW - 1),
          n=st.integers(1, 8), behav=st.sampled_from([MADV_WILLNEED, MADV_DONTNEED, MADV_FREE]))
    def do_madvise(self, p, w, first, n, behav):
        assert madvise(self._vm(p), _addr(w, first), n * P, behav) == 0

    @precondition(lambda self: len(self.procs) > 1)
    @rule(p=st.integers(0, 3))
    def do_exit(self, p):
        vmspace_free(self.procs.pop(p % len(self.procs)))

    # ---- invariants --------------------------------------------------------------------------
    @invariant()
    def page_tables_agree(self):
        check_machine(self.machine, self.procs, self.base_kinds)

    def teardown(self):
        pm = self.machine.physmem
        for vm in self.procs:
            vmspace_free(vm)
        kinds = pm.kind_counts()
        for k in KINDS:
            assert kinds.get(k, 0) == self.base_kinds.get(k, 0), f"{k} page-table pages leaked"
        for f in self.machine.files.values():
            vnode_destroy_vobject(f)
        assert pm.kind_counts() == self.base_kinds
        assert pm.nfree == self.base_nfree


PageTableWorkload.TestCase.settings = settings(max_examples=100, stateful_step_count=40,
                                               deadline=None)
TestPageTableWorkload = PageTableWorkload.TestCase


# ---- deterministic scenarios ------------------------------------------------------------------


ANON_FIXED = MAP_ANON | MAP_PRIVATE | MAP_FIXED


def _machine() -> Machine:
    return Machine(8 << 20, "amd64")


def _pte(vm, va: int) -> int:
    return raw_pte(vm.vm_pmap.physmem, vm.vm_pmap.pm_cr3, va)


def test_default_machine_uses_amd64_pmap():
    vm = vmspace_alloc(machine=Machine(4 << 20))
    assert isinstance(vm.vm_pmap, Amd64Pmap)
    assert vm.vm_pmap.physmem is vm.machine.physmem
    assert vm.vm_pmap.pm_cr3 and vm.machine.physmem.frame_kind(vm.vm_pmap.pm_cr3) == "PML4"


def test_write_fault_on_untouched_anon_page_bits():
    vm = vmspace_alloc(machine=_machine())
    va = 0x1000_0000
    assert mmap(vm, va, 4 * P, PROT_READ | PROT_WRITE, ANON_FIXED)[0] == 0
    assert _pte(vm, va) == 0
    assert vm_fault(vm.vm_map, va, VM_PROT.WRITE) == KERN.SUCCESS
    m = chain_page(_entries(vm)[0], va)
    assert _pte(vm, va) == m.phys_addr | V | RW | U | A | M | MANAGED | NX
    # A zero-fill fault does not prefault (faultcount 1): the neighbours stay empty.
    assert _pte(vm, va + P) == 0
    # A read fault on the next page: RW (the entry is writable, no COW), A, but no M.
    assert vm_fault(vm.vm_map, va + P, VM_PROT.READ) == KERN.SUCCESS
    m2 = chain_page(_entries(vm)[0], va + P)
    assert _pte(vm, va + P) == m2.phys_addr | V | RW | U | A | MANAGED | NX
    check_process(vm)


def test_prefaulted_pte_bits_then_first_read_and_write():
    machine = _machine()
    vm = vmspace_alloc(machine=machine)
    log: list[int] = []
    instrument_enter_quick(vm, log)
    fd = open_file(vm, "lib.so", 16 * P)
    va = 0x2000_0000
    assert mmap(vm, va, 16 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd)[0] == 0
    assert vm_read(vm, va) == "lib.so[0]"  # page-in of a 16-page cluster, then prefault ahead
    assert log, "the hard fault prefaulted nothing"
    e = _entries(vm)[0]
    for pva in log:
        m = chain_page(e, pva)
        # 0x8000_0000_xxxx_x405: V|U|MANAGED|NX, no RW, A, D (reference §8)
        assert _pte(vm, pva) == m.phys_addr | V | U | MANAGED | NX
        assert _pte(vm, pva) & 0xFFF == 0x405 and _pte(vm, pva) >> 63
    pva = log[0]
    before = _pte(vm, pva)
    assert vm_read(vm, pva).startswith("lib.so[")  # no fault: the MMU only sets A
    assert _pte(vm, pva) == before | A
    vm_write(vm, pva, "mine")  # COW: a new frame in a shadow object, RW|A|M
    e = _entries(vm)[0]
    m = chain_page(e, pva)
    assert m.object is e.object and m.phys_addr != before & FRAME
    assert _pte(vm, pva) == m.phys_addr | V | RW | U | A | M | MANAGED | NX
    check_process(vm)


def test_fork_write_protects_parent_ptes_without_unmapping():
    machine = _machine()
    parent = vmspace_alloc(machine=machine)
    va = 0x1000_0000
    assert mmap(parent, va, 3 * P, PROT_READ | PROT_WRITE, ANON_FIXED)[0] == 0
    for i in range(3):
        vm_write(parent, va + i * P, i + 1)
    frames = [_pte(parent, va + i * P) & FRAME for i in range(3)]
    err, child = fork(parent)
    assert err == 0
    for i in range(3):
        pte = _pte(parent, va + i * P)
        # still mapped, same frame, RW and M cleared by pmap_protect, A kept
        assert pte == frames[i] | V | U | A | MANAGED | NX
        assert machine.physmem.frame_owner(frames[i]).dirty  # M went to the page
        # pmap_copy: the child's PTE is the parent's with W, M and A cleared
        assert _pte(child, va + i * P) == frames[i] | V | U | MANAGED | NX
    assert ("all", None) in parent.vm_pmap.invalidations
    for vm in (parent, child):
        check_process(vm)
    # Each side's write breaks COW for itself only.
    vm_write(child, va, "child")
    vm_write(parent, va + P, "parent")
    assert vm_read(parent, va) == 1 and vm_read(child, va + P) == 2
    assert _pte(child, va) & FRAME != frames[0] and _pte(child, va) & (RW | M) == RW | M
    assert _pte(parent, va) == frames[0] | V | U | A | MANAGED | NX
    for vm in (parent, child):
        check_process(vm)


def test_mprotect_narrows_ptes_and_none_removes_them():
    vm = vmspace_alloc(machine=_machine())
    va = 0x1000_0000
    assert mmap(vm, va, 4 * P, PROT_READ | PROT_WRITE | PROT_EXEC,
                ANON_FIXED)[0] == 0
    for i in range(4):
        vm_write(vm, va + i * P, i)
    full = [_pte(vm, va + i * P) for i in range(4)]
    assert all(p & (RW | M | A) == RW | M | A and not p & NX for p in full)
    assert mprotect(vm, va, 2 * P, PROT_READ) == 0
    for i in range(2):
        # narrowed in place: RW and M cleared, NX set, frame and A kept
        assert _pte(vm, va + i * P) == (full[i] & ~(RW | M)) | NX
    assert [_pte(vm, va + i * P) for i in (2, 3)] == full[2:]
    assert mprotect(vm, va, P, PROT_NONE) == 0
    assert _pte(vm, va) == 0 and _pte(vm, va + P) != 0
    # Widening never touches the PTE (pmap_protect only removes rights); a write then faults.
    assert mprotect(vm, va + P, P, PROT_READ | PROT_WRITE) == 0
    assert _pte(vm, va + P) == (full[1] & ~(RW | M)) | NX
    vm_write(vm, va + P, "again")
    assert _pte(vm, va + P) == (full[1] & FRAME) | V | RW | U | A | M | MANAGED | NX
    check_process(vm)


def test_munmap_removes_ptes_and_frees_emptied_table_pages():
    machine = _machine()
    pm = machine.physmem
    vm = vmspace_alloc(machine=machine)
    base = pm.kind_counts()
    a, b = 0x1000_0000, 0x80_0000_0000  # different PML4 slots
    for va in (a, b):
        assert mmap(vm, va, 2 * P, PROT_READ | PROT_WRITE, ANON_FIXED)[0] == 0
        vm_write(vm, va, 1)
        vm_write(vm, va + P, 2)
    _leaves, ptps = walk_user_tables(vm)
    assert sorted(ptps.values()) == [1, 1, 2, 2, 3, 3]
    assert munmap(vm, a + P, P) == 0  # one page: the PT page still holds the other
    assert _pte(vm, a + P) == 0 and _pte(vm, a) & V
    assert walk_user_tables(vm)[1] == ptps
    assert munmap(vm, a, P) == 0  # last page: PT, PD and PDPT pages go, PML4E zeroed
    assert _pte(vm, a) == 0
    assert pm.read_u64(vm.vm_pmap.pm_cr3 + 8 * (a >> 39)) == 0
    left = walk_user_tables(vm)[1]
    assert sorted(left.values()) == [1, 2, 3]
    assert pm.kind_counts()["PT"] == base.get("PT", 0) + 1
    assert _pte(vm, b) & V and _pte(vm, b + P) & V
    assert munmap(vm, b, 2 * P) == 0
    assert walk_user_tables(vm) == ({}, {}) and vm.vm_pmap.resident_count == 1
    assert pm.kind_counts() == {k: v for k, v in base.items() if k != "data"} | (
        {"data": base["data"]} if "data" in base else {})
    check_process(vm)


def test_exit_returns_every_frame():
    machine = _machine()
    pm = machine.physmem
    amd64_kernel_tables(pm)
    shared_page_object(machine)
    nfree, kinds = pm.nfree, pm.kind_counts()
    vm = exec_image(machine)
    for e in _entries(vm):
        if e.protection & PROT_READ:
            try:
                vm_read(vm, e.start)
                if e.protection & PROT_WRITE:
                    vm_write(vm, e.end - P, "x")
            except VmAccessError:
                pass
    err, child = fork(vm)
    assert err == 0
    vm_write(child, _entries(child)[2].start, "child data")
    check_machine(machine, [vm, child], kinds)
    vmspace_free(vm)
    vmspace_free(child)
    assert {k: v for k, v in pm.kind_counts().items() if k != "data"} == {
        k: v for k, v in kinds.items() if k != "data"}
    for f in machine.files.values():
        vnode_destroy_vobject(f)
    assert pm.kind_counts() == kinds and pm.nfree == nfree


def test_cow_in_a_shared_shadow_unmaps_the_old_page_everywhere():
    """vm_fault_cow's "highly unusual case": a shadow shared read/write between address
    spaces (SHARE over a COW chain). A's write copies the backing page into the shared shadow;
    B's read-only mapping of the old page must go (pmap_remove_all), else B reads stale data."""
    machine = _machine()
    a = vmspace_alloc(machine=machine)
    va = 0x1000_0000
    assert mmap(a, va, P, PROT_READ | PROT_WRITE, ANON_FIXED)[0] == 0
    vm_write(a, va, "old")
    err, c = fork(a)  # COPY: A and C both COW|NEEDS_COPY on the object
    assert err == 0
    assert minherit(a, va, P, INHERIT_SHARE) == 0
    err, b = fork(a)  # SHARE of a NEEDS_COPY entry: shadowed now, in A; B shares the shadow
    assert err == 0
    assert vm_read(b, va) == "old" and vm_read(a, va) == "old" and vm_read(c, va) == "old"
    old = _pte(b, va) & FRAME
    assert _pte(a, va) & FRAME == old and not _pte(b, va) & RW
    vm_write(a, va, "new")
    assert _pte(a, va) & FRAME != old
    assert _pte(b, va) == 0  # removed, not left pointing at the old page
    for vm in (a, b, c):
        check_process(vm)
    assert vm_read(b, va) == "new" and vm_read(c, va) == "old"
    assert _pte(b, va) & FRAME == _pte(a, va) & FRAME


def test_madvise_free_and_dontneed_clear_a_and_m_but_keep_rw():
    """pmap_advise (amd64 pmap.c), as vm_map_madvise calls it for MADV_DONTNEED/MADV_FREE:
    M|RW PTEs lose M and A (DONTNEED dirties the page first), others lose A; RW stays, so the
    next store does not fault. Found by this file: vmlab used to write-protect for MADV_FREE
    and leave the PTEs alone for MADV_DONTNEED."""
    vm = vmspace_alloc(machine=_machine())
    va = 0x1000_0000
    assert mmap(vm, va, 4 * P, PROT_READ | PROT_WRITE, ANON_FIXED)[0] == 0
    for i in range(4):
        vm_write(vm, va + i * P, i)
    vm.vm_pmap.remove(va + 3 * P, va + 4 * P)
    assert vm_read(vm, va + 3 * P) == 3  # soft fault on a read: RW, A, no M
    before = [_pte(vm, va + i * P) for i in range(4)]
    assert before[3] & (RW | A | M) == RW | A
    pages = [chain_page(_entries(vm)[0], va + i * P) for i in range(4)]
    for m in pages:
        m.dirty = False
    nflush = len(vm.vm_pmap.invalidations)
    assert madvise(vm, va, 2 * P, MADV_DONTNEED) == 0
    assert [_pte(vm, va + i * P) for i in range(2)] == [b & ~(A | M) for b in before[:2]]
    assert pages[0].dirty and pages[1].dirty  # M went to the page first
    assert len(vm.vm_pmap.invalidations) == nflush + 1
    assert madvise(vm, va + 2 * P, 2 * P, MADV_FREE) == 0
    assert _pte(vm, va + 2 * P) == before[2] & ~(A | M)
    assert _pte(vm, va + 3 * P) == before[3] & ~A
    assert not pages[2].dirty and not pages[3].dirty
    vm_write(vm, va + 2 * P, "reuse")  # no fault: the MMU sets A and M again
    assert _pte(vm, va + 2 * P) == before[2]
    check_process(vm)

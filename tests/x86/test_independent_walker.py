"""Cross-check against an independent 4-level walker: what an external x86-64 emulator would
answer when it loads ``physmem.to_bytes()`` with ``vm.vm_pmap.pm_cr3``.

The walker below is written from the Intel SDM vol. 3A ch. 4 rules (as summarised in
shared/reference/x86-64-paging.md §§1-5) and uses nothing from vmlab but the raw image: it reads
little-endian u64 entries from a ``bytearray``, checks P, the reserved bits (51:M, bit 63
without NXE, PS in a PML4E, 20:13 / 29:13 in large leaves), combines R/W, U/S and XD over the
levels, applies CR0.WP, SMEP and SMAP (with RFLAGS.AC), builds the #PF error code, and sets A/D
in its own copy of memory. vmlab's `Mmu.translate` must give the same ok / pa / vector / error
code for every address of random processes (mapped pages, their neighbours, kernel slots, the
recursive slot, the direct map, non-canonical addresses), and after the whole sequence both
memories must be byte-for-byte equal (A/D included). On faulting walks both follow the model
the reference recommends (§5): A is set in the non-leaf entries passed before the failing
level; the failing entry and a refused leaf are left alone.
"""

from __future__ import annotations

import contextlib
import random

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from vmlab.core import (
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    Machine,
    VmAccessError,
    exec_image,
    fork,
    mmap,
    mprotect,
    munmap,
    open_file,
    vm_read,
    vm_write,
    vmspace_alloc,
    vmspace_free,
)
from vmlab.core.x86.mmu import Mmu

P = 4096

# Control-register bits (SDM vol. 3A §2.5 and §4.1), written out independently.
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 16, 1 << 31
CR4_PAE, CR4_SMEP, CR4_SMAP = 1 << 5, 1 << 20, 1 << 21
EFER_LME, EFER_LMA, EFER_NXE = 1 << 8, 1 << 10, 1 << 11


class SdmWalker:
    """A 4-level IA-32e walker over a bytearray (PA 0 at offset 0), from the SDM's rules."""

    def __init__(self, mem: bytearray, cr3: int, *, wp: bool, nxe: bool, smep: bool,
                 smap: bool, ac: bool, maxphyaddr: int = 52) -> None:
        self.mem = mem
        self.addr_mask = ((1 << maxphyaddr) - 1) & ~0xFFF
        self.cr3 = cr3 & self.addr_mask
        self.wp, self.nxe, self.smep, self.smap, self.ac = wp, nxe, smep, smap, ac
        self.rsvd_hi = ((1 << 52) - 1) & ~((1 << maxphyaddr) - 1)  # bits 51:M

    def _rd(self, pa: int) -> int:
        if pa + 8 > len(self.mem):
            return 0  # nothing there: reads as not present
        return int.from_bytes(self.mem[pa : pa + 8], "little")

    def _or(self, pa: int, bits: int) -> None:
        self._wr(pa, self._rd(pa) | bits)

    def _wr(self, pa: int, v: int) -> None:
        self.mem[pa : pa + 8] = v.to_bytes(8, "little")

    def walk(self, va: int, access: str, cpl: int) -> tuple[bool, int, int, int]:
        """(ok, pa, vector, error code): vector 0 when ok, 13 (#GP) or 14 (#PF)."""
        top = va >> 47
        if top not in (0, 0x1FFFF):
            return False, 0, 13, 0
        user = cpl == 3
        ec = (2 if access == "w" else 0) | (4 if user else 0)
        if access == "x" and (self.nxe or self.smep):
            ec |= 0x10
        table = self.cr3
        rw, us, xd = True, True, False
        used: list[int] = []
        pa = 0
        for level in range(4):  # PML4E, PDPTE, PDE, PTE
            shift = 39 - 9 * level
            epa = table + 8 * ((va >> shift) & 511)
            e = self._rd(epa)
            if not e & 1:
                self._set_a(used)
                return False, 0, 14, ec
            leaf = level == 3 or (level in (1, 2) and bool(e & 0x80))
            rsvd = self.rsvd_hi | (0 if self.nxe else 1 << 63)
            if level == 0:
                rsvd |= 0x80  # PS must be 0 in a PML4E
            elif leaf and level == 1:
                rsvd |= ((1 << 30) - 1) & ~((1 << 13) - 1)  # 1 GiB leaf: bits 29:13
            elif leaf and level == 2:
                rsvd |= ((1 << 21) - 1) & ~((1 << 13) - 1)  # 2 MiB leaf: bits 20:13
            if e & rsvd:
                self._set_a(used)
                return False, 0, 14, ec | 1 | 8
            used.append(epa)
            rw = rw and bool(e & 2)
            us = us and bool(e & 4)
            xd = xd or (self.nxe and bool(e >> 63))
            if leaf:
                size = 1 << shift
                pa = (e & self.addr_mask & ~(size - 1)) | (va & (size - 1))
                break
            table = e & self.addr_mask
        if not self._allowed(access, user, rw, us, xd):
            self._set_a(used[:-1])
            return False, 0, 14, ec | 1
        self._set_a(used)
        if access == "w":
            self._or(used[-1], 0x40)
        return True, pa, 0, 0

    def _set_a(self, entries: list[int]) -> None:
        for epa in entries:
            self._or(epa, 0x20)

    def _allowed(self, access: str, user: bool, rw: bool, us: bool, xd: bool) -> bool:
        if user:
            if not us:
                return False
            if access == "w":
                return rw
            if access == "x":
                return not xd
            return True
        if access == "x":
            return not xd and not (self.smep and us)
        if self.smap and us and not self.ac:
            return False
        if access == "w" and self.wp:
            return rw
        return True


# ---- random processes --------------------------------------------------------------------------

REGIONS = (0x1000_0000, 0x4000_0000 - 8 * P, 0x80_0000_0000 - 8 * P)
_PROTS = [PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC,
          PROT_READ | PROT_WRITE | PROT_EXEC]
_p = st.integers(0, 3)
_reg = st.integers(0, len(REGIONS) - 1)
_first = st.integers(0, 15)
_n = st.integers(1, 8)
OPS = st.one_of(
    st.tuples(st.just("mmap"), _p, _reg, _first, _n, st.sampled_from(_PROTS), st.booleans(),
              st.sampled_from([None, 0])),
    st.tuples(st.just("touch"), _p, _reg, st.integers(0, 23), st.booleans()),
    st.tuples(st.just("touch"), _p, _reg, st.integers(0, 23), st.booleans()),
    st.tuples(st.just("fork"), _p),
    st.tuples(st.just("mprotect"), _p, _reg, _first, _n, st.sampled_from(_PROTS)),
    st.tuples(st.just("munmap"), _p, _reg, _first, _n),
    st.tuples(st.just("exit"), _p),
)
CPU_MODES = st.sampled_from([
    # (cr0, cr4, efer, ac): FreeBSD's user-process default first
    (CR0_PG | CR0_WP | CR0_PE, CR4_PAE, EFER_LME | EFER_LMA | EFER_NXE, False),
    (CR0_PG | CR0_PE, CR4_PAE, EFER_LME | EFER_LMA | EFER_NXE, False),
    (CR0_PG | CR0_WP | CR0_PE, CR4_PAE | CR4_SMEP | CR4_SMAP, EFER_LME | EFER_LMA | EFER_NXE,
     False),
    (CR0_PG | CR0_WP | CR0_PE, CR4_PAE | CR4_SMAP, EFER_LME | EFER_LMA | EFER_NXE, True),
    (CR0_PG | CR0_WP | CR0_PE, CR4_PAE | CR4_SMEP, EFER_LME | EFER_LMA, False),  # NXE clear
])


def run_workload(machine: Machine, use_exec: bool, ops) -> list:
    vm = exec_image(machine) if use_exec else vmspace_alloc(machine=machine)
    open_file(vm, "data.bin", 12 * P)
    procs = [vm]
    for op in ops:
        kind, p = op[0], op[1] % len(procs)
        vm = procs[p]
        if kind == "mmap":
            _k, _p2, r, first, n, prot, shared, f = op
            flags = MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE)
            if f is None:
                err, _a = mmap(vm, REGIONS[r] + first * P, n * P, prot, flags | MAP_ANON)
            else:
                err, _a = mmap(vm, REGIONS[r] + first * P, n * P, prot, flags, 3, first * P)
            assert err == 0
        elif kind == "touch":
            _k, _p2, r, i, write = op
            with contextlib.suppress(VmAccessError):
                (vm_write(vm, REGIONS[r] + i * P, i) if write else vm_read(vm, REGIONS[r] + i * P))
        elif kind == "fork" and len(procs) < 4:
            err, child = fork(vm)
            assert err == 0
            procs.append(child)
        elif kind == "mprotect":
            _k, _p2, r, first, n, prot = op
            assert mprotect(vm, REGIONS[r] + first * P, n * P, prot) == 0
        elif kind == "munmap":
            _k, _p2, r, first, n = op
            assert munmap(vm, REGIONS[r] + first * P, n * P) == 0
        elif kind == "exit" and len(procs) > 1:
            vmspace_free(procs.pop(p))
    return procs


def query_addresses(vm, rng: random.Random) -> list[int]:
    """Mapped pages and their neighbours, every entry's ends, kernel and odd addresses."""
    vas: set[int] = set()
    for e in vm.vm_map.entries():
        npages = (e.end - e.start) >> 12
        pages = range(npages) if npages <= 32 else [*range(4), *range(npages - 4, npages)]
        for i in pages:
            vas.add(e.start + i * P)
        vas.update((e.start - P, e.end))
    for va, _pa, _prot, _wired in vm.vm_pmap.mappings():
        vas.update((va, va + P, va - P, va + (1 << 21), va ^ (1 << 30)))
        # the recursive slot (256): PML4 -> PML4 -> PDPT -> PD gives va's page-table page
        a, b, c = (va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511
        vas.add(0xFFFF_0000_0000_0000 | 256 << 39 | a << 30 | b << 21 | c << 12)
    vas.update({
        0, P, 0x7FFF_FFFF_F000, 0x0000_8000_0000_0000, 0xFFFF_0000_0000_0000,  # edges, #GP
        0xFFFF_8000_0000_0000 | 256 << 30 | 256 << 21 | 256 << 12,  # recursive 4 times: PML4
        0xFFFF_8080_0000_0000,  # large-map slot 257: empty PDPT
        0xFFFF_F800_0000_0000, 0xFFFF_F800_0000_0000 + 0x1234_5678,  # DMAP, 1 GiB leaf
        0xFFFF_F800_0000_0000 + (5 << 30),  # DMAP beyond its last PDPTE
        0xFFFF_FE00_0000_0000, 0xFFFF_FFFF_8000_0000,  # KPDP slots 508.., KERNBASE
    })
    for _ in range(12):
        vas.add(rng.getrandbits(47))
        vas.add(0xFFFF_8000_0000_0000 | rng.getrandbits(47))
        vas.add(rng.getrandbits(64))
    out = sorted(v & ((1 << 64) - 1) for v in vas if v >= 0)
    return [v | rng.randrange(0, P, 8) if rng.random() < 0.5 else v for v in out]


@settings(max_examples=40, deadline=None)
@given(use_exec=st.booleans(), ops=st.lists(OPS, min_size=4, max_size=30), mode=CPU_MODES,
       rng=st.randoms(use_true_random=False))
def test_translate_agrees_with_an_independent_walker(use_exec, ops, mode, rng):
    machine = Machine(4 << 20, "amd64")
    procs = run_workload(machine, use_exec, ops)
    pm = machine.physmem
    cr0, cr4, efer, ac = mode
    img = bytearray(pm.to_bytes())
    for vm in procs:
        cr3 = vm.vm_pmap.pm_cr3
        mine = SdmWalker(img, cr3, wp=bool(cr0 & CR0_WP), nxe=bool(efer & EFER_NXE),
                         smep=bool(cr4 & CR4_SMEP), smap=bool(cr4 & CR4_SMAP), ac=ac)
        mmu = Mmu(pm, cr3, cr0=cr0, cr4=cr4, efer=efer, ac=ac)
        vas = query_addresses(vm, rng)
        for access in "rwx":
            for cpl in (3, 0):
                # translate_many (no A/D) first: A/D never change a walk's outcome.
                many = mmu.translate_many(np.array(vas, dtype=np.uint64), access, cpl,
                                          set_ad=False)
                for k, va in enumerate(vas):
                    want = mine.walk(va, access, cpl)
                    w = mmu.translate(va, access, cpl)
                    got = (w.ok, w.pa if w.ok else 0, 0 if w.ok else w.vector,
                           w.error_code if w.vector == 14 else 0)
                    assert got == want, (
                        f"{access} at {va:#x} cpl {cpl}: vmlab {got}, SDM walker {want}\n"
                        + w.format())
                    if w.vector == 14:
                        assert w.cr2 == va
                    assert (bool(many.ok[k]), int(many.pa[k]) if many.ok[k] else 0,
                            int(many.vector[k]), int(many.error_code[k])) == want
    # Both memories saw the same accesses: A/D bits (and everything else) byte for byte.
    assert pm.to_bytes() == bytes(img)


def test_walker_matches_the_reference_worked_example():
    """The SDM walker itself, on the reference's §8 tables (so it is not vacuous)."""
    mem = bytearray(0x124000)

    def put(pa: int, v: int) -> None:
        mem[pa : pa + 8] = v.to_bytes(8, "little")

    put(0x17F0, 0x2067)
    put(0x2B40, 0x3067)
    put(0x3F20, 0x4067)
    put(0x4708, 0x8000_0000_0012_3405)  # prefault PTE: no RW, A, D
    w = SdmWalker(mem, 0x1000, wp=True, nxe=True, smep=False, smap=False, ac=False)
    va = 0x0000_7F5A_3C8E_1ABC
    assert w.walk(va, "r", 3) == (True, 0x123ABC, 0, 0)
    assert int.from_bytes(mem[0x4708:0x4710], "little") == 0x8000_0000_0012_3425  # A set
    assert w.walk(va, "w", 3) == (False, 0, 14, 0x07)
    assert w.walk(va, "x", 3) == (False, 0, 14, 0x15)
    assert w.walk(va, "w", 0) == (False, 0, 14, 0x03)  # WP
    assert w.walk(va + (1 << 21), "r", 3) == (False, 0, 14, 0x04)
    assert w.walk(0x0000_8000_0000_0000, "r", 3) == (False, 0, 13, 0)
    put(0x4708, 0x8000_0000_0012_3405 | 1 << 51)  # reserved with MAXPHYADDR 48 only
    narrow = SdmWalker(mem, 0x1000, wp=True, nxe=True, smep=False, smap=False, ac=False,
                       maxphyaddr=48)
    assert narrow.walk(va, "r", 3) == (False, 0, 14, 0x0D)
    nonx = SdmWalker(mem, 0x1000, wp=True, nxe=False, smep=False, smap=False, ac=False)
    assert nonx.walk(va, "x", 3) == (False, 0, 14, 0x0D)  # XD reserved, I/D clear

"""Random insert / find / findspace / fixed / delete / protect / inherit / clip sequences against
a plain page-list reference model, with vm_map_check after every step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vmlab.core import (
    KERN,
    VM_INHERIT,
    VM_MAP_PROTECT,
    VM_PROT,
    VMFS,
    vm_map_check,
    vm_map_check_protection,
    vm_map_clip_end,
    vm_map_clip_start,
    vm_map_create,
    vm_map_find,
    vm_map_findspace,
    vm_map_fixed,
    vm_map_inherit,
    vm_map_insert,
    vm_map_lock,
    vm_map_lookup_entry,
    vm_map_protect,
    vm_map_remove,
    vm_map_unlock,
)

P = 0x1000
BASE = 0x100000
NPAGES = 4000
LO, HI = BASE, BASE + NPAGES * P

pages = st.integers(0, NPAGES - 1)
lengths = st.integers(1, 40)
prots = st.sampled_from([0, 1, 3, 5, 7])
inhs = st.sampled_from([0, 1, 2, 3])


class Reference:
    """One slot per page: None (free) or (prot, max, inheritance)."""

    def __init__(self) -> None:
        self.p: list[tuple[int, int, int] | None] = [None] * NPAGES

    def free(self, a: int, n: int) -> bool:
        return all(x is None for x in self.p[a:a + n])

    def first_fit(self, start_page: int, n: int) -> int | None:
        run = 0
        for i in range(max(start_page, 0), NPAGES):
            run = run + 1 if self.p[i] is None else 0
            if run == n:
                return i - n + 1
        return None

    def ranges(self) -> list[tuple[int, int, tuple[int, int, int]]]:
        out: list[tuple[int, int, tuple[int, int, int]]] = []
        for i, v in enumerate(self.p):
            if v is None:
                continue
            if out and out[-1][1] == i and out[-1][2] == v:
                out[-1] = (out[-1][0], i + 1, v)
            else:
                out.append((i, i + 1, v))
        return out


def model_ranges(m) -> list[tuple[int, int, tuple[int, int, int]]]:
    out: list[tuple[int, int, tuple[int, int, int]]] = []
    for e in m.entries():
        a, b = (e.start - BASE) // P, (e.end - BASE) // P
        v = (int(e.protection), int(e.max_protection), int(e.inheritance))
        if out and out[-1][1] == a and out[-1][2] == v:
            out[-1] = (out[-1][0], b, v)
        else:
            out.append((a, b, v))
    return out


class VmMapMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.m = vm_map_create(None, LO, HI)
        self.ref = Reference()

    def _set(self, a: int, n: int, v: tuple[int, int, int] | None) -> None:
        for i in range(a, min(a + n, NPAGES)):
            self.ref.p[i] = v

    @rule(a=pages, n=lengths, prot=prots, data=st.data())
    def insert(self, a, n, prot, data) -> None:
        mx = data.draw(st.sampled_from([x for x in (1, 3, 5, 7) if x & prot == prot]))
        vm_map_lock(self.m)
        rv = vm_map_insert(self.m, None, 0, BASE + a * P, BASE + (a + n) * P, prot, mx, 0)
        vm_map_unlock(self.m)
        if a + n > NPAGES:
            assert rv == KERN.INVALID_ADDRESS
        elif not self.ref.free(a, n):
            assert rv == KERN.NO_SPACE
        else:
            assert rv == KERN.SUCCESS
            self._set(a, n, (prot, mx, VM_INHERIT.COPY))

    @rule(start=pages, n=lengths)
    def many(self, start, n) -> None:
        """Fill a stretch with one-page entries separated by one-page holes (thousands of
        entries over a run)."""
        vm_map_lock(self.m)
        for k in range(n * 50):
            a = start + 2 * k
            if a >= NPAGES:
                break
            prot = (1, 3, 5)[k % 3]
            rv = vm_map_insert(self.m, None, 0, BASE + a * P, BASE + (a + 1) * P, prot, 7, 0)
            assert rv == (KERN.SUCCESS if self.ref.p[a] is None else KERN.NO_SPACE)
            if rv == KERN.SUCCESS:
                self._set(a, 1, (prot, 7, 1))
        vm_map_unlock(self.m)

    @rule(a=pages, n=lengths)
    def findspace(self, a, n) -> None:
        vm_map_lock(self.m)
        got = vm_map_findspace(self.m, BASE + a * P, n * P)
        vm_map_unlock(self.m)
        want = self.ref.first_fit(a, n)
        if want is None:
            assert got + n * P > HI
        else:
            assert got == BASE + want * P

    @rule(a=pages, n=lengths, prot=prots, bounded=st.booleans())
    def find(self, a, n, prot, bounded) -> None:
        hint = BASE + a * P
        max_addr = min(HI, hint + 64 * P) if bounded else 0
        rv, got = vm_map_find(self.m, None, 0, hint, n * P, max_addr, VMFS.ANY_SPACE, prot, 7, 0)
        want = self.ref.first_fit(a, n)
        if want is not None and bounded and BASE + (want + n) * P > max_addr:
            want = None
        if want is None:
            assert rv == KERN.NO_SPACE
        else:
            assert (rv, got) == (KERN.SUCCESS, BASE + want * P)
            self._set(want, n, (prot, 7, 1))

    @rule(a=pages, n=lengths, prot=prots)
    def fixed(self, a, n, prot) -> None:
        rv = vm_map_fixed(self.m, None, 0, BASE + a * P, n * P, prot, 7, 0)
        assert rv == KERN.SUCCESS
        self._set(a, n, (prot, 7, 1))

    @rule(a=pages, n=st.integers(0, 200))
    def remove(self, a, n) -> None:
        assert vm_map_remove(self.m, BASE + a * P, BASE + (a + n) * P) == KERN.SUCCESS
        self._set(a, n, None)

    @rule(a=pages, n=lengths, prot=prots, setmax=st.booleans())
    def protect(self, a, n, prot, setmax) -> None:
        flags = VM_MAP_PROTECT.SET_MAXPROT if setmax else VM_MAP_PROTECT.SET_PROT
        rv = vm_map_protect(self.m, BASE + a * P, BASE + (a + n) * P, prot, prot, flags)
        span = [v for v in self.ref.p[a:a + n] if v is not None]
        if any(prot & v[1] != prot for v in span):
            assert rv == KERN.PROTECTION_FAILURE
            return
        assert rv == KERN.SUCCESS
        for i in range(a, min(a + n, NPAGES)):
            v = self.ref.p[i]
            if v is not None:
                self.ref.p[i] = (prot & v[0], prot, v[2]) if setmax else (prot, v[1], v[2])

    @rule(a=pages, n=lengths, inh=inhs)
    def inherit(self, a, n, inh) -> None:
        assert vm_map_inherit(self.m, BASE + a * P, BASE + (a + n) * P, inh) == KERN.SUCCESS
        for i in range(a, min(a + n, NPAGES)):
            v = self.ref.p[i]
            if v is not None:
                self.ref.p[i] = (v[0], v[1], inh)

    @rule(a=pages, at=st.integers(1, 30), end=st.booleans())
    def clip(self, a, at, end) -> None:
        vm_map_lock(self.m)
        found, e = vm_map_lookup_entry(self.m, BASE + a * P)
        if found and e.end - e.start > P:
            addr = min(e.start + at * P, e.end - P)
            rv = (vm_map_clip_end if end else vm_map_clip_start)(self.m, e, addr)
            assert rv == KERN.SUCCESS
            assert (e.end if end else e.start) == addr
        vm_map_unlock(self.m)

    @rule(a=pages, n=lengths, prot=prots)
    def check_protection(self, a, n, prot) -> None:
        vm_map_lock(self.m)
        got = vm_map_check_protection(self.m, BASE + a * P, BASE + (a + n) * P, prot)
        vm_map_unlock(self.m)
        span = self.ref.p[a:a + n]
        want = a + n <= NPAGES and all(v is not None and v[0] & prot == prot for v in span)
        assert got == want

    @invariant()
    def consistent(self) -> None:
        vm_map_check(self.m)
        assert model_ranges(self.m) == self.ref.ranges()
        assert self.m.size == P * sum(v is not None for v in self.ref.p)
        assert self.m.lock.mode == "unlocked"


VmMapMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
TestVmMapStateful = VmMapMachine.TestCase


def test_prot_none_entries_use_vm_prot_names():
    # guard against silent renumbering of the values the machine draws
    assert [int(VM_PROT.NONE), int(VM_PROT.READ), int(VM_PROT.RW)] == [0, 1, 3]

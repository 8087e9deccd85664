"""Benchmark: fork of an address space of 10^3 .. 10^4 entries, and 10^5 page faults with
prefault, each against a naive baseline in the same run.

fork: N one-page anonymous entries (alternating protections so nothing merges, one-page holes
between them), every page touched once so each entry has an object and a resident page.
vmlab's vmspace_fork (copy-on-write: no page is copied) is compared with the naive fork a
student would write: map the same layout in the child and copy every page's content through
user accesses (what fork cost before copy-on-write).

faults: a 4096-page anonymous region whose pages are all resident; the pmap is emptied and the
region read page by page, again and again, until 10^5 vm_fault calls have been made. With
FreeBSD's prefault (PFBAK = PFFOR = 4) one soft fault maps the faulting page and up to four
neighbours, so about one access in five faults. The baseline is the same loop with prefault
disabled (every access faults). The fault cost is also measured in maps of 10 .. 10^4 entries
(vm_map_lookup splays the map).

    .venv/bin/python benchmarks/bench_process.py           # about a minute
    .venv/bin/python benchmarks/bench_process.py --quick

Times are CPU time of this process (time.process_time), so other work on the machine does not
inflate them.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vmlab.core import (  # noqa: E402
    MAP_ANON,
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    VM_PROT,
    Machine,
    fork,
    mmap,
    pmap_remove,
    vm_read,
    vm_write,
    vmspace_alloc,
    vmspace_free,
)

# The package re-exports the function vm_fault, which hides the submodule's name.
vf = sys.modules["vmlab.core.vm_fault"]
P = 4096
BASE = 0x10000000


def build(n: int, machine: Machine):
    vm = vmspace_alloc(machine=machine)
    for i in range(n):
        prot = PROT_READ | PROT_WRITE if i % 2 == 0 else PROT_READ
        err, _ = mmap(vm, BASE + 2 * i * P, P, prot | PROT_WRITE,
                      MAP_ANON | MAP_PRIVATE | MAP_FIXED)
        assert err == 0
        vm_write(vm, BASE + 2 * i * P, i)
    # alternate protections (mprotect would merge equal neighbours otherwise)
    from vmlab.core import mprotect

    for i in range(1, n, 2):
        mprotect(vm, BASE + 2 * i * P, P, PROT_READ)
    assert vm.vm_map.nentries == n
    return vm


def naive_fork(vm):
    child = vmspace_alloc(machine=vm.machine)
    for e in vm.vm_map.entries():
        err, _ = mmap(child, e.start, e.end - e.start, PROT_READ | PROT_WRITE,
                      MAP_ANON | MAP_PRIVATE | MAP_FIXED)
        for va in range(e.start, e.end, P):
            vm_write(child, va, vm_read(vm, va))
    return child


def timed(f, *a):
    gc.collect()
    t = time.process_time()
    r = f(*a)
    return time.process_time() - t, r


def bench_fork(sizes):
    print("fork (vmspace_fork, copy-on-write) vs naive eager-copy fork")
    print(f"{'entries':>8} {'vmlab ms':>9} {'us/entry':>9} {'naive ms':>9} {'naive/vmlab':>11}")
    base = None
    for n in sizes:
        mc = Machine(256 << 20, "mem")
        vm = build(n, mc)
        t, (err, ch) = timed(fork, vm)
        assert err == 0 and ch.vm_map.nentries == n
        vmspace_free(ch)
        tn, chn = timed(naive_fork, vm)
        vmspace_free(chn)
        vmspace_free(vm)
        per = t / n * 1e6
        base = base or per
        print(f"{n:>8} {t * 1e3:>9.1f} {per:>9.1f} {tn * 1e3:>9.1f} {tn / t:>11.1f}"
              f"   (per-entry cost x{per / base:.2f} vs {sizes[0]})")


def fault_loop(target: int, npages: int = 4096, extra_entries: int = 0):
    mc = Machine(64 << 20, "mem")
    vm = vmspace_alloc(machine=mc)
    err, a = mmap(vm, 0x40000000, npages * P, PROT_READ | PROT_WRITE,
                  MAP_ANON | MAP_PRIVATE | MAP_FIXED)
    for i in range(extra_entries):  # other entries so the map is big
        mmap(vm, BASE + 2 * i * P, P, PROT_READ if i % 2 else PROT_READ | PROT_WRITE,
             MAP_ANON | MAP_PRIVATE | MAP_FIXED)
    for i in range(npages):
        vm_write(vm, a + i * P, i)
    calls = 0
    real = vf.vm_fault

    def counting(*args):
        nonlocal calls
        calls += 1
        return real(*args)

    vf.vm_fault = counting
    accesses = 0
    try:
        gc.collect()
        t0 = time.process_time()
        while calls < target:
            pmap_remove(vm.vm_pmap, a, a + npages * P)
            for i in range(npages):
                vm_read(vm, a + i * P)
                accesses += 1
                if calls >= target:
                    break
        dt = time.process_time() - t0
    finally:
        vf.vm_fault = real
    vmspace_free(vm)
    return dt, calls, accesses


def bench_faults(target):
    print(f"\n{target} faults: sequential reads of resident pages, pmap emptied each pass")
    dt, calls, acc = fault_loop(target)
    real_prefault = vf.vm_fault_prefault
    vf.vm_fault_prefault = lambda *a, **k: []
    try:
        dtn, callsn, accn = fault_loop(target)
    finally:
        vf.vm_fault_prefault = real_prefault
    print(f"  with prefault   : {calls} faults for {acc} accesses, {dt:.2f} s, "
          f"{dt / calls * 1e6:.1f} us/fault, {dt / acc * 1e6:.2f} us/access")
    print(f"  without prefault: {callsn} faults for {accn} accesses, {dtn:.2f} s, "
          f"{dtn / callsn * 1e6:.1f} us/fault, {dtn / accn * 1e6:.2f} us/access")
    print(f"  accesses per fault {acc / calls:.2f} vs {accn / callsn:.2f}; "
          f"time per access without/with prefault = {(dtn / accn) / (dt / acc):.2f}")


def bench_fault_scaling(sizes, target):
    print(f"\nfault cost vs map size ({target} faults each)")
    print(f"{'entries':>8} {'us/fault':>9}")
    for n in sizes:
        dt, calls, _ = fault_loop(target, extra_entries=n)
        print(f"{n + 1:>8} {dt / calls * 1e6:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        bench_fork([300, 1000])
        bench_faults(10_000)
        bench_fault_scaling([10, 1000], 2000)
    else:
        bench_fork([1000, 3000, 10_000])
        bench_faults(100_000)
        bench_fault_scaling([10, 1000, 10_000], 10_000)
    _ = VM_PROT


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build lessons 01-05 (notebooks/01_the_map.ipynb ... 05_locking.ipynb) from readable source.

Each lesson below is a list of markdown and code cells written as plain Python strings. This
script writes the notebooks with nbformat (deterministic cell ids, no outputs), then runs the
project's tool, tools/strip_widget_outputs.py, which executes each notebook in a fresh kernel
and keeps only the text outputs strict nbval compares (facts: return codes, addresses, tables);
widget cells lose their outputs and get the ``nbval-ignore-output`` tag.

Usage:
    .venv/bin/python tools/make_lessons_01_05.py            # all five, executed and stripped
    .venv/bin/python tools/make_lessons_01_05.py 02 04      # only these
    .venv/bin/python tools/make_lessons_01_05.py --no-execute
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
STRIP = REPO / "tools" / "strip_widget_outputs.py"

MAN = "https://man.freebsd.org/cgi/man.cgi?query={}&sektion={}"
SRC = "https://cgit.freebsd.org/src/tree/sys/vm/{}"


def man(name: str, section: int = 9) -> str:
    """A markdown link to a FreeBSD man page."""
    return f"[{name}({section})]({MAN.format(name, section)})"


def src(func: str, file: str = "vm_map.c") -> str:
    """A markdown link to the FreeBSD source file that holds ``func``."""
    return f"`{func}()` in [sys/vm/{file}]({SRC.format(file)})"


Cell = tuple[str, str]


def md(text: str) -> Cell:
    return ("markdown", dedent(text).strip())


def code(*parts: str) -> Cell:
    """A code cell; each part is dedented on its own, parts are separated by a blank line."""
    return ("code", "\n\n".join(dedent(p).strip() for p in parts))


# Predict-then-reveal with vmlab.exercises: ``as_specs(m)`` turns a lesson's map into the
# entry list ``build(topic, entries=...)`` takes, so the problem is the lesson's own example.
EXERCISES = '''
from vmlab.exercises import build, generate
from vmlab.widgets import Predict

def as_specs(m):
    """The entries of map m as exercise input (start, end, prot, max; anonymous)."""
    return [dict(start=e.start, end=e.end, prot=int(e.protection), max=int(e.max_protection))
            for e in m.entries()]
'''


def try_it(question: str) -> Cell:
    """The prompt above a Predict widget: answer in the box, the animation explains."""
    return md(f"> **Predict.** {dedent(question).strip()}\n>\n"
              "> Type your answer in the box and press **Check** (or **Reveal**): the feedback, "
              "the kernel's steps and the animation appear below it. The printed answer follows "
              "in the next cell.")


def predict(question: str) -> Cell:
    """A predict-then-reveal prompt: the next code cell reveals the answer."""
    return md(f"> **Predict.** {dedent(question).strip()}\n>\n"
              "> Write your answer down, *then* run the next cell.")


# ---------------------------------------------------------------------------------------------
# 01 The map


def lesson_01() -> list[Cell]:
    return [
        md(f"""
        # 01 · The map

        Every process on FreeBSD owns one **`struct vm_map`**: a sorted list of the address
        ranges it may touch, each with its protection and what backs it. `mmap`, `munmap`,
        `mprotect`, `fork` and every page fault start here. This lesson opens one up.

        **What you will learn** (about 25 minutes)

        - how a map is born: `vm_map_init` (FreeBSD 14) and `vm_map_create` (older FreeBSD);
        - what an **entry** is, and why the **header sentinel** stores its bounds *reversed*;
        - how `vm_map_lookup_entry` answers "which entry holds this address?";
        - why the entries also form a **splay tree**, and what **`max_free`** buys.

        References: {man("vm_map")}, {man("vm_map_init")}, {man("vm_map_create")},
        {man("vm_map_lookup")}; source: {src("vm_map_init")}, {src("vm_map_lookup_entry")},
        {src("vm_map_splay")}.
        """),
        md("""
        Every function in these lessons has its FreeBSD name. `vmlab.core` is a model of
        FreeBSD 14's code, so what you see here is what the kernel does.
        """),
        code("""
        from vmlab.core import *
        from vmlab.widgets import Overview
        """, EXERCISES),
        md("""
        ## 1. A map is born

        FreeBSD 14 never allocates a map on its own: the map is a field of the process's
        `struct vmspace`, and `vmspace_alloc()` calls **`vm_map_init(map, pmap, min, max)`** on
        it. Here is a fresh amd64 user address space:
        """),
        code("""
        vm = vmspace_alloc()
        vm.vm_map
        """),
        md("""
        `[0x0, 0x800000000000)` is 128 TiB: the user half of a 48-bit address space. The map is
        empty (`nentries=0`) and unlocked. `vm_map_init` re-initialises any map to an empty one
        over `[min, max)`:
        """),
        code("""
        vm_map_init(vm.vm_map, vm.vm_pmap, 0x1000, 0x100000)
        print(vm.vm_map)
        assert vm_map_min(vm.vm_map) == 0x1000 and vm_map_max(vm.vm_map) == 0x100000
        """),
        md(f"""
        **`vm_map_create(pmap, min, max)`** is the older way: allocate a map *and* initialise
        it. The {man("vm_map_create")} man page still documents it, but **FreeBSD 14's
        `vm_map.c` no longer has it** (it was removed once every map lived in a vmspace or was
        set up with `vm_map_init`). vmlab keeps it because a stand-alone map is handy for
        experiments. We use it for the rest of the lesson: a small map of 1 MiB minus a page.
        """),
        code("""
        m = vm_map_create(None, 0x1000, 0x100000)   # pmap None: no page tables in this lesson
        m
        """),
        md("""
        ## 2. The header sentinel

        The map keeps its entries in a circular list that starts and ends at a special entry,
        the **header**. It is not a mapping: its `eflags` is `MAP_ENTRY_HEADER`, so it never
        looks like a real entry. FreeBSD stores the map's bounds *inside* the header.
        """),
        predict("""
        The map covers `[0x1000, 0x100000)`. What are `m.header.start` and `m.header.end`?
        """),
        code("""
        h = m.header
        print(f"header.start = {h.start:#x}")
        print(f"header.end   = {h.end:#x}")
        assert (h.start, h.end) == (vm_map_max(m), vm_map_min(m))
        """),
        md("""
        **Reversed!** `header.start` holds the map's **max** and `header.end` its **min**
        (since FreeBSD 12; older kernels stored them the natural way round).

        Why? Because the header sits *both* before the first entry and after the last one.
        Every gap in the map is then "the next entry's start minus this entry's end":

        | gap | formula |
        |---|---|
        | before the first entry | `first.start − header.end` = `first.start − min` |
        | between two entries | `next.start − prev.end` |
        | after the last entry | `header.start − last.end` = `max − last.end` |

        One formula, no special cases. `vm_map_min()` and `vm_map_max()` just read the header.
        """),
        md("""
        ## 3. Entries

        Let us map four ranges. `vm_map_insert` (lesson 03) needs the map lock (lesson 05):
        """),
        code("""
        RW, R, RX = VM_PROT.READ | VM_PROT.WRITE, VM_PROT.READ, VM_PROT.READ | VM_PROT.EXECUTE
        vm_map_lock(m)
        for start, end, prot in [(0x10000, 0x14000, RX),   # "text"
                                 (0x20000, 0x22000, R),    # "rodata"
                                 (0x30000, 0x38000, RW),   # "data"
                                 (0x60000, 0x61000, RW)]:  # "heap"
            assert vm_map_insert(m, None, 0, start, end, prot, VM_PROT.ALL, 0) == KERN.SUCCESS
        vm_map_unlock(m)
        m
        """),
        md("""
        Each row is one `struct vm_map_entry`: a half-open range `[start, end)`, its current
        protection `prot`, the most it may ever get (`max`), what `fork` does with it
        (`inherit`), the backing `object` (none yet: anonymous memory gets one at its first
        fault) and the `offset` into it. `size` counts bytes mapped. The picture below draws
        the same map; the grey stretches are the gaps.
        """),
        code("""
        Overview(m, mode="linear", title="our map: 4 entries and the gaps between them")
        """),
        md("""
        ## 4. `vm_map_lookup_entry`: which entry holds an address?

        `vm_map_lookup_entry(map, addr)` returns a pair, as the C function returns a boolean
        and fills `*entry`:

        - `(True, e)`: `e` contains `addr`;
        - `(False, e)`: `addr` is in a gap, and `e` is the entry **just before** it
          (the header if there is none). That is exactly what an insert needs to know.
        """),
        predict("""
        What do these three lookups return? `0x21000` (inside "rodata"), `0x50000` (in the
        gap after "data") and `0x2000` (below every entry).
        """),
        code("""
        vm_map_lock_read(m)
        for addr in (0x21000, 0x50000, 0x2000):
            found, e = vm_map_lookup_entry(m, addr)
            print(f"{addr:#8x}: {found!s:5}  {'header' if e.is_header else e}")
        vm_map_unlock_read(m)
        """),
        code("""
        vm_map_lock_read(m)
        assert vm_map_lookup_entry(m, 0x50000) == (False, m.entries()[2])
        assert vm_map_lookup_entry(m, 0x2000)[1].is_header
        vm_map_unlock_read(m)
        """),
        md("""
        ## 5. The splay tree

        A process can have tens of thousands of entries (a browser easily does). Walking a list
        on every fault would be slow, so the entries are **also** a binary search tree ordered
        by address: a **splay tree**. Each lookup *splays*: it rotates the entry it found up to
        the root, so the next lookup nearby is almost free (faults come in bursts in the same
        region).

        FreeBSD's tree is *threaded*: an entry has no `prev`/`next` pointers any more; a
        missing left (right) child pointer points at the previous (next) entry instead.
        """),
        predict("""
        `m.root` is the entry at the root of the tree. After a lookup of `0x60800` (inside
        "heap") by a thread holding the lock exclusively, which entry is the root?
        """),
        code("""
        vm_map_lock(m)
        print("root before:", m.root)
        found, e = vm_map_lookup_entry(m, 0x60800)
        print("root after: ", m.root, "=", e)
        vm_map_unlock(m)
        assert found and m.root == e.id
        """),
        md("""
        The entry we looked up is now the root. (A thread that holds only a *read* lock may
        still splay when it is the only reader; with several readers it searches without
        rotating, because rotating changes the tree under the other readers' feet.)

        ## 6. `max_free`: finding a hole without looking at every entry

        Each tree node also stores **`max_free`**: the largest gap next to any entry in its
        subtree. A search for *n* free bytes can skip a whole subtree whose `max_free < n`.
        That makes `vm_map_findspace` (lesson 02) O(log n) instead of a scan.
        """),
        code("""
        for e in m.entries():
            print(f"entry #{e.id} [{e.start:#7x}, {e.end:#7x})   max_free = {e.max_free:#x}")
        """),
        predict("""
        The gaps are `0xf000` (below "text"), `0xc000`, `0xe000`, `0x28000` and `0x9f000`
        (after "heap", up to `max`). The root's `max_free` covers the whole tree. What is it?
        """),
        code("""
        root = next(e for e in m.entries() if e.id == m.root)
        print(f"root: entry #{root.id}, max_free = {root.max_free:#x}")
        assert root.max_free == vm_map_max(m) - 0x61000
        """),
        md("""
        The largest gap is the one after the last entry, `0x100000 − 0x61000 = 0x9f000`.

        Now watch a search use it: `vm_map_findspace(m, 0, 0x10000)` asks for "the lowest
        address with 64 KiB free" (lesson 02 has the details).
        """),
        try_it("""
        Where does `vm_map_findspace(m, 0, 0x10000)` land in our map? In the animation,
        subtrees drawn as *pruned* are skipped because their `max_free` is smaller than
        `0x10000`; the entry on the path turns into the root at the end (the splay).
        """),
        code("""
        problem = build("findspace", entries=as_specs(m), start=0, length=0x10000,
                        lo=vm_map_min(m), hi=vm_map_max(m))
        Predict(problem, animation=problem.animation())
        """),
        code("""
        vm_map_lock(m)
        addr = vm_map_findspace(m, 0, 0x10000)
        vm_map_unlock(m)
        print(f"vm_map_findspace(m, 0, 0x10000) = {addr:#x}")
        assert addr == problem.solve()["address"] == 0x38000
        """),
        md("""
        The answer is `0x38000`, the end of "data": the gaps below it (`0xf000`, `0xc000`,
        `0xe000`) are all smaller than 64 KiB. In the animation, change *length* to `0x8000`
        and press Search: which gap wins now?

        One more, on a map you have not seen: a problem generated from a seed (the same seed
        gives the same problem on every machine).
        """),
        code("""
        practice = generate("findspace", seed=11)
        Predict(practice, animation=practice.animation())
        """),
        code("""
        print(practice.explain())
        """),
        md(f"""
        ## Recap

        - A **`vm_map`** is a sorted set of **entries** `[start, end)` with `prot`, `max`,
          `inherit`, `object`, `offset`. FreeBSD 14 initialises it with **`vm_map_init`**
          inside `vmspace_alloc`; **`vm_map_create`** is in the man page but no longer in 14's
          source.
        - The **header** sentinel stores the bounds reversed (`start` = max, `end` = min), so
          every gap is `next.start − prev.end`.
        - **`vm_map_lookup_entry`** returns (TRUE, the entry) or (FALSE, the entry before the
          gap; the header if none), and **splays** that entry to the root.
        - **`max_free`** in every node lets a search skip subtrees that cannot hold the request.

        Next: **02 · Finding space** — `vm_map_findspace` and `vm_map_find`.

        Read more: {man("vm_map")}, {man("vm_map_init")}, {man("vm_map_lookup")};
        {src("_vm_map_init")}, {src("vm_map_lookup_entry")}, {src("vm_map_splay_split")}.
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 02 Finding space


def lesson_02() -> list[Cell]:
    return [
        md(f"""
        # 02 · Finding space

        `mmap(NULL, len, ...)` lets the kernel choose the address. Two functions do the
        choosing: **`vm_map_findspace`** finds a hole, and **`vm_map_find`** decides where to
        start looking, aligns, randomises, then inserts.

        **What you will learn** (about 30 minutes)

        - `vm_map_findspace`: **first fit**, and its failure value (the man page is stale);
        - `vm_map_find` and its **find modes**: `VMFS_ANY_SPACE`, `VMFS_OPTIMAL_SPACE`,
          `VMFS_SUPER_SPACE`, `VMFS_ALIGNED_SPACE(n)`;
        - the **hint** (`addr`) and `max_addr`;
        - **anonymous clustering** (`anon_loc`, the sysctl `vm.cluster_anon`);
        - **ASLR**, with a seed so everyone sees the same "random" addresses.

        References: {man("vm_map_findspace")}, {man("vm_map_find")}; source:
        {src("vm_map_findspace")}, {src("vm_map_find")}, {src("vm_map_alignspace")}.
        """),
        code("""
        from vmlab.core import *
        from vmlab.widgets import Find, Overview
        """, EXERCISES, """
        RW = VM_PROT.READ | VM_PROT.WRITE
        m = vm_map_create(None, 0x1000, 0x1000000)          # [4 KiB, 16 MiB)
        vm_map_lock(m)
        for start, end in [(0x1000, 0x3000), (0x5000, 0x6000), (0x9000, 0xc000),
                           (0xd000, 0x10000), (0x20000, 0x21000)]:
            vm_map_insert(m, None, 0, start, end, RW, VM_PROT.ALL, 0)
        vm_map_unlock(m)
        m
        """),
        md("""
        Five entries with holes of different sizes between them: `0x2000` at `0x3000`,
        `0x3000` at `0x6000`, `0x1000` at `0xc000`, `0x10000` at `0x10000`, and everything
        after `0x21000`.
        """),
        code("""
        Overview(m, mode="linear", title="holes of 0x2000, 0x3000, 0x1000, 0x10000, then the rest")
        """),
        md("""
        ## 1. `vm_map_findspace`: first fit

        `vm_map_findspace(map, start, length)` returns the **lowest** address `≥ start` where
        `length` bytes are free. Not the best fit, not the smallest hole: the first one that
        is big enough. The map must be locked.
        """),
        predict("""
        `vm_map_findspace(m, 0, 0x3000)`: which address?
        """),
        try_it("""
        And `vm_map_findspace(m, 0x7000, 0x3000)`, starting the search at `0x7000`? The
        animation steps through the search on the tree.
        """),
        code("""
        problem = build("findspace", entries=as_specs(m), start=0x7000, length=0x3000,
                        lo=vm_map_min(m), hi=vm_map_max(m))
        Predict(problem, animation=problem.animation())
        """),
        code("""
        vm_map_lock(m)
        a = vm_map_findspace(m, 0, 0x3000)
        b = vm_map_findspace(m, 0x7000, 0x3000)
        vm_map_unlock(m)
        print(f"findspace(0, 0x3000)      = {a:#x}")
        print(f"findspace(0x7000, 0x3000) = {b:#x}")
        assert (a, b) == (0x6000, 0x10000)
        """),
        md("""
        From 0 the first hole (`0x2000` at `0x3000`) is too small, the second (`0x3000` at
        `0x6000`) fits exactly. From `0x7000` we start *inside* that hole, where only `0x2000`
        is left, so the search moves on: `0xc000` holds `0x1000`, too small; `0x10000` fits.
        In the animation you can change *start* to `0` and press Search to see the first case.
        """),
        md(f"""
        ### When nothing fits: the man page is wrong here

        {man("vm_map_findspace")} says the function *"returns 0 and fills `*addr`, or 1 if no
        space"*. That was the old interface. **FreeBSD 14 returns the address itself, and on
        failure `vm_map_max(map) − length + 1`**, an address whose range would end past the
        map. Callers test `addr + length > vm_map_max(map)`.
        """),
        predict("""
        What does `vm_map_findspace(m, 0, 0x2000000)` (32 MiB, more than the whole map) return?
        """),
        code("""
        vm_map_lock(m)
        r = vm_map_findspace(m, 0, 0x2000000)
        vm_map_unlock(m)
        print(f"{r:#x}")
        print("failed:", r + 0x2000000 > vm_map_max(m))
        assert r == (vm_map_max(m) - 0x2000000 + 1) % 2**64
        """),
        md(f"""
        `0x1000000 − 0x2000000 + 1` is negative; addresses are unsigned 64-bit numbers, so it
        wraps around to `0xffffffffff000001`. A caller that tested `r == 1`, as the man page
        suggests, would happily map memory there.

        ## 2. `vm_map_find`: search, then insert

        `vm_map_find(map, object, offset, addr, length, max_addr, find_space, prot, max, cow)`
        takes the lock itself, looks for space **at or above the hint `addr`**, and inserts.
        It returns `(KERN code, address)`.

        - `find_space = VMFS_NO_SPACE`: no search; map exactly at `addr`.
        - `VMFS_ANY_SPACE`: first fit from `addr`.
        - `VMFS_ALIGNED_SPACE(n)`: first fit **aligned to 2ⁿ bytes**.
        - `VMFS_SUPER_SPACE`: aligned for a 2 MiB **superpage**, when that can help.
        - `VMFS_OPTIMAL_SPACE`: like SUPER when the object is "coloured", else like ANY.
        - `max_addr ≠ 0`: the mapping must end at or below it.

        {man("vm_map_find")} documents all of this, `max_addr` and the five modes included.
        Where FreeBSD 14's code differs from the page:

        - the page calls the search "first fit, from `addr` onwards"; with **ASLR** on,
          `vm_map_find` picks a *random* address above the hint, and for anonymous memory it
          starts from `anon_loc` rather than the hint (sections 3 and 4);
        - `mmap` really calls **`vm_map_find_min`**, which no man page mentions: when nothing
          fits above the hint it tries again from a lower bound;
        - the page sends you to {man("vm_map_findspace")} for the search, whose return
          convention is the stale one we just saw.
        """),
        code("""
        def find(addr, length, mode=VMFS.ANY_SPACE, max_addr=0):
            rv, where = vm_map_find(m, None, 0, addr, length, max_addr, mode, RW, VM_PROT.ALL, 0)
            print(f"{rv.name:8} {where:#x}" if rv == KERN.SUCCESS else f"{rv.name}")
            return rv, where

        rv, a = find(0x4000, 0x2000)        # hint 0x4000, ANY
        assert (rv, a) == (KERN.SUCCESS, 0x6000)
        """),
        md("""
        The hint `0x4000` lies inside the first hole, `[0x3000, 0x5000)`, but only `0x1000`
        bytes of it are left above the hint. The next hole, at `0x6000`, holds `0x3000`: first
        fit gives `0x6000`.
        """),
        try_it("""
        Now ask for `0x1000` bytes with hint `0x11000`, aligned to 64 KiB:
        `VMFS_ALIGNED_SPACE(16)`. Where does it go? (The problem's map is ours as it is now,
        with the mapping we just made.)
        """),
        code("""
        problem = build("find", entries=as_specs(m), addr=0x11000, length=0x1000,
                        find_space=VMFS_ALIGNED_SPACE(16), lo=vm_map_min(m), hi=vm_map_max(m))
        Predict(problem, animation=problem.animation())
        """),
        code("""
        rv, a = find(0x11000, 0x1000, VMFS_ALIGNED_SPACE(16))
        assert a % 0x10000 == 0 and a == 0x30000
        """),
        md("""
        The first fit from `0x11000` is `0x11000` itself, which is not 64 KiB aligned. The
        next aligned address, `0x20000`, is taken (an entry starts there), so the search
        continues from its end, `0x21000`, and rounds up again: `0x30000`.

        The same question for a superpage. An amd64 superpage is 2 MiB: one page-directory
        entry maps it, saving 511 page-table entries and TLB misses.
        """),
        predict("""
        `VMFS_SUPER_SPACE` for **8 KiB** with hint `0x40000`. Is the address 2 MiB aligned?
        And for **4 MiB**?
        """),
        code("""
        rv, small = find(0x40000, 0x2000, VMFS.SUPER_SPACE)
        rv, big = find(0x40000, 0x400000, VMFS.SUPER_SPACE)
        print("8 KiB at 2 MiB boundary:", small % 0x200000 == 0)
        print("4 MiB at 2 MiB boundary:", big % 0x200000 == 0)
        assert (small, big) == (0x40000, 0x200000)
        """),
        md("""
        Alignment only happens when it can pay off: `pmap_align_superpage` does nothing for a
        mapping smaller than a superpage. 8 KiB goes at the plain first fit; 4 MiB goes at
        `0x200000`, so its two halves can each become one superpage.

        `max_addr` bounds the end of the mapping:
        """),
        code("""
        rv, a = find(0x600000, 0x2000, max_addr=0x601000)
        assert rv == KERN.NO_SPACE
        """),
        md("""
        Now try `vm_map_find` yourself. Change the mode to `aligned(21)` (2 MiB), `super`, or
        `any`, the hint and the length, and press **Find**. (This widget keeps a nonzero hint;
        with hint `0` clustering starts, the next section.)
        """),
        code("""
        finder = Find(m, 0x700000, 0x3000, "aligned(16)")
        finder
        """),
        code("""
        rv, addr = finder.value
        print(f"KERN_{rv.name} at {addr:#x}")
        assert rv == KERN.SUCCESS and addr % 0x10000 == 0
        """),
        md("""
        ## 3. Anonymous clustering: `anon_loc`

        Most `mmap` calls for anonymous memory (`malloc`'s arenas, thread stacks) pass no hint.
        If each one took the lowest hole, small holes would fill with unrelated mappings and
        the address space would fragment. So FreeBSD **clusters** them: the map remembers
        where the last hint-less anonymous mapping ended, **`map->anon_loc`**, and starts the
        next search there. The sysctl **`vm.cluster_anon`** controls it: 0 never, 1 (default)
        only without a hint, 2 always.
        """),
        code("""
        c = vm_map_create(None, 0x1000, 0x1000000)
        def anon(length):
            rv, a = vm_map_find(c, None, 0, 0, length, 0, VMFS.ANY_SPACE, RW, VM_PROT.ALL, 0)
            assert rv == KERN.SUCCESS
            return a

        for _ in range(3):
            a = anon(0x2000)
            print(f"mapped at {a:#x}, anon_loc is now {c.anon_loc:#x}")
        """),
        md("""
        The first call found `anon_loc == 0` (nothing to cluster after), did a plain first fit,
        and set `anon_loc`. The next ones started from `anon_loc`. Now free the first mapping.
        """),
        predict("""
        After `vm_map_remove(c, 0x1000, 0x3000)` leaves a `0x2000` hole at `0x1000`, where does
        the next hint-less `0x2000`-byte mapping go?
        """),
        code("""
        vm_map_remove(c, 0x1000, 0x3000)
        a = anon(0x2000)
        print(f"mapped at {a:#x} (the hole at 0x1000 stays empty)")
        assert a == 0x7000
        """),
        md("""
        Clustering keeps going forward. With `vm.cluster_anon = 0` the same request takes
        the first fit:
        """),
        code("""
        old = sysctl("vm.cluster_anon", 0)
        a = anon(0x2000)
        sysctl("vm.cluster_anon", old)                    # put the default back
        print(f"without clustering: {a:#x}")
        assert a == 0x1000
        """),
        md("""
        ## 4. ASLR

        With address-space layout randomisation (`MAP_ASLR` in the map's flags, set by `exec`
        when `kern.elf64.aslr.enable` is on), the first try of `vm_map_find` searches for
        `length` **plus a random gap** and moves the start by a random number of pages
        (up to 4096 pages, 16 MiB, on a 64-bit map). The kernel uses `arc4random()`; vmlab uses
        a seeded generator, so a seed gives the same addresses on every machine.
        """),
        code("""
        def aslr_map(seed):
            a = vm_map_create(None, 0x200000, 1 << 47)
            vm_map_lock(a)
            vm_map_modflags(a, VM_MAP_FLAGS.ASLR, 0)
            vm_map_unlock(a)
            vm_map_aslr_seed(a, seed)
            return a

        def place(a):
            rv, addr = vm_map_find(a, None, 0, 0x200000, 0x1000, 0, VMFS.ANY_SPACE, RW,
                                   VM_PROT.ALL, 0)
            return addr

        for seed in (7, 7, 8):
            print(f"seed {seed}: {place(aslr_map(seed)):#x}")
        """),
        code("""
        assert place(aslr_map(7)) == place(aslr_map(7)) != place(aslr_map(8))
        """),
        md("""
        Same seed, same address; another seed, another address. Each is a page-aligned shift of
        the first fit (`0x200000`) by less than 16 MiB. If the randomised try fails (the map is
        too full), `vm_map_find` simply tries again with plain first fit.

        ## Recap

        - **`vm_map_findspace`** is first fit from `start`, pruning the splay tree with
          `max_free`. On failure FreeBSD 14 returns `vm_map_max − length + 1`; the man page's
          "returns 1" describes the old interface.
        - **`vm_map_find`** = lock + search from the hint + align + insert. Modes: ANY (first
          fit), `ALIGNED_SPACE(n)` (2ⁿ), SUPER (2 MiB, only for mappings ≥ 2 MiB), OPTIMAL
          (SUPER for coloured objects, else ANY). `max_addr` bounds the end.
        - Hint-less anonymous mappings **cluster** after `anon_loc` (`vm.cluster_anon`).
        - **ASLR** searches for extra room and shifts by a random number of pages.

        Next: **03 · Insert, clip, merge, delete**.
        """),
        md(f"""
        Read more: {man("vm_map_findspace")}, {man("vm_map_find")}; {src("vm_map_findspace")},
        {src("vm_map_find")}, {src("vm_map_alignspace")}, `pmap_align_superpage()` in
        [sys/amd64/amd64/pmap.c](https://cgit.freebsd.org/src/tree/sys/amd64/amd64/pmap.c).
        """),
    ]


# A small helper the lessons define in a cell: replay a recorded trace in a map view.
REPLAY = '''
import ipywidgets as W
from vmlab.widgets import Embedded, MapView, Player

def replay(trace, title="the map"):
    """Step through a recorded trace (▶ / ◀) on a picture of the map."""
    view = MapView(title=title)
    player = Player(trace, [view])
    view.embedded = Embedded(view.figure)
    return W.VBox([player, view.embedded.widget], layout=W.Layout(max_width="880px"))

def show(m):
    """The map's entries as text (one line each)."""
    for e in m.entries():
        print(e)
'''


# ---------------------------------------------------------------------------------------------
# 03 Insert, clip, merge, delete


def lesson_03() -> list[Cell]:
    return [
        md(f"""
        # 03 · Insert, clip, merge, delete

        Every change to a map is made of four moves: **insert** a new entry, **clip** an entry
        in two, **merge** two neighbours back into one, **delete** a range. `mmap`, `munmap`,
        `mprotect`, `madvise`, `mlock` are all built from them.

        **What you will learn** (about 30 minutes)

        - `vm_map_insert`: its checks and **return codes, in the order FreeBSD tests them**;
        - the **extend path**: why a new anonymous mapping often creates no entry at all;
        - **clipping**, and what happens to the object **offset** of each piece;
        - **merging** (`vm_map_try_merge_entries`): when two entries become one;
        - `vm_map_delete` and `vm_map_remove`.

        References: {man("vm_map_insert")}, {man("vm_map_delete")}, {man("vm_map_remove")},
        {man("vm_map_simplify_entry")} (the older name of merging); source:
        {src("vm_map_insert")}, {src("vm_map_clip_start")}, {src("vm_map_try_merge_entries")},
        {src("vm_map_delete")}.
        """),
        code("""
        from vmlab.core import *
        from vmlab.widgets import Insert
        """, REPLAY, EXERCISES),
        md("""
        `replay(trace)` and `show(m)` are two small helpers for this lesson: the first steps
        through what a call did, the second prints the entries.

        ## 1. `vm_map_insert` and its return codes

        `vm_map_insert(map, object, offset, start, end, prot, max, cow)` maps `[start, end)`
        of `object` (`None` for anonymous memory). The map must be locked. It checks, **in this
        order**:

        | # | condition | returns |
        |---|---|---|
        | 1 | `start == end`, or the range is outside the map | `KERN_INVALID_ADDRESS` |
        | 2 | the map has `MAP_WXORX` and `prot` has both W and X | `KERN_PROTECTION_FAILURE` |
        | 3 | `start` is inside an existing entry | `KERN_NO_SPACE` |
        | 4 | the next entry starts before `end` | `KERN_NO_SPACE` |
        | 5 | `MAP_CREATE_GUARD` with an object or `max ≠ NONE` | `KERN_INVALID_ARGUMENT` |
        | 6 | swap cannot be reserved for a writable private mapping | `KERN_RESOURCE_SHORTAGE` |

        The man page lists only the first and the `NO_SPACE` cases (and still mentions the
        `Giant` lock): W^X, guards and swap accounting came later.
        """),
        code("""
        RW, R, RWX = VM_PROT.RW, VM_PROT.READ, VM_PROT.ALL
        m = vm_map_create(None, 0x1000, 0x100000)
        vm_map_lock(m)
        vm_map_insert(m, None, 0, 0x40000, 0x44000, R, VM_PROT.ALL, 0)    # one entry to hit
        vm_map_modflags(m, VM_MAP_FLAGS.WXORX, 0)                          # W^X on this map
        tries = {
            "empty range":            (0x50000, 0x50000, RW, 0),
            "beyond the map's max":   (0xff000, 0x101000, RW, 0),
            "rwx on a W^X map":       (0x50000, 0x51000, RWX, 0),
            "starts inside an entry": (0x42000, 0x46000, RW, 0),
            "runs into an entry":     (0x3f000, 0x41000, RW, 0),
            "guard with max rw-":     (0x50000, 0x51000, VM_PROT.NONE, MAP.CREATE_GUARD),
        }
        for what, (s, e, prot, cow) in tries.items():
            max_ = RW if cow else VM_PROT.ALL
            rv = vm_map_insert(m, None, 0, s, e, prot, max_, cow)
            print(f"{what:24} -> KERN_{rv.name}")
        vm_map_unlock(m)
        """),
        try_it("""
        On this W^X map, an **rwx** insert of `[0x42000, 0x46000)`, which *also* starts inside
        the existing entry. Two rules are broken. Which code comes back, and which entries are
        left?
        """),
        code("""
        problem = build("insert", entries=[dict(start=0x40000, end=0x44000, prot=R, max=RWX)],
                        start=0x42000, end=0x46000, prot=RWX, max=RWX, wxorx=True,
                        lo=vm_map_min(m), hi=vm_map_max(m))
        Predict(problem, animation=problem.animation())
        """),
        code("""
        vm_map_lock(m)
        rv = vm_map_insert(m, None, 0, 0x42000, 0x46000, RWX, VM_PROT.ALL, 0)
        vm_map_unlock(m)
        print(f"KERN_{rv.name}")
        assert rv == KERN.PROTECTION_FAILURE
        """),
        md("""
        The first failing check wins, and W^X (rule 2) is tested before the overlap (rule 3).
        Nothing changed in the map: a failed insert leaves it exactly as it was.

        One more rule is not a return code at all: `prot` must be within `max`. FreeBSD only
        *asserts* it (a `KASSERT`: a kernel built with INVARIANTS panics). vmlab raises an
        exception instead:
        """),
        code("""
        vm_map_lock(m)
        try:
            vm_map_insert(m, None, 0, 0x50000, 0x51000, RW, R, 0)     # prot rw- > max r--
        except ValueError as e:
            print("KASSERT:", e)
        vm_map_unlock(m)
        """),
        md("""
        ## 2. The extend path: growing instead of inserting

        A fresh map for the rest of the lesson. We map 8 KiB of anonymous memory, then 8 KiB
        more right after it, with the same protection.
        """),
        code("""
        m = vm_map_create(None, 0x1000, 0x40000)                  # small, to see it well
        vm_map_lock(m)
        vm_map_insert(m, None, 0, 0x10000, 0x12000, RW, VM_PROT.ALL, 0)
        vm_map_unlock(m)
        """),
        try_it("""
        After inserting `[0x12000, 0x14000)` (anonymous, `rw-`, max `rwx`) next to
        `[0x10000, 0x12000)`, how many entries does the map have, and what are their ranges?
        """),
        code("""
        problem = build("insert", entries=as_specs(m), start=0x12000, end=0x14000, prot=RW,
                        max=RWX, lo=vm_map_min(m), hi=vm_map_max(m))
        Predict(problem, animation=problem.animation())
        """),
        code("""
        vm_map_lock(m)
        rv = vm_map_insert(m, None, 0, 0x12000, 0x14000, RW, VM_PROT.ALL, 0)
        vm_map_unlock(m)
        print(f"KERN_{rv.name}, nentries = {m.nentries}")
        show(m)
        assert m.nentries == 1
        """),
        md("""
        **One.** When the new range is anonymous (no object), starts exactly where the previous
        entry ends, and has the same flags, protections, inheritance and credentials, FreeBSD
        does not create an entry: it **extends** the previous one (`vm_map_entry_resize`).
        That is why a heap grown with many small `mmap` calls stays one entry.

        Once more, for `[0x14000, 0x16000)`, on the lesson's map this time. Step with ▶.
        """),
        code("""
        grow = Insert(m, 0x14000, 0x16000, "rw-", "rwx")
        grow
        """),
        code("""
        print(f"KERN_{grow.value.name}")
        show(m)
        assert m.nentries == 1 and m.entries()[0].end == 0x16000
        """),
        md("""
        ## 3. Clipping

        To change *part* of an entry, FreeBSD first cuts it so the part becomes an entry of its
        own: `vm_map_clip_start(entry, a)` splits off `[entry.start, a)`, and
        `vm_map_clip_end(entry, a)` splits off `[a, entry.end)`.

        Both pieces must still map the right bytes of the same object, so each piece's
        **offset** says where in the object it starts: a piece that starts `d` bytes later has
        an offset `d` bytes larger. (An anonymous entry that has no object yet gets one first,
        so both pieces share it.)

        Let us delete the second page of our entry: `vm_map_delete` clips at `0x11000` and at
        `0x12000`, then removes the middle piece.
        """),
        predict("""
        After `vm_map_delete(m, 0x11000, 0x12000)`, two entries remain. What is the
        **offset** of the second one, `[0x12000, 0x16000)`?
        """),
        code("""
        with recording(m) as tr:
            vm_map_lock(m)
            rv = vm_map_delete(m, 0x11000, 0x12000)
            vm_map_unlock(m)
        print(f"KERN_{rv.name}")
        show(m)
        left, right = m.entries()
        assert left.object is right.object and (left.offset, right.offset) == (0, 0x2000)
        """),
        md("""
        `0x2000`: the piece starts `0x2000` bytes after the original start, so it maps the
        object from byte `0x2000` on. The hole at `[0x11000, 0x12000)` maps nothing, and the
        object's page at offset `0x1000` is simply no longer mapped here.

        Step through the delete: the lock, the lookup, the two clips, the unlink.
        """),
        code("""
        replay(tr, "vm_map_delete(m, 0x11000, 0x12000)")
        """),
        md("""
        ## 4. Merging

        The opposite of a clip: **`vm_map_try_merge_entries(map, prev, entry)`** glues two
        neighbours into one when nothing distinguishes them:

        - `prev.end == entry.start`;
        - the same object, and the offsets continue (`prev.offset + prev size == entry.offset`),
          or no object at all;
        - equal `eflags`, `protection`, `max_protection`, `inheritance`, `wired_count` and
          credentials, and no "never merge" flag (stacks, submaps, executables' text).

        FreeBSD calls it after insert, protect, inherit, madvise and wiring. (Before 2019 the
        same job was `vm_map_simplify_entry`, which its man page still describes.)
        """),
        predict("""
        Map the hole again: `vm_map_insert(m, None, 0, 0x11000, 0x12000, rw-, rwx, 0)`.
        How many entries afterwards: 3, 2 or 1?
        """),
        code("""
        heal = Insert(m, 0x11000, 0x12000, "rw-", "rwx")
        heal
        """),
        code("""
        print(f"KERN_{heal.value.name}")
        show(m)
        assert m.nentries == 1 and m.entries()[0].offset == 0
        """),
        md("""
        **One** again, by the extend path. The new range starts where the left piece ends, so
        `vm_map_insert` asks `vm_object_coalesce` whether the left piece's object can back it
        too, at the next offset (`0x1000`). Two entries map the object now, but it is still
        marked `OBJ_ONEMAPPING` (clipping does not clear it: each piece maps a different part
        of it), so the answer is yes: the stale page at offset `0x1000` is discarded, so the
        new memory reads as zeros. Then:

        - **extend**: the left piece simply grows to end at `0x12000`;
        - **merge**: `try_merge` joins it with the right piece, whose offset `0x2000` continues
          exactly.

        No new entry is made. Step through the animation above: one `extend`, one `merge`.

        ## 5. `vm_map_delete` and `vm_map_remove`

        `vm_map_delete(map, start, end)` removes everything in the range. **Holes are fine**:
        deleting something that is not mapped is not an error. The caller must hold the lock;
        **`vm_map_remove`** is the same thing, but takes the lock itself (and clamps the range
        to the map). The removed entries are freed at the next unlock.
        """),
        code("""
        vm_map_lock(m)
        vm_map_insert(m, None, 0, 0x30000, 0x34000, R, VM_PROT.ALL, 0)
        vm_map_unlock(m)
        show(m)
        """),
        predict("""
        `vm_map_remove(m, 0x15000, 0x32000)` covers the end of the first entry, a hole, and the
        start of the second. What does it return, and what is left?
        """),
        code("""
        rv = vm_map_remove(m, 0x15000, 0x32000)
        print(f"KERN_{rv.name}")
        show(m)
        assert rv == KERN.SUCCESS and [(e.start, e.end) for e in m] == [(0x10000, 0x15000),
                                                                       (0x32000, 0x34000)]
        """),
        md("""
        Both ends were clipped, the hole in between did not matter. And calling
        `vm_map_delete` without the lock is a kernel assertion failure:
        """),
        code("""
        try:
            vm_map_delete(m, 0x10000, 0x11000)
        except LockNotHeld as e:
            print("KASSERT:", e)
        """),
        md(f"""
        ## Recap

        - **`vm_map_insert`** checks in order: bad range → `KERN_INVALID_ADDRESS`; W^X →
          `KERN_PROTECTION_FAILURE`; overlap → `KERN_NO_SPACE`; bad guard →
          `KERN_INVALID_ARGUMENT`; no swap → `KERN_RESOURCE_SHORTAGE`. `prot ⊆ max` is only
          asserted. The man page lists just two of these.
        - The **extend path** grows the previous anonymous entry instead of adding one.
        - **Clipping** splits an entry; the piece that starts `d` bytes later has `offset + d`.
        - **Merging** (`vm_map_try_merge_entries`) joins neighbours that are identical and
          continue each other's object; it runs after every change.
        - **`vm_map_delete`** (lock held) / **`vm_map_remove`** (takes the lock) clip at both
          ends, unlink everything between, and ignore holes.

        Next: **04 · Protection**. Read more: {man("vm_map_insert")}, {man("vm_map_delete")},
        {man("vm_map_remove")}; {src("vm_map_insert")}, {src("vm_map_clip_start")},
        {src("vm_map_clip_end")}, {src("vm_map_try_merge_entries")}, {src("vm_map_delete")}.
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 04 Protection


def lesson_04() -> list[Cell]:
    return [
        md(f"""
        # 04 · Protection

        Each entry carries two protections: **`protection`**, what is allowed now, and
        **`max_protection`**, the most it may ever be allowed. `mprotect(2)` changes the first
        through **`vm_map_protect`**; nobody can raise the second.

        **What you will learn** (about 30 minutes)

        - `vm_map_protect` and its flags `VM_MAP_PROTECT_SET_PROT` / `_SET_MAXPROT`;
        - why **max_protection only goes down**;
        - **validate before apply**: a failed call changes nothing at all;
        - `KERN_OUT_OF_BOUNDS` and **W^X** (`MAP_WXORX`);
        - `vm_map_check_protection`;
        - the system-call view: **`mprotect`** and **EACCES**.

        References: {man("vm_map_protect")}, {man("vm_map_check_protection")},
        {man("mprotect", 2)}; source: {src("vm_map_protect")}, {src("vm_map_check_protection")},
        {src("kern_mprotect", "vm_mmap.c")}.

        **The man page is out of date.** {man("vm_map_protect")} (2003) shows
        `vm_map_protect(map, start, end, new_prot, set_max)` with a boolean `set_max`.
        FreeBSD 13 and 14 have `vm_map_protect(map, start, end, new_prot, new_maxprot, flags)`:
        `flags` says which of the two to set, and a new return code, `KERN_OUT_OF_BOUNDS`,
        exists. We use the real, FreeBSD 14 form.
        """),
        code("""
        from vmlab.core import *
        from vmlab.widgets import Overview
        """, REPLAY, EXERCISES),
        md("""
        `replay(trace)` and `show(m)` are the helpers from lesson 03. Our map has two entries:
        """),
        code('''
        SET_PROT, SET_MAX = VM_MAP_PROTECT.SET_PROT, VM_MAP_PROTECT.SET_MAXPROT
        R, RW, RX = VM_PROT.READ, VM_PROT.RW, VM_PROT.READ | VM_PROT.EXECUTE

        m = vm_map_create(None, 0x1000, 0x100000)
        vm_map_lock(m)
        vm_map_insert(m, None, 0, 0x10000, 0x18000, RW, VM_PROT.ALL, 0)   # "heap"  rw-/rwx
        vm_map_insert(m, None, 0, 0x30000, 0x32000, RX, RX, 0)            # "text"  r-x/r-x
        vm_map_unlock(m)
        show(m)
        '''),
        md("""
        The first entry may become anything (`max rwx`); the second can never be written
        (`max r-x`), like a program's code mapped from a read-only file.

        ## 1. Protecting part of an entry
        """),
        try_it("""
        `vm_map_protect(m, 0x12000, 0x14000, r--, 0, SET_PROT)` makes two pages of the heap
        read-only. What does it return, and what are the prot/max of the entry holding
        `0x13000` afterwards? Then, before the next cell: how many entries does the map have?
        The animation replays the call on our map, step by step.
        """),
        code("""
        problem = build("protect", entries=as_specs(m), start=0x12000, end=0x14000,
                        new_prot=R, new_maxprot=0, flags=SET_PROT, query=0x13000,
                        lo=vm_map_min(m), hi=vm_map_max(m))
        with recording(m) as tr:
            rv = vm_map_protect(m, 0x12000, 0x14000, R, 0, SET_PROT)
        animation = replay(tr, "vm_map_protect(m, 0x12000, 0x14000, r--, 0, SET_PROT)")
        Predict(problem, animation=animation)
        """),
        code("""
        print(f"KERN_{rv.name}, nentries = {m.nentries}")
        show(m)
        assert m.nentries == 4 and rv == problem.solve()["return value"]
        """),
        md("""
        Four: the heap was **clipped** at both ends of the range (lesson 03), and only the
        middle piece changed.
        """),
        md("""
        Giving the pages back their `rw-` makes the three pieces identical again, so they
        **merge** back into one entry:
        """),
        code("""
        rv = vm_map_protect(m, 0x12000, 0x14000, RW, 0, SET_PROT)
        print(f"KERN_{rv.name}, nentries = {m.nentries}")
        assert m.nentries == 2
        """),
        md("""
        ## 2. max_protection only goes down

        With `SET_MAXPROT`, `max_protection` becomes `new_maxprot` and the current protection
        is cut down to fit (`prot &= new max`). The rule checked for every entry *before*
        anything changes: the new `prot` and the new `max` must both lie within the entry's
        **current** `max`. So `max` can be lowered, never raised.
        """),
        code("""
        rv = vm_map_protect(m, 0x10000, 0x18000, 0, R, SET_MAX)          # max rwx -> r--
        print(f"lower max to r--:   KERN_{rv.name}")
        show(m)
        """),
        predict("""
        Now try to undo it: first `SET_PROT rw-`, then `SET_MAXPROT rwx`. What does each
        return?
        """),
        code("""
        a = vm_map_protect(m, 0x10000, 0x18000, RW, 0, SET_PROT)
        b = vm_map_protect(m, 0x10000, 0x18000, 0, VM_PROT.ALL, SET_MAX)
        print(f"SET_PROT rw-:    KERN_{a.name}")
        print(f"SET_MAXPROT rwx: KERN_{b.name}")
        assert a == b == KERN.PROTECTION_FAILURE
        """),
        md("""
        Both fail. This is what makes dropping a right permanent: a program that maps its
        secrets with `max r--` knows that no later bug can make them writable.

        ## 3. Validate before apply

        A range can span several entries. `vm_map_protect` walks the whole range once to
        **check** every entry, and only then walks it again to **change** them. A failure in
        the last entry therefore leaves the first one untouched: not even clipped.
        """),
        code("""
        p = vm_map_create(None, 0x1000, 0x100000)
        vm_map_lock(p)
        vm_map_insert(p, None, 0, 0x40000, 0x42000, R, VM_PROT.ALL, 0)   # r--/rwx
        vm_map_insert(p, None, 0, 0x42000, 0x44000, R, R, 0)             # r--/r--
        vm_map_unlock(p)
        show(p)
        """),
        try_it("""
        `vm_map_protect(p, 0x41000, 0x44000, rw-, 0, SET_PROT)`: the first entry *may* become
        writable, the second may not. What is returned, and what are the prot/max of the first
        entry (at `0x40000`) afterwards? Is it clipped?
        """),
        code("""
        problem = build("protect", entries=as_specs(p), start=0x41000, end=0x44000,
                        new_prot=RW, new_maxprot=0, flags=SET_PROT, query=0x40000,
                        lo=vm_map_min(p), hi=vm_map_max(p))
        with recording(p) as tr:
            rv = vm_map_protect(p, 0x41000, 0x44000, RW, 0, SET_PROT)
        animation = replay(tr, "vm_map_protect(p, 0x41000, 0x44000, rw-, 0, SET_PROT)")
        Predict(problem, animation=animation)
        """),
        code("""
        print(f"KERN_{rv.name}")
        show(p)
        assert rv == KERN.PROTECTION_FAILURE and p.nentries == 2
        assert p.entries()[0].protection == R
        """),
        md("""
        `KERN_PROTECTION_FAILURE`, and the map is exactly as before: no clip at `0x41000`, no
        `rw-` anywhere. (Older kernels checked and changed in one loop and could leave a range
        half done.) Holes, on the other hand, are skipped silently: protecting a range with
        unmapped parts succeeds for the mapped parts.

        ## 4. `KERN_OUT_OF_BOUNDS` and W^X

        Two checks come before any entry is looked at:

        - with **both** flags, `new_prot` must lie within `new_maxprot`, else
          **`KERN_OUT_OF_BOUNDS`** (new in FreeBSD 13; not in the man page);
        - on a map with **`MAP_WXORX`** (W^X: "writable or executable, never both"), a
          `SET_PROT` with both W and X returns **`KERN_PROTECTION_FAILURE`**.
        """),
        code("""
        rv = vm_map_protect(p, 0x40000, 0x42000, VM_PROT.ALL, R, SET_PROT | SET_MAX)
        print(f"prot rwx with max r--:  KERN_{rv.name}")
        assert rv == KERN.OUT_OF_BOUNDS

        w = vm_map_create(None, 0x1000, 0x100000)
        vm_map_lock(w)
        vm_map_modflags(w, VM_MAP_FLAGS.WXORX, 0)
        vm_map_insert(w, None, 0, 0x10000, 0x11000, RW, VM_PROT.ALL, 0)
        vm_map_unlock(w)
        rv = vm_map_protect(w, 0x10000, 0x11000, VM_PROT.ALL, 0, SET_PROT)
        print(f"rwx on a W^X map:       KERN_{rv.name}")
        assert rv == KERN.PROTECTION_FAILURE
        """),
        md("""
        ## 5. `vm_map_check_protection`

        `vm_map_check_protection(map, start, end, prot)` answers: is **every byte** of
        `[start, end)` mapped, **without holes**, with at least `prot`? It needs the map lock
        (a read lock is enough). With `VM_PROT_NONE` it is just "is the range fully mapped?".
        """),
        code("""
        vm_map_lock_read(m)
        checks = {
            "heap readable":        (0x10000, 0x18000, R),
            "heap writable":        (0x10000, 0x18000, RW),
            "text executable":      (0x30000, 0x32000, VM_PROT.EXECUTE),
            "heap..text readable":  (0x10000, 0x32000, R),
            "heap..text mapped":    (0x10000, 0x32000, VM_PROT.NONE),
        }
        for what, (s, e, prot) in checks.items():
            print(f"{what:20} {vm_map_check_protection(m, s, e, prot)}")
        vm_map_unlock_read(m)
        """),
        md("""
        The heap lost `W` for good in section 2. The last two fail because of the hole
        `[0x18000, 0x30000)`. Here is the map with its protections:
        """),
        code("""
        Overview(m, mode="linear", title="m: heap (now r--/r--), a hole, text (r-x)")
        """),
        md("""
        ## 6. The system call: `mprotect` and EACCES

        A process calls `mprotect(addr, len, prot)`. `kern_mprotect` rounds the range to whole
        pages, calls `vm_map_protect(map, start, end, prot, 0, VM_MAP_PROTECT_SET_PROT)` and
        turns the KERN code into an errno: `KERN_PROTECTION_FAILURE` → **EACCES**,
        `KERN_RESOURCE_SHORTAGE` → ENOMEM, `KERN_OUT_OF_BOUNDS` → ENOTSUP, anything else
        → EINVAL. vmlab's `mprotect(vm, addr, len, prot)` does the same on a process's
        address space. `PROT_MAX(...)` in `mmap`'s `prot` (FreeBSD 13+) sets the max.
        """),
        code("""
        vm = vmspace_alloc()
        err, secret = mmap(vm, 0, 0x2000, PROT_READ | PROT_MAX(PROT_READ), MAP_ANON | MAP_PRIVATE)
        err, buf = mmap(vm, 0, 0x2000, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
        print(f"secret at {secret:#x}, buf at {buf:#x}")
        """),
        predict("""
        `mprotect(vm, secret, 0x2000, PROT_READ | PROT_WRITE)` and
        `mprotect(vm, buf + 0x1000, 0x1000, PROT_READ)`: which errno does each return?
        (0 means success; EACCES is 13.)
        """),
        code("""
        e1 = mprotect(vm, secret, 0x2000, PROT_READ | PROT_WRITE)
        e2 = mprotect(vm, buf + 0x1000, 0x1000, PROT_READ)
        print(f"write access to secret: {e1} (EACCES = {EACCES})")
        print(f"read-only second page of buf: {e2}")
        assert (e1, e2) == (EACCES, 0)
        """),
        md("""
        And an `mprotect` on memory that is not mapped at all? `vm_map_protect` skips holes,
        so FreeBSD returns **0**. (Linux returns ENOMEM here: code that relies on that error
        is not portable.)
        """),
        code("""
        print(mprotect(vm, 0x7000_0000_0000, 0x1000, PROT_READ))
        """),
        md(f"""
        ## Recap

        - **`vm_map_protect(map, start, end, new_prot, new_maxprot, flags)`** (FreeBSD 13+;
          the man page still shows the old `set_max` form) clips, changes and re-merges.
        - **max_protection only goes down**: every new prot and max must fit the entry's
          current max, else `KERN_PROTECTION_FAILURE`.
        - **Validate before apply**: one failing entry and nothing changes.
        - `SET_PROT|SET_MAXPROT` with `prot ⊄ max` → `KERN_OUT_OF_BOUNDS`; W+X on a
          `MAP_WXORX` map → `KERN_PROTECTION_FAILURE`.
        - **`vm_map_check_protection`**: fully mapped, no holes, every entry has the rights.
        - **`mprotect`** maps `KERN_PROTECTION_FAILURE` to **EACCES**; holes are not an error.

        Next: **05 · Locking**. Read more: {man("vm_map_protect")},
        {man("vm_map_check_protection")}, {man("mprotect", 2)}; {src("vm_map_protect")},
        {src("vm_map_check_protection")}, {src("kern_mprotect", "vm_mmap.c")}.
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 05 Locking


def lesson_05() -> list[Cell]:
    return [
        md(f"""
        # 05 · Locking

        Many threads of one process share one map. One thread may be in `mmap` while three
        others take page faults. The map's lock decides who may look and who may change.

        **What you will learn** (about 25 minutes)

        - the **`vm_map_lock` family**: exclusive and shared (read) locks, `trylock`,
          upgrade and downgrade;
        - the map **timestamp**, and how a thread that let go of the lock knows whether the
          map changed meanwhile;
        - the **failed upgrade**, after which the caller holds **no lock at all**;
        - why a **page fault takes only the read lock**.

        References: {man("vm_map_lock")}; source: `_vm_map_lock()`, `_vm_map_lock_upgrade()`,
        `vm_map_lookup()` in [sys/vm/vm_map.c]({SRC.format("vm_map.c")}), `vm_fault()` in
        [sys/vm/vm_fault.c]({SRC.format("vm_fault.c")}).

        **Where the man page differs from FreeBSD 14.** {man("vm_map_lock")} (2003) calls them
        "macros" around sleep locks and says `vm_map_lock_upgrade` "attempts to atomically
        upgrade"; it does not say that **a failed upgrade drops the read lock**, and it
        declares `vm_map_lock_downgrade` as returning `int` (it returns nothing). In 14 a user
        map's lock is an `sx` lock (a mutex for the kernel's own maps).
        """),
        code("""
        from vmlab.core import *
        from vmlab.widgets import LockTimeline

        m = vm_map_create(None, 0x1000, 0x100000)
        m
        """),
        md("""
        ## 1. Writers alone, readers together

        | call | mode | shared with | `map.timestamp` |
        |---|---|---|---|
        | `vm_map_lock` / `vm_map_unlock` | exclusive | nobody | +1 on lock |
        | `vm_map_lock_read` / `vm_map_unlock_read` | shared | other readers | unchanged |
        | `vm_map_trylock` | exclusive, or 0 at once | nobody | +1 on success |
        | `vm_map_trylock_read` | shared, or 0 at once | other readers | unchanged |
        | `vm_map_lock_upgrade` | shared → exclusive | nobody | +1 on success |
        | `vm_map_lock_downgrade` | exclusive → shared | other readers | unchanged |

        Whoever changes the map (insert, delete, protect) holds it **exclusively**. Whoever
        only reads it (a lookup) can share it.
        """),
        predict("""
        The timestamp starts at 0. What is it after: lock, unlock, lock_read, unlock_read,
        lock, unlock?
        """),
        code("""
        vm_map_lock(m);      vm_map_unlock(m)
        vm_map_lock_read(m); vm_map_unlock_read(m)
        vm_map_lock(m);      vm_map_unlock(m)
        print("timestamp =", m.timestamp)
        assert m.timestamp == 2
        """),
        md("""
        **2**: only exclusive acquisitions count, because only they can change the map. The
        timestamp is a cheap "has anything possibly changed?" counter.

        vmlab runs one Python thread, so kernel threads are **names**: lock calls take
        `thread="A"`, and `with as_thread("B"): ...` runs any code as thread B. A call that
        would make the thread sleep in the kernel raises `LockWouldBlock` instead and changes
        nothing.
        """),
        code("""
        vm_map_lock_read(m, thread="A")
        vm_map_lock_read(m, thread="B")
        print(m.lock)
        try:
            vm_map_lock(m, thread="C")
        except LockWouldBlock as e:
            print("C:", e)
        print("C's trylock returns", vm_map_trylock(m, thread="C"))
        vm_map_unlock_read(m, thread="A")
        vm_map_unlock_read(m, thread="B")
        """),
        md("""
        Two readers share the lock; writer C would sleep until both are gone. `vm_map_trylock`
        is for code that must not sleep: it returns 0 and the caller does something else.

        The same story as a timeline: each row is a thread, each column one call. Step through
        it, then edit the script (for example add `C:lock` at the end) and press Run.
        """),
        code("""
        LockTimeline(m, "A:lock_read, B:lock_read, C:trylock, A:unlock_read, B:unlock_read, "
                        "C:lock, C:unlock")
        """),
        md("""
        ## 2. The timestamp: "did the map change while I slept?"

        Kernel code often has to drop the lock (to sleep on a busy page, to wait for I/O) and
        take it again. Everything it learned about the map may now be stale. So it saves the
        timestamp before unlocking, and compares after relocking:
        """),
        code("""
        vm_map_lock(m, thread="A")
        saved = m.timestamp
        vm_map_unlock(m, thread="A")                # A sleeps ...

        with as_thread("B"):                        # ... while B changes the map
            vm_map_lock(m)
            vm_map_insert(m, None, 0, 0x10000, 0x12000, VM_PROT.RW, VM_PROT.ALL, 0)
            vm_map_unlock(m)

        vm_map_lock(m, thread="A")                  # A wakes up and relocks
        print(f"saved {saved}, now {m.timestamp}: only A's relock would give {saved + 1}")
        changed = m.timestamp != saved + 1
        vm_map_unlock(m, thread="A")
        print("A must look its entry up again:", changed)
        assert changed
        """),
        md("""
        `saved + 1` would mean "only my own relock happened". Anything more means another
        writer was in between, and `vm_map_delete` (for one) then redoes its lookup and clip.

        ## 3. The failed upgrade

        A reader that discovers it must change the map asks for
        **`vm_map_lock_upgrade`**: 0 means "you now hold it exclusively". Two readers cannot
        both become the writer, so FreeBSD's `_vm_map_lock_upgrade` works in three steps:

        1. `sx_try_upgrade`: if A is the **only** reader, its lock becomes exclusive in place.
        2. Otherwise A remembers the timestamp, **drops its shared lock** and sleeps in
           `sx_xlock` until the other holders are gone.
        3. Awake and exclusive, A compares the timestamps. Unchanged: nobody wrote meanwhile,
           and the upgrade **succeeds** (0). Changed: a writer got in first and may have
           changed the map, so A unlocks and returns **nonzero, holding no lock at all**. The
           caller must start over from the lookup.

        **vmlab cannot sleep.** With other readers present, its `vm_map_lock_upgrade` takes the
        failure path at once: it cannot know whether a writer would get in before A wakes,
        and callers must handle that case anyway.
        """),
        predict("""
        A and B both hold the read lock. A calls vmlab's `vm_map_lock_upgrade`. What does it
        return, and which locks does A hold afterwards?
        """),
        code("""
        vm_map_lock_read(m, thread="A")
        vm_map_lock_read(m, thread="B")
        rv = vm_map_lock_upgrade(m, thread="A")
        print("upgrade returned", rv)
        print(m.lock)
        assert rv != 0 and m.lock.holders == ["B"]
        vm_map_unlock_read(m, thread="B")
        """),
        md("""
        A holds **no lock**: calling `vm_map_unlock_read` for A now would be a bug (a kernel
        panic). In the kernel, A would still be asleep at this point, and whether it fails
        depends on what happens next. Here is the real failure, B writing while A sleeps,
        played with the same calls the kernel makes:
        """),
        code("""
        vm_map_lock_read(m, thread="A")
        vm_map_lock_read(m, thread="B")
        last = m.timestamp                       # A: sx_try_upgrade fails (B reads too)
        vm_map_unlock_read(m, thread="A")        # A: drops its shared lock, sleeps in sx_xlock

        with as_thread("B"):                     # meanwhile B, now the only reader,
            assert vm_map_lock_upgrade(m) == 0   # upgrades in place and writes
            vm_map_insert(m, None, 0, 0x20000, 0x21000, VM_PROT.RW, VM_PROT.ALL, 0)
            vm_map_unlock(m)

        vm_map_lock(m, thread="A")               # A wakes up holding the lock exclusively
        seen = m.timestamp - 1                   # the kernel compares before counting A's lock
        if seen != last:                         # a writer got in: the upgrade fails
            vm_map_unlock(m, thread="A")
        print(f"A saved {last}, found {seen}: vm_map_lock_upgrade returns {int(seen != last)}")
        print(m.lock)
        assert seen == last + 1 and m.lock.mode == "unlocked"
        """),
        md("""
        Had B only read and left, the timestamp would not have moved and A's upgrade would
        have returned 0, with the lock exclusive. Alone, the upgrade succeeds at once, in place,
        and counts as an exclusive acquisition:
        """),
        code("""
        vm_map_lock_read(m, thread="A")
        before = m.timestamp
        rv = vm_map_lock_upgrade(m, thread="A")
        print(f"upgrade returned {rv}; timestamp {before} -> {m.timestamp}; {m.lock}")
        vm_map_lock_downgrade(m, thread="A")
        vm_map_unlock_read(m, thread="A")
        assert rv == 0 and m.timestamp == before + 1
        """),
        code("""
        LockTimeline(m, "A:lock_read, B:lock_read, A:lock_upgrade, B:unlock_read, "
                        "A:lock_read, A:lock_upgrade, A:lock_downgrade, A:unlock_read")
        """),
        md("""
        ## 4. Why faults take the read lock

        A page fault must find the entry for the faulting address (`vm_map_lookup`). It does
        **not** change the map, usually. Faults are by far the most frequent map operation,
        and the threads of one process fault at the same time, so `vm_fault` takes only the
        **read lock**: all of them can run at once. It upgrades only in the rare cases where it
        must change an entry: the first touch of anonymous memory (the entry gets its
        object) and a write to copy-on-write memory (a shadow object).

        Let us fault on a real process's memory and record which lock calls happen.
        """),
        code("""
        vm = vmspace_alloc()
        err, a = mmap(vm, 0, 0x4000, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
        pm = vm.vm_map

        def lock_steps(va, access):
            with recording(vm) as tr:
                rv = vm_fault(pm, va, access)
            print(f"fault at {va:#x}: KERN_{rv.name}")
            for s in tr.steps:
                if s.kind in ("lock", "timestamp", "object_alloc"):
                    print("   ", s.text)

        lock_steps(a, VM_PROT.READ)                 # first touch of this entry
        """),
        md("""
        The first touch: read lock, then an **upgrade** (the entry needs its object; the
        timestamp counts it), the object is allocated while the map is held exclusively, a
        **downgrade** back to the read lock, and the read lock is dropped at the end.
        """),
        predict("""
        A second fault, a write to the next page of the same entry. Does it upgrade? Does the
        timestamp move?
        """),
        code("""
        t = pm.timestamp
        lock_steps(a + 0x1000, VM_PROT.WRITE)
        assert pm.timestamp == t
        """),
        md("""
        Read lock in, read lock out: the map is not changed and the timestamp stays. Another
        thread holding the read lock does not stop it either, but a writer does:
        """),
        code("""
        vm_map_lock_read(pm, thread="B")
        print("with B reading:", vm_fault(pm, a + 0x2000, VM_PROT.READ).name)
        vm_map_unlock_read(pm, thread="B")

        vm_map_lock(pm, thread="W")
        try:
            vm_fault(pm, a + 0x3000, VM_PROT.READ)
        except LockWouldBlock as e:
            print("with W writing:", e)
        vm_map_unlock(pm, thread="W")
        """),
        md(f"""
        ## Recap

        - **`vm_map_lock`** (exclusive) for changes, **`vm_map_lock_read`** (shared) for
          lookups; `trylock` variants return 0 instead of sleeping.
        - **`map.timestamp`** counts exclusive acquisitions; a thread that relocks and finds
          anything but `saved + 1` must redo its lookup.
        - **`vm_map_lock_upgrade`** succeeds in place for a lone reader; otherwise FreeBSD
          drops the read lock and sleeps for the exclusive one. If a writer got in meanwhile
          it returns nonzero and leaves the caller holding **no lock**: start over. The man
          page does not say so. (vmlab, which cannot sleep, fails whenever others read.)
        - **Page faults take the read lock**, so a process's threads fault in parallel; they
          upgrade only to give an entry its object or to resolve copy-on-write.

        Next: **06 · Stacks**. Read more: {man("vm_map_lock")}; `_vm_map_lock_upgrade()` and
        `vm_map_lookup()` in [sys/vm/vm_map.c]({SRC.format("vm_map.c")}).
        """),
    ]


LESSONS: dict[str, tuple[str, Callable[[], list[Cell]]]] = {
    "01": ("01_the_map.ipynb", lesson_01),
    "02": ("02_finding_space.ipynb", lesson_02),
    "03": ("03_insert_clip_merge_delete.ipynb", lesson_03),
    "04": ("04_protection.ipynb", lesson_04),
    "05": ("05_locking.ipynb", lesson_05),
}


def build(name: str, cells: list[Cell]) -> nbformat.NotebookNode:
    """A notebook with deterministic cell ids (so regenerating gives the same file)."""
    nb = nbformat.v4.new_notebook()
    stem = name.split("_")[0]
    for i, (kind, text) in enumerate(cells):
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown"
                else nbformat.v4.new_code_cell)(text)
        cell.id = f"l{stem}-{i:02d}"
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lessons", nargs="*", help="lesson numbers (default: all): 01 02 ...")
    ap.add_argument("--no-execute", action="store_true", help="write the notebooks only")
    args = ap.parse_args(argv)
    wanted = args.lessons or list(LESSONS)
    paths = []
    for key in wanted:
        if key not in LESSONS:
            ap.error(f"unknown lesson {key!r} (one of {', '.join(LESSONS)})")
        name, make = LESSONS[key]
        path = NOTEBOOKS / name
        nbformat.write(build(name, make()), path)
        paths.append(path)
        print(f"wrote {path.relative_to(REPO)}")
    if args.no_execute:
        return 0
    return subprocess.call([sys.executable, str(STRIP), *map(str, paths)], cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())

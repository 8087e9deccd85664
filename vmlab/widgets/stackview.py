"""Stack growth, animated: a fault below the stack, vm_map_growstack, the guard, RLIMIT_STACK.

`StackGrowth(vm, addr, access, rlimit_stack)` calls the process layer's ``vm_fault(map, addr,
fault_type)`` with recording on. A fault in a stack gap reaches vm_map_growstack through
vm_map_lookup (sys/vm/vm_map.c, FreeBSD 14): the stack grows by round_page(stack.start −
addr) rounded up to kern.sgrowsiz (capped by the gap less its guard and, for the main stack,
by RLIMIT_STACK) as a **new** GROWS_DOWN entry carved from the top of the gap; a fault in the
guard, or past RLIMIT_STACK, gets KERN_NO_SPACE from growstack and the fault then fails with
KERN_PROTECTION_FAILURE (the gap's protection is NONE): SIGSEGV.

The view draws the stack region on a segmented axis (every piece visible, however small: a
4 KiB guard beside a 512 MiB gap), the gap hatched with its guard dark, the stack entries,
the faulting address, the growth bracket (needed → rounded to sgrowsiz) and the RLIMIT_STACK
line, at each step as the trace recorded it.

Linked hover (`canvas.Scene.link`, in the browser): the fault marker and the entry the address
falls in (the gap, with its guard when the address is in the guard; after growth, the new
stack entry) outline each other.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from . import theme
from .canvas import Scene
from .diagram import DiagramView, TracedAnimation, note_box, process_states
from .inputs import Field, parse_addr, parse_int
from .prefaultview import _need_vmspace
from .walkview import parse_access

__all__ = ["StackGrowth", "StackQuestion", "StackView"]

GUARD, GROWS_DOWN, STACK_GAP_DN = 0x10000, 0x1000, 0x20000
L, BAND_T, BAND_B = 20.0, 84.0, 130.0
MIN_SEG = 46.0  # px: the narrowest piece (a 4 KiB guard) stays readable


class SegmentScale:
    """address -> px: every piece between breakpoints gets a width growing with log2 of its
    size, at least MIN_SEG px (a segmented axis, as the map overview's log mode)."""

    def __init__(self, points: list[int], left: float, right: float) -> None:
        import numpy as np

        pts = np.unique(np.asarray(points, dtype=float))
        if len(pts) < 2:
            pts = np.array([pts[0] if len(pts) else 0.0, (pts[0] if len(pts) else 0.0) + 1])
        weight = 1.0 + np.log2(np.maximum(np.diff(pts) / 4096.0, 1.0))
        total = right - left
        lo, hi = 0.0, total / weight.min()
        for _ in range(60):  # the factor k with sum(max(MIN_SEG, k * weight)) == total
            k = (lo + hi) / 2
            if np.maximum(MIN_SEG, k * weight).sum() > total:
                hi = k
            else:
                lo = k
        w = np.maximum(MIN_SEG, lo * weight)
        w *= total / w.sum()
        self.a = pts
        self.px = left + np.concatenate([[0.0], np.cumsum(w)])

    def x(self, addr: int) -> float:
        import numpy as np

        return float(np.interp(float(addr), self.a, self.px))


@dataclass(frozen=True)
class StackQuestion:
    """The region drawn ([lo, hi): the gap and the stack above it), the fault and the limits."""

    lo: int
    hi: int
    addr: int
    access: str
    rlimit_stack: int
    sgrowsiz: int
    main: bool  # the process's main stack ([vm_maxsaddr, vm_stacktop)): RLIMIT_STACK applies
    guard: int = 0x1000  # the gap's guard size (gap.next_read; 0 with stack gaps disabled)


def _map_at(trace: Any, i: int) -> Any:
    snap = trace.states[trace.steps[i].state]
    return getattr(snap, "map", snap)


class StackView(DiagramView):
    """The stack region at one step (see the module doc). ``question`` is set per run."""

    def __init__(self) -> None:
        super().__init__(height=300, linked=True)
        self.question: StackQuestion | None = None
        self._key: tuple[int, Any] | None = None
        self._procs: list[dict[int, Any]] = []

    def _prepare(self, trace: Any) -> None:
        q = self.question
        assert q is not None
        self._key = (id(trace), q)
        self._procs = process_states(trace)
        starts, ends = [], []
        for s in trace.states:
            m = getattr(s, "map", s)
            for row in m.entries:
                a, b = max(int(row["start"]), q.lo), min(int(row["end"]), q.hi)
                if a < b:
                    starts.append(a)
                    ends.append(b)
        pts = [q.lo, q.hi, *starts, *ends, q.lo + q.guard]
        a = q.addr & ~0xFFF
        if q.lo <= a < q.hi:
            pts += [a, a + 0x1000]
        if q.main and q.lo < q.hi - q.rlimit_stack:
            pts.append(q.hi - q.rlimit_stack)
        pts = [p for p in pts if q.lo <= p <= q.hi]
        self.scale = SegmentScale(pts, L, self.canvas.width - 20)
        grows = [s for s in trace.steps if s.kind == "grow"]
        self.grow = dict(grows[-1].data) if grows else None
        self.grow_step = trace.steps.index(grows[-1]) if grows else None
        done = [s for s in trace.steps if s.kind == "fault_done"]
        self.fault_rv = int(done[-1].data["rv"]) if done else None

    def x(self, addr: int) -> float:
        return self.scale.x(addr)

    def scene(self, trace: Any, i: int) -> Scene:
        q = self.question
        sc = Scene()
        if q is None:
            return sc
        if self._key != (id(trace), q):
            self._prepare(trace)
        W = self.canvas.width
        st = trace.steps[i]
        m = _map_at(trace, i)
        proc = next(iter(self._procs[i].values()), None)
        ssize = proc.vm_ssize if proc is not None else None
        sc.text(12, 14, f"{'main stack' if q.main else 'stack'} region [{q.lo:#x}, {q.hi:#x})"
                f" · {theme.fmt_size(q.hi - q.lo)} reserved", size=13, bold=True, tag="title")
        sc.text(W - 12, 14, f"kern.sgrowsiz {theme.fmt_size(q.sgrowsiz)} · RLIMIT_STACK "
                f"{theme.fmt_size(q.rlimit_stack)}", size=11, color=theme.TEXT_MUTED,
                align="right", tag="limits")
        sub = "lower addresses on the left: the stack grows leftwards"
        if ssize is not None and q.main:
            sub = (f"vm_ssize = {ssize} pages ({theme.fmt_size(ssize * 4096)}), checked "
                   f"against RLIMIT_STACK · {sub}")
        sc.text(12, 32, sub, size=11, color=theme.TEXT_MUTED, tag="ssize")
        grown_now = self.grow is not None and self.grow.get("rv") == 0 and \
            self.grow_step is not None and i >= self.grow_step
        new_range = (int(self.grow["start"]), int(self.grow["end"])) if grown_now else None
        hl_entry = None
        if st.kind in ("link", "extend", "clip", "unlink"):
            hl_entry = (int(st.data.get("start", st.data.get("old_end", 0))),
                        int(st.data.get("end", st.data.get("new_end", 0))))
        labels: list[tuple[int, str]] = []
        at_fault: list[str] = []  # the boxes of the entry the fault address falls in
        failed = self.grow is not None and self.grow.get("rv") != 0 and \
            self.grow_step is not None and i >= self.grow_step
        for row in m.entries:
            s, e = int(row["start"]), int(row["end"])
            if e <= q.lo or s >= q.hi:
                continue
            s, e = max(s, q.lo), min(e, q.hi)
            ef, prot = int(row["eflags"]), int(row["protection"])
            x0, x1 = self.x(s), self.x(e)
            tip = (f"<b>[{s:#x}, {e:#x})</b> {theme.fmt_size(e - s)}<br>prot "
                   f"{theme.prot_str(prot)}, eflags {html.escape(theme.eflags_str(ef))}")
            inside = s <= q.addr < e
            if ef & GUARD:
                guard = min(q.guard, e - s)
                if inside:
                    at_fault += ["gap", "guard"] if q.addr < s + guard else ["gap"]
                gx = self.x(s + guard)
                sc.box(x0, BAND_T, x1, BAND_B, theme.GAP_FILL, hatch="/",
                       line=theme.GAP_LINE, tag="gap", tip=tip + "<br>stack gap: a fault here "
                       "grows the stack (unless it hits the guard)")
                hit = failed and s <= q.addr < s + guard
                sc.box(x0, BAND_T, gx, BAND_B, theme.GUARD_FILL,
                       line=theme.ERROR if hit else "white", lw=4 if hit else 1, tag="guard",
                       tip=f"guard: the lowest {theme.fmt_size(guard)} of the gap are never "
                       "given to the stack (security.bsd.stack_guard_page)")
                sc.text((x0 + gx) / 2, BAND_T + 23, "guard", size=10, bold=True,
                        color="white", align="center", tag="guard")
                if x1 - gx > 110:
                    sc.text((gx + x1) / 2, BAND_T + 16, f"stack gap {theme.fmt_size(e - s)}",
                            size=11, bold=True, color=theme.TEXT, align="center", tag="gap")
                    sc.text((gx + x1) / 2, BAND_T + 31, "prot ---, GUARD | STACK_GAP_DN",
                            size=9, color=theme.TEXT_MUTED, align="center", tag="gap")
                labels.append((s, "gap start"))
            else:
                new = new_range is not None and (s, e) == new_range
                fill = theme.NEW_ENTRY if new else theme.prot_color(prot, ef)
                hl = hl_entry is not None and hl_entry[0] <= s and e <= hl_entry[1] or \
                    (new and st.kind == "grow")
                sc.box(x0, BAND_T, x1, BAND_B, fill, line=theme.HIGHLIGHT if hl else "white",
                       lw=4 if hl else 1.5, tag="new" if new else f"stack:{s:#x}", tip=tip)
                if inside:
                    at_fault.append("new" if new else f"stack:{s:#x}")
                if x1 - x0 > 40:
                    sc.text((x0 + x1) / 2, BAND_T + 16, ("new " if new else "") + "stack",
                            size=10, bold=True, color="white", align="center",
                            tag="new" if new else f"stack:{s:#x}")
                    sc.text((x0 + x1) / 2, BAND_T + 31, theme.fmt_size(e - s), size=10,
                            color="white", align="center", tag="size")
                labels.append((s, ""))
        labels.append((q.hi, "top"))
        # address labels under the band, on two rows so they do not collide
        last_r = [-1e9, -1e9]
        for a, _what in sorted(set(labels)):
            xa = self.x(a)
            text = f"{a:#x}"
            wtxt = 5.5 * len(text)
            al = "left" if xa < L + 40 else "right" if xa > W - 60 else "center"
            lft = xa if al == "left" else xa - wtxt if al == "right" else xa - wtxt / 2
            for r in (0, 1):
                if lft > last_r[r] + 8:
                    y = BAND_B + 12 + 13 * r
                    sc.line(xa, BAND_B, xa, y - 5, color=theme.CARD_BORDER, lw=1, tag="tick")
                    sc.text(xa, y, text, size=9, mono=True, color=theme.TEXT_MUTED, align=al,
                            tag="tick")
                    last_r[r] = lft + wtxt
                    break
        # RLIMIT_STACK line: the main stack may not reach below hi - rlimit
        if q.main and q.hi - q.rlimit_stack > q.lo:
            xr = self.x(q.hi - q.rlimit_stack)
            hot = self.grow is not None and "RLIMIT_STACK" in str(self.grow.get("reason", ""))\
                and self.grow_step is not None and i >= self.grow_step
            sc.line(xr, BAND_T - 6, xr, BAND_B + 40, color=theme.ERROR, lw=3 if hot else 1.5,
                    dash="dashed", tag="rlimit")
            sc.text(xr + 4, BAND_B + 38, f"RLIMIT_STACK: top − {theme.fmt_size(q.rlimit_stack)}",
                    size=10, bold=hot, color=theme.ERROR, tag="rlimit")
        # the fault
        fault_seen = any(s.kind == "fault" for s in trace.steps[: i + 1])
        if fault_seen:
            xa = self.x(q.addr)
            sc.arrow(xa, BAND_T - 20, xa, BAND_T - 2, color=theme.ACCENT, lw=2.5, tag="fault")
            word = {"r": "read", "w": "write", "x": "fetch"}[q.access]
            anchor = "right" if xa > W - 200 else "left" if xa < 200 else "center"
            label = f"{word} fault at {q.addr:#x}"
            tx = xa - 6 if anchor == "right" else xa + 6 if anchor == "left" else xa
            sc.text(tx, BAND_T - 30, label, size=11, bold=True, color=theme.ACCENT,
                    align=anchor, tag="fault")
            # an invisible box over the arrow and its label answers the hover (and is what a
            # hovered entry outlines)
            tw = 6.6 * len(label)
            lx = tx - tw if anchor == "right" else tx if anchor == "left" else tx - tw / 2
            where = ("in the guard of the stack gap" if "guard" in at_fault else
                     "in the stack gap" if at_fault == ["gap"] else
                     "in the stack entry grown for it" if at_fault == ["new"] else
                     "in a stack entry" if at_fault else "in no entry at this step")
            sc.box(min(lx, xa - 8) - 2, BAND_T - 40, max(lx + tw, xa + 8) + 2, BAND_T - 1,
                   None, line=None, tag="fault", tip=f"<b>{q.addr:#x}</b>: {where}")
            sc.link(["fault", *at_fault])
        # growth bracket
        g = self.grow if (self.grow_step is not None and i >= self.grow_step) else None
        y = BAND_B + 66
        if g is not None and g.get("rv") == 0:
            s, e = int(g["start"]), int(g["end"])
            x0, x1 = self.x(s), self.x(e)
            sc.line(x0, y, x1, y, color=theme.NEW_ENTRY, lw=2, tag="bracket")
            sc.line(x0, y - 6, x0, y, color=theme.NEW_ENTRY, lw=2, tag="bracket")
            sc.line(x1, y - 6, x1, y, color=theme.NEW_ENTRY, lw=2, tag="bracket")
            asked, grow = int(g["asked"]), int(g["grow"])
            why = (f"needed round_page(stack.start − addr) = {asked:#x}, rounded up to "
                   f"sgrowsiz → grows by {grow:#x} ({theme.fmt_size(grow)})")
            if grow < -(-asked // q.sgrowsiz) * q.sgrowsiz:
                why += " (capped: gap less guard, or RLIMIT_STACK)"
            half = 2.9 * len(why) + 6
            sc.text(min(max((x0 + x1) / 2, 12 + half), W - 12 - half), y + 12, why, size=10,
                    color=theme.NEW_ENTRY, align="center", bold=True, tag="bracket")
        elif g is None:
            sc.text(W / 2, y + 6, "growth = round_page(stack.start − fault address), rounded up "
                    f"to sgrowsiz ({theme.fmt_size(q.sgrowsiz)}), capped by the gap less its "
                    "guard" + (" and by RLIMIT_STACK" if q.main else ""), size=10, italic=True,
                    color=theme.TEXT_MUTED, align="center", tag="bracket")
        # outcome callout
        y += 32
        lines, color = self._outcome(trace, i, g)
        note_box(sc, 12, y, W - 12, y + 40, lines, color=color, tag="note")
        sc.height = int(y + 50)
        return sc

    def _outcome(self, trace: Any, i: int, g: dict[str, Any] | None) -> tuple[list[str], str]:
        st = trace.steps[i]
        if st.kind == "fault_done" or (self.fault_rv is not None and i == len(trace) - 1):
            rv = self.fault_rv
            if rv == 0:
                return ([f"vm_fault → {theme.kern_str(0)}",
                         "the access is retried and succeeds: the page is zero-filled in the "
                         "stack's object"], theme.OK)
            return ([f"vm_fault → {theme.kern_str(rv)}: SIGSEGV",
                     "growstack failed, so vm_map_lookup finds the gap itself (prot ---) and "
                     "refuses the access"], theme.ERROR)
        if g is not None:
            if g.get("rv") == 0:
                return (["vm_map_growstack → KERN_SUCCESS (0)",
                         "a new, separate GROWS_DOWN entry is carved from the top of the gap "
                         "(stack entries never merge)"], theme.NEW_ENTRY)
            return ([f"vm_map_growstack → {theme.kern_str(g.get('rv'))}",
                     str(g.get("reason", ""))[:118]], theme.ERROR)
        return (["a fault below the stack, in its gap",
                 "vm_map_lookup sees a STACK_GAP_DN guard entry and calls vm_map_growstack"],
                theme.ACCENT)


def _stack_region(vm: Any, addr: int) -> tuple[int, int, bool]:
    """[lo, hi) of the stack whose gap (or stack entries) holds ``addr``: the main stack by
    default; a MAP_STACK stack when ``addr`` is in its gap or its entries."""
    main = (int(vm.vm_maxsaddr), int(vm.vm_stacktop))
    if main[0] <= addr < main[1] or main[0] >= main[1]:
        return main[0], main[1], main[0] < main[1]
    ents = list(vm.vm_map.entries())
    k = next((j for j, e in enumerate(ents) if e.start <= addr < e.end), None)
    if k is None or not int(ents[k].eflags) & (STACK_GAP_DN | GROWS_DOWN):
        return main[0], main[1], True
    while k > 0 and int(ents[k].eflags) & GROWS_DOWN and ents[k - 1].end == ents[k].start:
        k -= 1  # down to the gap
    lo, hi = ents[k].start, ents[k].end
    for e in ents[k + 1:]:
        if e.start != hi or not int(e.eflags) & GROWS_DOWN:
            break
        hi = e.end
    return int(lo), int(hi), False


class StackGrowth(TracedAnimation):
    """``StackGrowth(vm, addr=None, access='w', rlimit_stack=None)``: a fault at ``addr`` below
    the stack of process ``vm`` (a `Vmspace`, e.g. from exec_image), through vm_fault →
    vm_map_lookup → vm_map_growstack (sys/vm/vm_map.c). ``addr`` defaults to three pages
    below the main stack; ``rlimit_stack`` (soft RLIMIT_STACK, bytes) is set with setrlimit
    first when it differs from the process's."""

    title = "Stack growth"
    blurb = "a fault in the stack gap: vm_map_growstack, sgrowsiz, the guard, RLIMIT_STACK"

    def __init__(self, vm: Any, addr: Any = None, access: Any = "w",
                 rlimit_stack: Any = None) -> None:
        self.view = StackView()
        ok = _need_vmspace(vm, "StackGrowth") is None
        if addr is None:
            addr = _default_addr(vm) if ok else 0
        if rlimit_stack is None:
            from vmlab.core import RLIMIT_STACK, getrlimit

            rlimit_stack = getrlimit(vm, RLIMIT_STACK) if ok else 0
        fields = [Field("addr", "fault at", parse_addr, addr, "240px"),
                  Field("access", "access", parse_access, access, "110px"),
                  Field("rlimit", "RLIMIT_STACK", _parse_rlimit, _size_text(rlimit_stack),
                        "200px")]
        super().__init__(vm, fields, [self.view], run_label="Fault")

    def check_target(self) -> str | None:
        err = _need_vmspace(self.target, "StackGrowth")
        if err is None and self.target.vm_maxsaddr >= self.target.vm_stacktop:
            return "this process has no main stack (use exec_image(), or vm_map_stack)"
        return err

    def operation(self, v: dict[str, Any]) -> Any:
        from vmlab.core import (
            RLIMIT_STACK,
            VM_PROT,
            getrlimit,
            setrlimit,
            sysctl,
            trunc_page,
            vm_fault,
        )

        vm = self.target
        if v["rlimit"] != getrlimit(vm, RLIMIT_STACK):
            err = setrlimit(vm, RLIMIT_STACK, v["rlimit"])
            if err:
                from .inputs import InputError

                raise InputError(f"setrlimit(RLIMIT_STACK, {v['rlimit']:#x}) failed: errno "
                                 f"{err} (above the hard limit "
                                 f"{getrlimit(vm, RLIMIT_STACK, True):#x}?)")
        lo, hi, main = _stack_region(vm, v["addr"])
        self.view.question = StackQuestion(lo, hi, v["addr"], v["access"], v["rlimit"],
                                           int(sysctl("kern.sgrowsiz")), main,
                                           _guard_size(vm, lo))
        prot = {"r": VM_PROT.READ, "w": VM_PROT.WRITE, "x": VM_PROT.EXECUTE}[v["access"]]
        return vm_fault(vm.vm_map, trunc_page(v["addr"]), int(prot))

    def summary(self, v: dict[str, Any], rv: Any) -> str:
        g = self.view.grow
        parts = []
        if g is not None:
            tone = theme.OK if g.get("rv") == 0 else theme.ERROR
            parts.append(f'vm_map_growstack → <b style="color:{tone}">'
                         f'{html.escape(theme.kern_str(g.get("rv")))}</b>'
                         + (f" (grew {int(g['grow']):#x})" if g.get("rv") == 0 else
                            f": {html.escape(str(g.get('reason', '')))}"))
        else:
            parts.append("no growstack (the address is not in a stack gap)")
        tone = theme.OK if int(rv) == 0 else theme.ERROR
        parts.append(f'vm_fault({v["addr"]:#x}) → <b style="color:{tone}">'
                     f"{html.escape(theme.kern_str(int(rv)))}</b>"
                     + ("" if int(rv) == 0 else " (SIGSEGV)"))
        return (f'<div style="font-family:{theme.FONT};font-size:13px;padding:6px 10px;'
                f'border-left:4px solid {theme.ACCENT};margin-top:4px">'
                f'{" · ".join(parts)}</div>')


def _guard_size(vm: Any, lo: int) -> int:
    """The guard of the gap starting at ``lo`` (its next_read), as growstack will use it."""
    if getattr(vm, "stkgap_disable", False):
        return 0
    for e in vm.vm_map.entries():
        if e.start == lo and int(e.eflags) & GUARD:
            return int(e.next_read)
    return 0x1000


def _default_addr(vm: Any) -> int:
    """Three pages below the lowest entry of the main stack (0 without one)."""
    if vm.vm_maxsaddr >= vm.vm_stacktop:
        return 0
    lo = int(vm.vm_stacktop)
    for e in vm.vm_map.entries():
        if vm.vm_maxsaddr <= e.start < vm.vm_stacktop and int(e.eflags) & GROWS_DOWN:
            lo = min(lo, int(e.start))
    return lo - 3 * 0x1000


def _size_text(n: Any) -> Any:
    """A limit as a student would type it: ``8M`` when exact in K/M/G units, else hex."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return n
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return hex(n)


def _parse_rlimit(v: Any, *, what: str = "RLIMIT_STACK") -> int:
    return parse_int(v, what=what, lo=0, hi=(1 << 63) - 1)

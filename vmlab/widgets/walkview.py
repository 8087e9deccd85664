"""The page walk, animated: CR3 → (PML5E) → PML4E → PDPTE → PDE → PTE → frame.

`PageWalk(vm_or_mmu, va, access, cpl)` runs ``Mmu.translate`` (vmlab.core.x86, Intel SDM vol.
3A §4.5) with recording on and replays its ``walk_level`` / ``walk_done`` / ``walk_fault``
steps. The linear address is split into its 9-bit index fields, coloured like the levels they
select; each entry read shows its address, raw value and decoded flags (P RW US PWT PCD A D
PS/PAT G XD and FreeBSD's software bits 10 MANAGED and 11 WIRED, sys/amd64/include/pmap.h);
the last step shows the A/D bits the walk set (before → after) and the result: the physical
address, or the #PF error code bit by bit with CR2, or #GP(0) for a non-canonical address.

The view reads only the trace: entry values as read come from ``walk_level`` steps, the values
after the walk from the Mmu's snapshot (the entries it touched).

Linked hover (`canvas.Scene.link`, in the browser): an index field of the address and the
entry row it selects outline each other (a flag chip counts as its row); the offset field and
the result (frame + offset = PA) too, with the index fields a large page turns into offset
bits (bits 20:12 for a 2 MiB PDE leaf, 29:12 for a 1 GiB PDPTE leaf); the sign-extension
field and the #GP result of a non-canonical address.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from . import theme
from .canvas import Scene
from .diagram import DiagramView, TracedAnimation, chip
from .inputs import Field, InputError, parse_addr, parse_int

__all__ = ["LEVEL_COLORS", "PageWalk", "WalkQuestion", "WalkView", "parse_access"]

#: One colour per paging level (and the page offset); the VA's index fields use the same.
LEVEL_COLORS = {
    "PML5E": "#8c6d31",
    "PML4E": "#3b6fb6",
    "PDPTE": "#2f8f5b",
    "PDE": "#d9822b",
    "PTE": "#9d4edd",
    "offset": "#5f7d8c",
    "sign": "#9ca3af",
}
TABLE = {"PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT"}
SHIFT = {"PML5E": 48, "PML4E": 39, "PDPTE": 30, "PDE": 21, "PTE": 12}
_WORD = {"r": "read", "w": "write", "x": "instruction fetch"}
_SIZE = {1 << 12: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}

#: (flag, bit, what it means) in the order the chips are drawn.
FLAG_BITS = [
    ("P", 0, "present"), ("RW", 1, "writable (R/W)"), ("US", 2, "user (U/S)"),
    ("PWT", 3, "write-through"), ("PCD", 4, "cache disable"), ("A", 5, "accessed"),
    ("D", 6, "dirty (leaf only)"), ("PS", 7, "page size (PDPTE/PDE)"),
    ("PAT", 7, "PAT index bit (PTE)"), ("G", 8, "global (leaf only)"),
    ("MANAGED", 10, "FreeBSD PG_MANAGED (software bit 10)"),
    ("WIRED", 11, "FreeBSD PG_W, wired (software bit 11)"), ("XD", 63, "execute disable"),
]
#: #PF error-code bits (SDM §4.7): name, bit, meaning when 1, meaning when 0.
ERROR_BITS = [
    ("P", 0, "rights violation", "not present"),
    ("W/R", 1, "write", "read"),
    ("U/S", 2, "user mode", "supervisor mode"),
    ("RSVD", 3, "reserved bit set", "no reserved bit"),
    ("I/D", 4, "instruction fetch", "data access"),
]


def parse_access(v: Any, *, what: str = "access") -> str:
    """'r' / 'w' / 'x' (also 'read', 'write', 'fetch', 'exec')."""
    t = str(v).strip().lower()
    names = {"r": "r", "read": "r", "w": "w", "write": "w", "x": "x", "fetch": "x",
             "exec": "x", "execute": "x"}
    if t not in names:
        raise InputError(f"{what}: {v!r} is not an access (use r, w or x)")
    return names[t]


def parse_cpl(v: Any, *, what: str = "CPL") -> int:
    return parse_int(v, what=what, lo=0, hi=3)


@dataclass(frozen=True)
class WalkQuestion:
    """What was asked: the address, the access, the privilege level and the paging mode."""

    va: int
    access: str
    cpl: int
    levels: tuple[str, ...]
    cr3: int
    maxphyaddr: int = 52
    nxe: bool = True


def _flag_on(raw: int, bit: int) -> bool:
    return bool((raw >> bit) & 1)


def _applies(name: str, level: str, raw: int) -> bool:
    leaf = level == "PTE" or (level in ("PDPTE", "PDE") and raw & 0x80)
    if name == "PS":
        return level in ("PDPTE", "PDE")
    if name == "PAT":
        return level == "PTE"
    if name in ("D", "G"):
        return bool(leaf)
    return True


class WalkView(DiagramView):
    """The walk diagram. ``question`` (a `WalkQuestion`) is set before a trace is shown."""

    def __init__(self) -> None:
        super().__init__(height=460, linked=True)
        self.question: WalkQuestion | None = None

    # -- reading the trace -------------------------------------------------------------------
    @staticmethod
    def entries(trace: Any, i: int) -> list[dict[str, Any]]:
        return [dict(s.data) for s in trace.steps[: i + 1] if s.kind == "walk_level"]

    @staticmethod
    def after_values(trace: Any) -> dict[int, int]:
        """entry_pa -> value after the walk (the Mmu snapshot of the last step)."""
        last = trace.steps[-1]
        snap = trace.states[last.state]
        try:
            return {int(pa): int(v) for pa, v in snap}
        except (TypeError, ValueError):
            return {}

    # -- drawing -----------------------------------------------------------------------------
    def scene(self, trace: Any, i: int) -> Scene:
        q = self.question
        sc = Scene()
        if q is None:
            return sc
        st = trace.steps[i]
        read = self.entries(trace, i)
        final = st.kind in ("walk_done", "walk_fault")
        after = self.after_values(trace) if final else {}
        cur_level = st.data.get("level") if st.kind == "walk_level" else None
        W = self.canvas.width
        who = "user" if q.cpl == 3 else "supervisor"
        sc.text(12, 14, f"{_WORD[q.access]} of {q.va:#018x} by {who} (CPL {q.cpl})",
                size=13, bold=True, tag="title")
        sc.text(W - 12, 14, f"{len(q.levels)}-level paging · CR3 {q.cr3:#x}", size=11,
                color=theme.TEXT_MUTED, align="right", tag="mode")
        self._va_fields(sc, q, cur_level, final, W)
        y = 104
        # CR3
        sc.box(12, y, 200, y + 24, "#eef2f7", line=theme.CARD_BORDER, tag="cr3",
               tip=f"CR3 bits M-1:12 give the root table: {TABLE[q.levels[0]]} at {q.cr3:#x}")
        sc.text(20, y + 12.5, f"CR3 = {q.cr3:#x}", mono=True, size=11, bold=True, tag="cr3")
        sc.text(210, y + 12.5, f"→ the {TABLE[q.levels[0]]} table is at physical {q.cr3:#x}",
                size=11, color=theme.TEXT_MUTED, tag="cr3")
        y += 24
        row_h, gap = 62, 14
        by_level = {e["level"]: e for e in read}
        for level in q.levels:
            top = y + gap
            sc.arrow(66, y + 1, 66, top - 1, color=theme.TEXT_MUTED, tag=f"arrow:{level}")
            e = by_level.get(level)
            if e is None:
                self._pending_row(sc, q, level, top, row_h, W, stopped=final)
            else:
                self._row(sc, q, e, top, row_h, W, after.get(int(e["entry_pa"])) if final
                          else None, current=level == cur_level)
            y = top + row_h
        # result
        top = y + gap
        if final:
            self._result(sc, q, st, read, after, top, W)
        else:
            sc.box(12, top, W - 12, top + 64, None, line=theme.CARD_BORDER, dash="dashed",
                   tag="result")
            sc.text(W / 2, top + 32, "the result appears when the walk ends", size=11,
                    italic=True, color=theme.TEXT_MUTED, align="center", tag="result")
        self._link(sc, q, st, read)
        sc.height = int(top + 64 + 10)
        return sc

    @staticmethod
    def _link(sc: Scene, q: WalkQuestion, st: Any, read: list[dict[str, Any]]) -> None:
        """Group each index field with the row it selects, the offset with the result."""
        offset_levels: list[str] = []
        if st.kind == "walk_done":  # a large page: the levels under its leaf are offset bits
            psize = int(st.data["page_size"])
            offset_levels = [lv for lv in q.levels if 1 << SHIFT[lv] < psize]
            sc.link(["va:offset", *(f"va:{lv}" for lv in offset_levels), "result"])
        elif st.kind == "walk_fault" and st.data.get("vector") == 13:
            sc.link(["va:sign", "result"])
        for lv in q.levels:
            if lv not in offset_levels:
                sc.link([f"va:{lv}", f"row:{lv}"])
        # the flag chips of a read row point where their row points
        links = {b["tag"]: b["links"] for b in sc.boxes if b["tag"].startswith("row:")
                 and b["links"]}
        for b in sc.boxes:
            if b["tip"] and b["tag"].startswith("flag:"):
                b["links"] = links.get("row:" + b["tag"].split(":")[1], "")

    def _va_fields(self, sc: Scene, q: WalkQuestion, cur: str | None, final: bool,
                   W: float) -> None:
        va = q.va
        fields: list[tuple[str, int, int, str]] = []  # (key, hi, lo, label)
        first_hi = SHIFT[q.levels[0]] + 8
        fields.append(("sign", 63, first_hi + 1, f"sign ext. 63:{first_hi + 1}"))
        for lv in q.levels:
            s = SHIFT[lv]
            fields.append((lv, s + 8, s, f"{TABLE[lv]} {s + 8}:{s}"))
        fields.append(("offset", 11, 0, "offset 11:0"))
        widths = []
        for _key, hi, lo, label in fields:
            nbits = hi - lo + 1
            widths.append(max(nbits * 6.7 + 14, len(label) * 5.9 + 12))
        total = sum(widths) + 4 * (len(fields) - 1)
        x = max(12.0, (W - total) / 2)
        t, b = 30, 84
        canonical = _canonical(va, q.levels)
        for (key, hi, lo, label), w in zip(fields, widths, strict=True):
            bits = (va >> lo) & ((1 << (hi - lo + 1)) - 1)
            binary = format(bits, f"0{hi - lo + 1}b")
            color = LEVEL_COLORS[key]
            hl = key == cur
            if key == "sign":
                val = "canonical" if canonical else "NOT canonical"
                vcol = theme.TEXT_MUTED if canonical else theme.ERROR
            elif key == "offset":
                val = f"= {bits:#x}"
                vcol = color
            else:
                val = f"index {bits}"
                vcol = color
            sc.box(x, t, x + w, b, color, alpha=0.16 if not hl else 0.32,
                   line=theme.HIGHLIGHT if hl else color, lw=3 if hl else 1,
                   tag=f"va:{key}", tip=f"bits {hi}:{lo} of the address = {bits} ({bits:#x})")
            sc.text(x + w / 2, t + 10, label, size=10, color=color if key != "sign" else
                    theme.TEXT_MUTED, bold=True, align="center", tag=f"va:{key}")
            sc.text(x + w / 2, t + 27, binary, size=11, mono=True, align="center",
                    tag=f"va:{key}")
            sc.text(x + w / 2, t + 44, val, size=10, bold=key != "sign", color=vcol,
                    align="center", tag=f"va:{key}")
            x += w + 4

    def _pending_row(self, sc: Scene, q: WalkQuestion, level: str, top: float, h: float,
                     W: float, stopped: bool) -> None:
        color = LEVEL_COLORS[level]
        s = SHIFT[level]
        sc.box(12, top, W - 12, top + h, None, line=theme.CARD_BORDER, dash="dashed",
               tag=f"row:{level}",
               tip=f"{level}: entry {(q.va >> s) & 511} (bits {s + 8}:{s} of the address) of "
                   f"the {TABLE[level]} table; " + ("not read: the walk stopped above" if stopped
                                                    else "not read yet"))
        sc.box(20, top + 8, 112, top + 26, color, alpha=0.35, line=None, tag=f"row:{level}")
        sc.text(66, top + 17.5, level, size=11, bold=True, color="white", align="center",
                tag=f"row:{level}")
        sc.text(130, top + h / 2, "not read: the walk stopped above" if stopped else
                "not read yet", size=11, italic=True, color=theme.TEXT_MUTED,
                tag=f"row:{level}")

    def _row(self, sc: Scene, q: WalkQuestion, e: dict[str, Any], top: float, h: float,
             W: float, after: int | None, current: bool) -> None:
        level = e["level"]
        color = LEVEL_COLORS[level]
        raw = int(e["raw"])
        idx, tpa, epa = int(e["index"]), int(e["table_pa"]), int(e["entry_pa"])
        changed_bits = (after ^ raw) if after is not None else 0
        tag = f"row:{level}"
        sc.box(12, top, W - 12, top + h, "white", line=theme.HIGHLIGHT if current else
               theme.CARD_BORDER, lw=3 if current else 1, tag=tag,
               tip=f"{level}: entry {idx} of the {TABLE[level]} table at {tpa:#x}; read from "
                   f"physical {epa:#x} = {tpa:#x} + 8 × {idx}")
        sc.box(20, top + 8, 112, top + 26, color, line=None, tag=tag)
        sc.text(66, top + 17.5, level, size=11, bold=True, color="white", align="center",
                tag=tag)
        sc.text(20, top + 42, f"{TABLE[level]} @ {tpa:#x}", size=10, mono=True,
                color=theme.TEXT_MUTED, tag=tag)
        sc.text(128, top + 16, f"[{idx}]", size=12, mono=True, bold=True, color=color,
                tag=f"index:{level}")
        sc.text(128 + 8 * (len(str(idx)) + 2) + 4, top + 16, f"@ {epa:#x}", size=11,
                mono=True, color=theme.TEXT_MUTED, tag=tag)
        sc.text(128, top + 34, f"{raw:#018x}", size=12, mono=True, bold=True,
                tag=f"raw:{level}")
        if changed_bits:
            sc.text(128, top + 50, f"→ {after:#018x}", size=11, mono=True, bold=True,
                    color="#b45309", tag=f"after:{level}")
        # flag chips
        x = 290.0
        present = bool(raw & 1)
        for name, bit, meaning in FLAG_BITS:
            if not _applies(name, level, raw):
                continue
            on = _flag_on(raw, bit)
            ch = bool((changed_bits >> bit) & 1)
            na = not present and name != "P"
            label = f"{name}→1" if ch else name
            tip = f"bit {bit}: {meaning} = {int(on)}" + (f" → {int(_flag_on(after or 0, bit))}"
                                                       " (set by this walk)" if ch else "")
            x = chip(sc, x, top + 8, label, on=on or ch, color=color, changed=ch, na=na,
                     tag=f"flag:{level}:{name}", tip=tip) + 3
        # where it points
        leaf = level == "PTE" or (level in ("PDPTE", "PDE") and raw & 0x80)
        m = (1 << q.maxphyaddr) - 1
        if not present:
            what, col = "P = 0: not present, the walk stops (#PF)", theme.ERROR
        elif leaf:
            size = {"PTE": 1 << 12, "PDE": 1 << 21, "PDPTE": 1 << 30}[level]
            what = f"leaf → {_SIZE[size]} page frame {raw & m & ~(size - 1):#x}"
            col = color
        else:
            nxt = q.levels[q.levels.index(level) + 1]
            what = f"→ the {TABLE[nxt]} table at {raw & m & ~0xFFF:#x}"
            col = color
        sc.text(290, top + 41, what, size=11, bold=True, color=col, tag=f"points:{level}")

    def _result(self, sc: Scene, q: WalkQuestion, st: Any, read: list[dict[str, Any]],
                after: dict[int, int], top: float, W: float) -> None:
        d = st.data
        h = 64
        if st.kind == "walk_done":
            pa, psize = int(d["pa"]), int(d["page_size"])
            off = q.va & (psize - 1)
            sc.box(12, top, W - 12, top + h, "#ecfdf3", line=theme.OK, lw=2, tag="result",
                   tip=f"the {_SIZE.get(psize, str(psize))} frame at {pa - off:#x} plus the "
                       f"offset {off:#x} (bits {psize.bit_length() - 2}:0 of the address) = "
                       f"physical {pa:#x}")
            sc.text(24, top + 16, f"PA = frame {pa - off:#x} + offset {off:#x} = {pa:#x}",
                    size=13, mono=True, bold=True, color=theme.OK, tag="result:pa")
            rw = all(int(e["raw"]) & 2 for e in read)
            us = all(int(e["raw"]) & 4 for e in read)
            xd = q.nxe and any(int(e["raw"]) >> 63 for e in read)
            sc.text(24, top + 36, f"{_SIZE.get(psize, str(psize))} page · combined rights: "
                    f"{'writable' if rw else 'read-only'} (R/W AND), "
                    f"{'user' if us else 'supervisor'} (U/S AND), "
                    f"{'no execute' if xd else 'executable'} (XD OR)", size=11,
                    tag="result:rights")
            setb = [e["level"] for e in read if after.get(int(e["entry_pa"]), int(e["raw"]))
                    != int(e["raw"])]
            sc.text(24, top + 53, ("the CPU set A/D in: " + ", ".join(setb)) if setb else
                    "no A/D bit changed (already set)", size=11, color="#b45309" if setb else
                    theme.TEXT_MUTED, tag="result:ad")
            return
        if d.get("vector") == 13:
            sc.box(12, top, W - 12, top + h, "#fef2f2", line=theme.ERROR, lw=2, tag="result",
                   tip=f"bits 63:{SHIFT[q.levels[0]] + 8} of {q.va:#x} are not all equal: "
                       "#GP(0) before any table is read")
            sc.text(24, top + 18, "#GP(0), vector 13: non-canonical address", size=13,
                    bold=True, color=theme.ERROR, tag="result:gp")
            sc.text(24, top + 40, "No page walk, no #PF error code, CR2 is not written "
                    f"(bits 63:{SHIFT[q.levels[0]] + 8} must all equal bit "
                    f"{SHIFT[q.levels[0]] + 8}).", size=11, tag="result:gp")
            return
        ec = int(d.get("error_code") or 0)
        sc.box(12, top, W - 12, top + h, "#fef2f2", line=theme.ERROR, lw=2, tag="result")
        sc.text(24, top + 14, f"#PF, vector 14 · error code {ec:#x} · CR2 = {int(d['cr2']):#x}",
                size=13, mono=True, bold=True, color=theme.ERROR, tag="result:pf")
        sc.text(W - 24, top + 14, str(d.get("reason", "")), size=11, color=theme.ERROR,
                align="right", tag="result:reason")
        col_w = (W - 48) / len(ERROR_BITS)
        for k, (name, bit, one, zero) in enumerate(ERROR_BITS):
            on = bool(ec >> bit & 1)
            x = 24 + k * col_w
            right = chip(sc, x, top + 30, f"{name}={int(on)}", on=on, color=theme.ERROR,
                         tag=f"ec:{name}", tip=f"error code bit {bit}: " + (one if on else zero),
                         h=16)
            sc.text(right + 5, top + 38.5, one if on else zero, size=10,
                    color=theme.TEXT if on else theme.TEXT_MUTED, tag=f"ec:{name}")


def _canonical(va: int, levels: tuple[str, ...]) -> bool:
    top = SHIFT[levels[0]] + 8
    hi = va >> top
    return hi == 0 or hi == (1 << (64 - top)) - 1


def _mmu_of(obj: Any) -> Any:
    """The Mmu behind an Mmu, an Amd64Pmap or a Vmspace (None if there is none)."""
    from vmlab.core.x86 import Mmu

    if isinstance(obj, Mmu):
        return obj
    pmap = getattr(obj, "vm_pmap", obj)
    mmu = getattr(pmap, "mmu", None)
    return mmu if isinstance(mmu, Mmu) else None


class PageWalk(TracedAnimation):
    """The x86-64 page walk of one access (Intel SDM vol. 3A ch. 4; FreeBSD amd64 pmap.c
    builds the tables): ``PageWalk(vm_or_mmu, va, access='r', cpl=3)``.

    ``vm_or_mmu`` is a `Vmspace` (amd64 pmap), an `Amd64Pmap` or an `Mmu`. The widget calls
    ``Mmu.translate(va, access, cpl)`` with recording on; like the hardware it sets A (and D on
    a write) in the entries of a successful walk. Stepping shows each entry read, then the
    result: the physical address, or #PF with its error code and CR2, or #GP(0).
    """

    title = "The page walk"
    blurb = "CR3 → PML4E → PDPTE → PDE → PTE → frame (Intel SDM vol. 3A §4.5)"

    def __init__(self, vm_or_mmu: Any, va: Any = 0x800000000, access: Any = "r",
                 cpl: Any = 3) -> None:
        self.view = WalkView()
        fields = [Field("va", "va", parse_addr, va, "230px"),
                  Field("access", "access (r/w/x)", parse_access, access, "150px"),
                  Field("cpl", "CPL", parse_cpl, cpl, "90px")]
        super().__init__(vm_or_mmu, fields, [self.view], run_label="Walk")

    @property
    def mmu(self) -> Any:
        return _mmu_of(self.target)

    def check_target(self) -> str | None:
        if self.mmu is None:
            return (f"PageWalk needs an Mmu, an Amd64Pmap or a Vmspace with the amd64 pmap, not "
                    f"a {type(self.target).__name__}")
        return None

    def recorded(self) -> tuple[Any, ...]:
        return (self.mmu,)

    def operation(self, v: dict[str, Any]) -> Any:
        mmu = self.mmu
        levels = ("PML5E", "PML4E", "PDPTE", "PDE", "PTE")[-mmu.levels:]
        nxe = bool(mmu.efer & (1 << 11))
        self.view.question = WalkQuestion(v["va"], v["access"], v["cpl"], levels,
                                          mmu.cr3 & ~0xFFF, mmu.physmem.maxphyaddr, nxe)
        return mmu.translate(v["va"], v["access"], v["cpl"])

    def summary(self, v: dict[str, Any], walk: Any) -> str:
        if walk.ok:
            res = (f'<b style="color:{theme.OK}">PA {walk.pa:#x}</b> '
                   f"({_SIZE.get(walk.page_size, '')} page)")
        elif walk.vector == 13:
            res = f'<b style="color:{theme.ERROR}">#GP(0)</b> (non-canonical)'
        else:
            from vmlab.core.x86 import format_error_code

            res = (f'<b style="color:{theme.ERROR}">#PF error code {walk.error_code:#x} '
                   f"({html.escape(format_error_code(walk.error_code))})</b>, CR2 "
                   f"{walk.cr2:#x}: {html.escape(walk.reason)}")
        return (f'<div style="font-family:{theme.FONT};font-size:13px;padding:6px 10px;'
                f'border-left:4px solid {theme.ACCENT};margin-top:4px">'
                f"Mmu.translate({v['va']:#x}, '{v['access']}', cpl={v['cpl']}) → {res}</div>")

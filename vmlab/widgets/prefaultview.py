"""Page-fault clustering, animated: vm_fault, then vm_fault_prefault around the fault.

`PrefaultStrip(vm, va, access)` calls the process layer's ``vm_fault(map, va, fault_type)``
with recording on. The view draws the pages around the fault as a strip and replays the
``prefault_candidate`` steps (sys/vm/vm_fault.c, vm_fault_prefault, FreeBSD 13/14): candidates
are visited −1, +1, −2, +2, … pages from the fault; each gets its verdict — mapped read-only by
pmap_enter_quick, skipped (outside the window or the entry, already mapped, no page-table
page, not valid) or **stop** (resident nowhere in the chain: the loop ends) — and the strip
shows the PTEs that result. A fault that zero-filled a page or made a soft COW copy has
faultcount 1 and no prefault at all; the view says so.

Linked hover (`canvas.Scene.link`, in the browser): a page's cell in the strip and its chip in
the "order:" timeline outline each other (same page address).
"""

from __future__ import annotations

import html
import re
from typing import Any

from . import theme
from .canvas import Scene
from .diagram import DiagramView, TracedAnimation, note_box, process_states
from .inputs import Field, parse_addr
from .walkview import parse_access

__all__ = ["PrefaultStrip", "PrefaultView", "VERDICTS", "pte_values"]

PAGE = 4096
PFBAK = PFFOR = 4  # sys/vm/vm_fault.c

#: verdict -> (short label, colour, explanation)
VERDICTS = {
    "mapped": ("mapped: read-only", theme.OK, "pmap_enter_quick: a read-only PTE"),
    "outside": ("skipped: outside", theme.TEXT_MUTED, "outside the window or the entry"),
    "already_mapped": ("skipped: already mapped", "#2563eb",
                       "pmap_is_prefaultable: already mapped"),
    "no_ptp": ("skipped: no PT page", "#6b7280", "no page-table page covers it"),
    "invalid": ("skipped: not valid", "#ca8a04", "resident but not fully valid"),
    "stop": ("STOP: not resident", theme.ERROR, "resident nowhere: the loop ends"),
}
_PTE_RE = re.compile(r"PTE (0x[0-9a-fA-F]+)")


def _wrap(s: str, width: float, size: int) -> list[str]:
    """Greedy word wrap of ``s`` into lines at most ``width`` px wide (~0.6 em a glyph)."""
    per = max(1, int(width / (0.6 * size)))
    lines: list[str] = []
    for word in s.split():
        if lines and len(lines[-1]) + 1 + len(word) <= per:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def pte_values(trace: Any, i: int) -> dict[int, int]:
    """va -> raw PTE as made by the ``pmap_enter`` steps up to step ``i`` (``data['pte']`` when
    the pmap records it, else the value in the step's sentence); removals and protection
    changes forget the value (the view then shows the rights only)."""
    out: dict[int, int] = {}
    for st in trace.steps[: i + 1]:
        d = st.data
        if st.kind == "pmap_enter":
            raw = d.get("pte")
            if raw is None:
                m = _PTE_RE.search(st.text)
                raw = int(m.group(1), 16) if m else None
            if raw is not None:
                out[int(d["va"])] = int(raw)
        elif st.kind in ("pmap_remove", "pmap_protect"):
            lo, hi = int(d.get("sva", 0)), int(d.get("eva", 0))
            for va in [v for v in out if lo <= v < hi]:
                del out[va]
    return out


def _rights(raw: int) -> str:
    return "r" + ("w" if raw & 2 else "-") + ("-" if raw >> 63 else "x")


def _flag_names(raw: int) -> str:
    names = [n for b, n in ((0, "P"), (1, "RW"), (2, "US"), (5, "A"), (6, "D"), (8, "G"),
                            (10, "MANAGED"), (11, "WIRED"), (63, "XD")) if raw >> b & 1]
    return " ".join(names)


def _entry_at(snap: Any, va: int) -> Any:
    e = snap.map.entries
    for row in e:
        if int(row["start"]) <= va < int(row["end"]):
            return row
    return None


def _resident(snap: Any, row: Any, va: int) -> tuple[int, int] | None:
    """(object id, pindex) where the page of ``va`` is resident in the entry's chain."""
    if row is None or int(row["object"]) < 0:
        return None
    oid = int(row["object"])
    pindex = (va - int(row["start"]) + int(row["offset"])) // PAGE
    while oid in snap.objects:
        o = snap.objects[oid]
        if len(o.pages) and pindex in set(o.pages["pindex"].tolist()):
            return oid, pindex
        if o.backing_object < 0:
            return None
        pindex += o.backing_object_offset // PAGE
        oid = o.backing_object
    return None


class PrefaultView(DiagramView):
    """The strip of pages around one fault and the prefault candidates' verdicts."""

    def __init__(self) -> None:
        super().__init__(height=330, linked=True)
        self._key: int | None = None
        self._procs: list[dict[int, Any]] = []

    def _prepare(self, trace: Any) -> None:
        self._key = id(trace)
        self._procs = process_states(trace)
        steps = trace.steps
        self.fault_va = next((int(s.data["va"]) for s in steps if s.kind == "fault"), None)
        self.cands = [(k, dict(s.data)) for k, s in enumerate(steps)
                      if s.kind == "prefault_candidate"]
        pin = next((s.data for s in steps if s.kind == "pagein"), None)
        self.back, self.fwd = ((int(pin["behind"]), int(pin["ahead"])) if pin is not None
                               else (PFBAK, PFFOR))
        done = next((s.data for s in steps if s.kind == "fault_done"), None)
        self.faultcount = None if done is None else int(done.get("faultcount", 0))
        self.rv = None if done is None else int(done.get("rv", 0))
        reach = max([abs(int(d["va"]) - int(d["addra"])) // PAGE for _k, d in self.cands],
                    default=0)
        self.n = max(4, min(8, max(reach, self.back, self.fwd)))
        self.pid = next((p for st in self._procs for p in st), None)

    def scene(self, trace: Any, i: int) -> Scene:
        if self._key != id(trace):
            self._prepare(trace)
        sc = Scene()
        W = self.canvas.width
        va0 = self.fault_va
        procs = self._procs[i]
        snap = procs.get(self.pid) if self.pid is not None else None
        if va0 is None or snap is None:
            sc.text(W / 2, 40, "no page fault in this trace", align="center", italic=True,
                    color=theme.TEXT_MUTED)
            sc.height = 80
            return sc
        st = trace.steps[i]
        addra = va0
        entry = _entry_at(snap, addra)
        e_lo = int(entry["start"]) if entry is not None else addra
        e_hi = int(entry["end"]) if entry is not None else addra + PAGE
        starta = e_lo if addra < self.back * PAGE else max(addra - self.back * PAGE, e_lo)
        fwd_end = addra + self.fwd * PAGE
        visited = {int(d["va"]): (n, d) for n, (k, d) in enumerate(self.cands) if k <= i}
        cur_va = None
        if st.kind == "prefault_candidate" or (st.kind == "pmap_enter"
                                                and st.data.get("quick")):
            cur_va = int(st.data["va"])
        ptes = pte_values(trace, i)
        maps = {int(r["va"]): r for r in snap.mappings}
        sc.text(12, 14, f"fault at {addra:#x}: the pages around it (window: {self.back} back, "
                f"{self.fwd} forward)", size=13, bold=True, tag="title")
        sc.text(12, 32, "prefault visits −1, +1, −2, +2, … pages; it maps resident pages "
                "read-only and stops at the first page resident nowhere", size=11,
                color=theme.TEXT_MUTED, tag="subtitle")
        n = self.n
        cells = 2 * n + 1
        cw = (W - 24) / cells
        top = 64
        box_t, box_b = top + 30, top + 92
        wide = cw >= 80
        for c in range(cells):
            off = c - n
            va = addra + off * PAGE
            x0, x1 = 12 + c * cw + 2, 12 + (c + 1) * cw - 2
            xm = (x0 + x1) / 2
            tag = f"cell:{off}"
            inside = e_lo <= va < e_hi and va >= 0
            res = _resident(snap, entry, va) if inside else None
            sign = "+" if off > 0 else ("−" if off < 0 else "")
            sc.text(xm, top + 6, "fault" if off == 0 else f"{sign}{abs(off)}", size=12,
                    bold=True, align="center", color=theme.ACCENT if off == 0 else theme.TEXT,
                    tag=f"off:{off}")
            if wide:
                sc.text(xm, top + 21, f"{va:#x}", size=10, mono=True, align="center",
                        color=theme.TEXT_MUTED, tag=f"va:{off}")
            if not inside:
                fill, hatch, line, label = theme.GAP_FILL, "/", theme.GAP_LINE, "not in entry"
            elif res is not None:
                fill, hatch, line = "#dbeafe", " ", "#93c5fd"
                label = f"obj #{res[0]} p{res[1]}" if wide else f"p{res[1]}"
            else:
                fill, hatch, line, label = "white", " ", theme.CARD_BORDER, "not resident"
            hl = va == cur_va
            sc.box(x0, box_t, x1, box_b, fill, hatch=hatch, line=theme.HIGHLIGHT if hl else
                   line, lw=4 if hl else 1, dash="solid" if inside else "dashed", tag=tag,
                   tip=self._tip(va, off, inside, res, maps.get(va), ptes.get(va),
                                 visited.get(va)))
            # narrow cells (a wide window): the label wraps onto two lines above the PTE
            lab_lines = [label] if wide else _wrap(label, x1 - x0 - 4, 9)[:2]
            lab_y = box_t + 14 if len(lab_lines) == 1 else box_t + 9
            for k2, ln in enumerate(lab_lines):
                sc.text(xm, lab_y + 10 * k2, ln, size=10 if wide else 9, align="center",
                        color=theme.TEXT if res is not None else theme.TEXT_MUTED,
                        tag=f"res:{off}")
            # the PTE now
            m = maps.get(va)
            raw = ptes.get(va)
            if m is not None:
                rights = _rights(raw) if raw is not None else theme.prot_str(int(m["prot"]))
                quick = raw is not None and not raw & 0x22  # no RW, no A: pmap_enter_quick
                col = theme.PROT_COLORS[(1 if rights[1] == "-" else 3)]
                sc.box(x0 + 4, box_t + 26, x1 - 4, box_t + 44, col, line=None,
                       tag=f"pte:{off}")
                sc.text(xm, box_t + 35.5, f"PTE {rights}" if wide else rights,
                        size=10, mono=True, bold=True, color="white", align="center",
                        tag=f"pte:{off}")
                if wide:
                    sc.text(xm, box_t + 54, "quick: no A, no RW" if quick else
                            f"pa {int(m['pa']):#x}", size=9, align="center",
                            color=theme.TEXT_MUTED, tag=f"praw:{off}")
            else:
                sc.text(xm, box_t + 35.5, "no PTE", size=10, italic=True, align="center",
                        color=theme.TEXT_MUTED, tag=f"pte:{off}")
            # visit order and verdict
            v = visited.get(va)
            if v is not None:
                order, d = v
                label_v, col_v, _why = VERDICTS.get(d["verdict"], (d["verdict"],
                                                                   theme.TEXT, ""))
                sc.box(x0, box_t - 9, x0 + 18, box_t + 7, col_v, line="white", tag=f"order:{off}")
                sc.text(x0 + 9, box_t - 0.5, str(order + 1), size=10, bold=True,
                        color="white", align="center", tag=f"order:{off}")
                parts = label_v.split(": ")
                if not wide:
                    parts = [w for p in parts for w in _wrap(p, x1 - x0 + 2, 9)]
                for k2, wd in enumerate(parts[:3]):
                    sc.text(xm, box_b + 11 + 12 * k2, wd, size=10 if wide else 9,
                            bold=k2 == 0, color=col_v, align="center", tag=f"verdict:{off}")
        # window and entry markers
        def xpos(a: int) -> float:
            return 12 + ((a - addra) / PAGE + n) * cw

        lo_x, hi_x = xpos(starta), xpos(fwd_end + PAGE)
        lo_x, hi_x = max(lo_x, 12), min(hi_x, W - 12)
        yb = box_b + 44
        sc.line(lo_x, yb, hi_x, yb, color=theme.ACCENT, lw=2, tag="window")
        sc.line(lo_x, yb - 5, lo_x, yb + 5, color=theme.ACCENT, lw=2, tag="window")
        sc.line(hi_x, yb - 5, hi_x, yb + 5, color=theme.ACCENT, lw=2, tag="window")
        sc.text((lo_x + hi_x) / 2, yb + 11, f"window: starta = {starta:#x} … addra + "
                f"{self.fwd} pages (entry [{e_lo:#x}, {e_hi:#x}))", size=10,
                color=theme.ACCENT, align="center", tag="window")
        # the PTE of the page this step is about
        y = yb + 30
        focus = cur_va if cur_va is not None else addra
        raw = ptes.get(focus)
        m = maps.get(focus)
        if raw is not None:
            detail = f"PTE of {focus:#x} = {raw:#018x}: {_flag_names(raw)}"
        elif m is not None:
            detail = (f"{focus:#x} is mapped → pa {int(m['pa']):#x}, "
                      f"{theme.prot_str(int(m['prot']))} (made before this run)")
        else:
            detail = f"{focus:#x} has no PTE"
        sc.text(12, y, detail, size=11, mono=True, tag="detail")
        # the visiting order as a timeline
        y += 18
        sc.text(12, y + 8, "order:", size=11, bold=True, tag="timeline")
        x = 60.0
        total = 2 * max(self.back, self.fwd)
        for k in range(total):
            off = ((k >> 1) + 1) * (-1 if k & 1 == 0 else 1)
            va = addra + off * PAGE
            v = visited.get(va) if k < len(self.cands) else None
            if v is not None and v[0] != k:
                v = None
            col = VERDICTS[v[1]["verdict"]][1] if v is not None else "white"
            label = f"{'+' if off > 0 else '−'}{abs(off)}"
            w = 34
            hl = v is not None and va == cur_va
            later = any(int(d["va"]) == va for _k, d in self.cands)
            why = (html.escape(VERDICTS[v[1]["verdict"]][2]) if v is not None else
                   "examined at a later step" if later else "never examined")
            sc.box(x, y, x + w, y + 17, col, line=theme.HIGHLIGHT if hl else theme.CARD_BORDER,
                   lw=3 if hl else 1, tag=f"tl:{k}",
                   tip=f"<b>{va:#x}</b> ({off:+d} pages): candidate {k + 1}<br>{why}")
            sc.link([f"cell:{off}", f"tl:{k}"])  # the same page in the strip
            sc.text(x + w / 2, y + 9, label, size=10, mono=True, bold=v is not None,
                    color="white" if v is not None else theme.TEXT_MUTED, align="center",
                    tag=f"tl:{k}")
            x += w + 3
            if x > W - 60:
                break
        stopped = any(d["verdict"] == "stop" for k, d in self.cands if k <= i)
        if stopped:
            sc.text(x + 4, y + 9, "loop stopped", size=10, bold=True, color=theme.ERROR,
                    tag="timeline")
        # what happened overall
        y += 30
        note = self._note(trace, i)
        note_box(sc, 12, y, W - 12, y + 40, note, color=theme.ACCENT, tag="note")
        sc.height = int(y + 50)
        return sc

    def _note(self, trace: Any, i: int) -> list[str]:
        if self.faultcount == 1 and not self.cands:
            return ["faultcount = 1: no prefault",
                    "vm_fault zero-filled a page or made a soft COW copy, so it does not "
                    "prefault (vm_fault.c)."]
        if self.rv not in (None, 0):
            return [f"the fault failed ({theme.kern_str(self.rv)})",
                    "nothing is mapped and there is no prefault."]
        done = [d for k, d in self.cands if k <= i]
        mapped = sum(d["verdict"] == "mapped" for d in done)
        return [f"{len(done)} of {len(self.cands)} candidates examined · {mapped} mapped "
                "read-only so far",
                "pmap_enter_quick never sets RW (nor A, D): a later write faults again, which "
                "keeps copy-on-write correct."]

    @staticmethod
    def _tip(va: int, off: int, inside: bool, res: Any, m: Any, raw: int | None,
             v: Any) -> str:
        parts = [f"<b>{va:#x}</b> ({off:+d} pages)"]
        if not inside:
            parts.append("outside the faulting entry")
        elif res is None:
            parts.append("not resident in the entry's object chain")
        else:
            parts.append(f"resident: object #{res[0]} pindex {res[1]}")
        if m is not None:
            parts.append(f"mapped → pa {int(m['pa']):#x}, rights "
                         f"{theme.prot_str(int(m['prot']))}")
        if raw is not None:
            parts.append(f"PTE {raw:#018x}")
        if v is not None:
            parts.append(f"candidate {v[0] + 1}: {html.escape(VERDICTS[v[1]['verdict']][2])}")
        return "<br>".join(parts)


class PrefaultStrip(TracedAnimation):
    """``PrefaultStrip(vm, va, access='r')``: vm_fault(map, va, fault_type) on process ``vm``
    (a `Vmspace`), then FreeBSD's vm_fault_prefault (sys/vm/vm_fault.c) around it, animated."""

    title = "Page-fault clustering"
    blurb = "vm_fault, then vm_fault_prefault maps resident neighbours read-only"

    def __init__(self, vm: Any, va: Any = 0x800000000, access: Any = "r") -> None:
        self.view = PrefaultView()
        fields = [Field("va", "va", parse_addr, va, "230px"),
                  Field("access", "access (r/w/x)", parse_access, access, "150px")]
        super().__init__(vm, fields, [self.view], run_label="Fault")

    def check_target(self) -> str | None:
        return _need_vmspace(self.target, "PrefaultStrip")

    def operation(self, v: dict[str, Any]) -> Any:
        from vmlab.core import VM_PROT, trunc_page, vm_fault

        prot = {"r": VM_PROT.READ, "w": VM_PROT.WRITE, "x": VM_PROT.EXECUTE}[v["access"]]
        return vm_fault(self.target.vm_map, trunc_page(v["va"]), int(prot))

    def summary(self, v: dict[str, Any], rv: Any) -> str:
        view = self.view
        cands = [d for _k, d in view.cands]
        mapped = [d["va"] for d in cands if d["verdict"] == "mapped"]
        stop = next((d for d in cands if d["verdict"] == "stop"), None)
        tone = theme.OK if int(rv) == 0 else theme.ERROR
        parts = [f'vm_fault(map, {v["va"] & ~0xFFF:#x}, {v["access"]}) returned '
                 f'<b style="color:{tone}">{html.escape(theme.kern_str(int(rv)))}</b>']
        if cands:
            parts.append(f"prefault mapped {len(mapped)} page(s) read-only"
                         + (f" ({', '.join(hex(a) for a in mapped)})" if mapped else ""))
            if stop is not None:
                parts.append(f"and stopped at {int(stop['va']):#x}: resident nowhere")
        elif int(rv) == 0:
            parts.append("no prefault (faultcount 1)" if view.faultcount == 1 else
                         "no prefault candidates")
        return (f'<div style="font-family:{theme.FONT};font-size:13px;padding:6px 10px;'
                f'border-left:4px solid {theme.ACCENT};margin-top:4px">{"; ".join(parts)}.</div>')


def _need_vmspace(obj: Any, who: str) -> str | None:
    from vmlab.core import Vmspace

    if not isinstance(obj, Vmspace):
        return f"{who} needs a process (a Vmspace from vmspace_alloc or exec_image), not a " \
               f"{type(obj).__name__}"
    if obj.exited:
        return f"process {obj.pid} has exited"
    return None

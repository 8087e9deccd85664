"""fork(2) and copy-on-write, animated: vmspace_fork entry by entry, then writes that break COW.

`ForkView(vm, writes)` calls the process layer's ``fork(vm)`` (→ vmspace_fork, sys/vm/vm_map.c:
vmspace_fork, vm_map_copy_entry) with recording on, then the user stores in ``writes``
(``vm_write``: the MMU refuses, vm_fault runs; vm_map_lookup shadows a NEEDS_COPY entry,
vm_fault copies the page — or moves it when nobody else can see it, vm_fault_cow's rename).

The view puts the parent's entries (left) and the child's (right) side by side, one row per
address range, with the VM objects in the middle as shared boxes: a line links each entry to
its object, a curved arrow links a shadow object to the object it shadows. Badges: COW,
NC (NEEDS_COPY: no private object yet, the first write will shadow), the inheritance
(share / copy / none / zero), the number of PTEs and whether they are writable.

``inherit="0x800200000:none, 0x800201000:share"`` first calls minherit(2) (sys/vm/vm_mmap.c:
kern_minherit → vm_map_inherit) on the whole entry holding each address, so vmspace_fork's
switch on the entry's inheritance takes another branch. Pointing at a row outlines the other
process's row for the same range and the objects both map (`linking.link_tags`, in the
browser); pointing at an object outlines the rows that map it.
"""

from __future__ import annotations

import html
import re
from typing import Any

from . import theme
from .canvas import Scene
from .diagram import DiagramView, TracedAnimation, process_states
from .inputs import Field, InputError, parse_addr
from .prefaultview import _need_vmspace

__all__ = ["ForkView", "ForkDiagram", "parse_inherit", "parse_writes"]

COW, NEEDS_COPY, GUARD, GROWS_DOWN = 0x4, 0x8, 0x10000, 0x1000
_INH = {0: "share", 1: "copy", 2: "none", 3: "zero"}
_INH_BY_NAME = {v: k for k, v in _INH.items()}
_OBJT_BY_NAME = {"SWAP": 1, "VNODE": 2, "DEVICE": 3, "PHYS": 4, "DEAD": 5,
                 "SG": 6, "MGTDEVICE": 7}
PX, OX0, OX1, CX = 12, 318, 542, 576  # parent x, object column, child x
EW = 272  # entry row width
ROW_H, ROW_GAP, OBJ_H = 32, 6, 40
TOP = 56
MAX_ROWS = 24  # more address ranges than this: the least interesting are folded away


def _pair_text(x: Any) -> str:
    """One list item as the text box shows it: ``"who:0x…"`` from a (who, address) pair, the
    string itself, anything else as it prints (the parser then says what is wrong)."""
    if isinstance(x, list | tuple) and len(x) == 2:
        a, b = x
        return f"{a}:{b:#x}" if isinstance(b, int) and not isinstance(b, bool) else f"{a}:{b}"
    return str(x).strip()


def as_text(v: Any) -> str:
    """A constructor argument (string, list of strings or pairs, anything) as box text; never
    raises, so a bad argument reaches the form's parser and is reported inline."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        v = list(v.items())
    if isinstance(v, list | tuple):
        return ", ".join(_pair_text(x) for x in v)
    return str(v)


def parse_writes(v: Any, *, what: str = "writes") -> list[tuple[str, int]]:
    """``"child:0x800000000, parent:0x800001000"`` (or a list of such strings or of
    (who, address) pairs) -> [("child", va), ("parent", va)]."""
    items = [t for t in re.split(r"[,;]", as_text(v)) if t.strip()]
    out: list[tuple[str, int]] = []
    for t in items:
        who, sep, addr = t.strip().partition(":")
        who = {"c": "child", "child": "child", "p": "parent", "parent": "parent"}.get(
            who.strip().lower(), "")
        if not sep or not who:
            raise InputError(f"{what}: {t.strip()!r} should be child:ADDRESS or "
                             "parent:ADDRESS")
        out.append((who, parse_addr(addr.strip(), what=f"{what} ({who})")))
    return out


def parse_inherit(v: Any, *, what: str = "inheritance",
                  vm: Any = None) -> list[tuple[int, int]]:
    """``"0x800200000:none, 0x800201000:share"`` -> [(va, VM_INHERIT_*), ...]. Words: share,
    copy, none, zero (vm_inherit_t, sys/vm/vm.h; a ``VM_INHERIT_`` prefix is allowed) or
    0-3. With ``vm`` (a Vmspace), each address must lie inside one of its map's entries."""
    items = [t for t in re.split(r"[,;]", as_text(v)) if t.strip()]
    out: list[tuple[int, int]] = []
    for t in items:
        addr, sep, word = t.strip().rpartition(":")
        if not sep or not addr.strip():
            raise InputError(f"{what}: {t.strip()!r} should be ADDRESS:share, copy, none "
                             "or zero")
        va = parse_addr(addr.strip(), what=what)
        w = word.strip().lower().removeprefix("vm_inherit_")
        if w in _INH_BY_NAME:
            inh = _INH_BY_NAME[w]
        elif w.isdigit() and int(w) in _INH:
            inh = int(w)
        else:
            raise InputError(f"{what}: {word.strip()!r} is not an inheritance (share, copy, "
                             "none or zero)")
        if vm is not None and _entry_range(vm, va) is None:
            raise InputError(f"{what}: {va:#x} is not inside any entry of the map")
        out.append((va, inh))
    return out


def _entry_range(vm: Any, va: int) -> tuple[int, int] | None:
    """[start, end) of the entry of ``vm``'s map holding ``va`` (None: in a gap, or ``vm`` is
    not a process: the target check reports that)."""
    m = getattr(vm, "vm_map", None)
    if m is None or not hasattr(m, "entries"):
        return None
    for e in m.entries():
        if e.start <= va < e.end:
            return int(e.start), int(e.end)
    return None


def _badge(sc: Scene, x: float, y: float, label: str, color: str, *, tag: str,
           outline: bool = False, tip: str = "") -> float:
    w = 7 + 6.2 * len(label)
    sc.box(x, y, x + w, y + 14, "white" if outline else color, line=color, tag=tag, tip=tip)
    sc.text(x + w / 2, y + 7.5, label, size=9, mono=True, bold=True,
            color=color if outline else "white", align="center", tag=tag)
    return x + w + 3


class ForkDiagram(DiagramView):
    """Parent and child maps side by side with their objects (see module doc)."""

    def __init__(self) -> None:
        super().__init__(height=420, linked=True)
        self.parent_pid: int | None = None
        self.child_pid: int | None = None
        self._key: int | None = None
        self._procs: list[dict[int, Any]] = []
        # The parent as it was before vmspace_fork: shown for the steps recorded before the
        # first process snapshot (the fork's first steps only lock the map).
        self.before: Any = None

    def _prepare(self, trace: Any) -> None:
        self._key = id(trace)
        self._procs = process_states(trace, with_index=True)
        self.shown_ranges = self._pick_rows(trace)

    def _pick_rows(self, trace: Any) -> set[tuple[int, int]] | None:
        """The ranges drawn when the maps have more than MAX_ROWS: first those a fault or a
        write touches, then those with an object, then the rest, in address order."""
        allr: dict[tuple[int, int], int] = {}
        faults = [int(s.data["va"]) for s in trace.steps if s.kind == "fault"]
        snaps = {id(v[1]): v[1] for st in self._procs for v in st.values()}
        for snap in snaps.values():
            for row in snap.map.entries:
                k = (int(row["start"]), int(row["end"]))
                pri = 0 if any(k[0] <= va < k[1] for va in faults) else (
                    1 if int(row["object"]) >= 0 else 2)
                allr[k] = min(pri, allr.get(k, 3))
        if len(allr) <= MAX_ROWS:
            return None
        return set(sorted(allr, key=lambda k: (allr[k], k))[:MAX_ROWS])

    def scene(self, trace: Any, i: int) -> Scene:
        if self._key != id(trace):
            self._prepare(trace)
        sc = Scene()
        W = self.canvas.width
        procs = self._procs[i]
        pe = procs.get(self.parent_pid, (-1, None))
        if pe[1] is None and self.before is not None and self.before.pid == self.parent_pid:
            pe = (-1, self.before)
        ce = procs.get(self.child_pid, (-1, None))
        par, chi = pe[1], ce[1]
        st = trace.steps[i]
        about = trace.states[st.state]
        about_pid = getattr(about, "pid", None)
        d = st.data
        sc.text(PX, 14, f"parent (pid {self.parent_pid})", size=13, bold=True, tag="head")
        sc.text((OX0 + OX1) / 2, 14, "VM objects", size=13, bold=True, align="center",
                tag="head")
        sc.text(CX, 14, f"child (pid {self.child_pid})" if self.child_pid is not None else
                "child", size=13, bold=True, tag="head")
        sc.text(PX, 32, "entry · size", size=10, color=theme.TEXT_MUTED, tag="head")
        sc.text(CX, 32, "entry · size", size=10, color=theme.TEXT_MUTED, tag="head")
        if par is None:
            sc.height = 80
            return sc
        # rows: one per address range of either map
        ranges: dict[tuple[int, int], dict[str, Any]] = {}
        for side, snap in (("p", par), ("c", chi)):
            if snap is None:
                continue
            for row in snap.map.entries:
                key = (int(row["start"]), int(row["end"]))
                ranges.setdefault(key, {})[side] = row
        hidden = 0
        if self.shown_ranges is not None:
            hidden = sum(k not in self.shown_ranges for k in ranges)
            ranges = {k: v for k, v in ranges.items() if k in self.shown_ranges}
        keys = sorted(ranges)
        row_y = {k: TOP + n * (ROW_H + ROW_GAP) for n, k in enumerate(keys)}
        # highlight targets
        hl_rows: dict[str, set[tuple[int, int]]] = {"p": set(), "c": set()}
        hl_objs: set[int] = set()
        side_of = "p" if about_pid == self.parent_pid else "c"
        if st.kind == "fork_entry":
            hl_rows["p"].add((int(d["start"]), int(d["end"])))
            if int(d.get("child_entry", -1)) >= 0:
                hl_rows["c"].add((int(d["start"]), int(d["end"])))
            if int(d.get("object", -1)) >= 0:
                hl_objs.add(int(d["object"]))
        elif st.kind in ("shadow", "object_alloc"):
            hl_objs.add(int(d.get("new_object", d.get("object", -1))))
        elif st.kind == "cow_copy":
            hl_objs.update({int(d["to_object"]), int(d["from_object"])})
        fault_va = None
        if st.kind in ("fault", "lookup", "shadow", "cow_copy", "zero_fill", "chain_walk",
                       "pmap_enter", "fault_done", "fault_path", "object_alloc",
                       "pmap_protect", "pmap_remove"):
            fault_va = _last_fault_va(trace, i)
            if st.kind in ("pmap_protect", "pmap_remove"):
                fault_va = int(d["sva"])
        if fault_va is not None:
            for k in keys:
                if k[0] <= fault_va < k[1]:
                    hl_rows[side_of].add(k)
        # objects: ordered by the rows that reference them, each chain top-down
        objects: dict[int, Any] = {}  # the newer snapshot wins for shared objects
        for _idx, snap in sorted((pe, ce), key=lambda t: t[0]):
            if snap is not None:
                objects.update(snap.objects)
        order: list[int] = []
        desired: dict[int, float] = {}
        for k in keys:
            for side in ("p", "c"):
                row = ranges[k].get(side)
                if row is None or int(row["object"]) < 0:
                    continue
                snap = par if side == "p" else chi
                for depth, oid in enumerate(snap.chain(int(row["object"]))):
                    if oid not in desired:
                        order.append(oid)
                        desired[oid] = row_y[k] + depth * (OBJ_H + 8)
        obj_y: dict[int, float] = {}
        y_next = TOP
        for oid in order:
            y = max(desired[oid] - (OBJ_H - ROW_H) / 2, y_next)
            obj_y[oid] = y
            y_next = y + OBJ_H + 8
        bottom = max([row_y[k] + ROW_H for k in keys] + [y_next - 8, TOP])
        # links entry -> object (drawn first, under the boxes)
        for k in keys:
            for side in ("p", "c"):
                row = ranges[k].get(side)
                if row is None or int(row["object"]) not in obj_y:
                    continue
                oid = int(row["object"])
                ef = int(row["eflags"])
                y0 = row_y[k] + ROW_H / 2
                y1 = obj_y[oid] + OBJ_H / 2
                color = "#7c3aed" if int(row["inheritance"]) == 0 else (
                    "#d97706" if ef & COW else theme.TEXT_MUTED)
                dash = "dashed" if ef & NEEDS_COPY else "solid"
                if side == "p":
                    sc.line(PX + EW, y0, OX0, y1, color=color, lw=2, dash=dash,
                            tag=f"link:p:{k[0]:#x}")
                else:
                    sc.line(CX, y0, OX1, y1, color=color, lw=2, dash=dash,
                            tag=f"link:c:{k[0]:#x}")
        # shadow links
        for oid, y in obj_y.items():
            b = objects[oid].backing_object
            if b in obj_y:
                yb = obj_y[b]
                sc.arrow(OX0 + 14, y + OBJ_H, OX0 + 14, yb, color="#0f766e", lw=2,
                         tag=f"shadow:{oid}") if yb > y else sc.arrow(
                    OX0 + 14, y, OX0 + 14, yb + OBJ_H, color="#0f766e", lw=2,
                    tag=f"shadow:{oid}")
        # what pointing at a box outlines (in the browser): a row -> both rows of its range
        # and the objects they map; an object -> the rows that map it
        row_links: dict[tuple[int, int], str] = {}
        obj_links: dict[int, list[str]] = {oid: [f"obj:{oid}"] for oid in obj_y}
        for k in keys:
            tags = [f"row:{side}:{k[0]:#x}" for side, snap in (("p", par), ("c", chi))
                    if snap is not None]
            oids = []
            for side in ("p", "c"):
                row = ranges[k].get(side)
                if row is not None and int(row["object"]) in obj_y:
                    oid = int(row["object"])
                    oids.append(f"obj:{oid}")
                    obj_links[oid].append(f"row:{side}:{k[0]:#x}")
            row_links[k] = " ".join(dict.fromkeys(tags + oids))
        # entry rows
        for k in keys:
            y = row_y[k]
            for side, x0 in (("p", PX), ("c", CX)):
                snap = par if side == "p" else chi
                row = ranges[k].get(side)
                tag = f"row:{side}:{k[0]:#x}"
                hl = k in hl_rows[side]
                if snap is None:
                    continue
                if row is None:
                    why = "hole (inheritance none)" if side == "c" else "not in the parent"
                    sc.box(x0, y, x0 + EW, y + ROW_H, None, line=theme.CARD_BORDER,
                           dash="dashed", tag=tag, links=row_links[k],
                           tip=f"<b>[{k[0]:#x}, {k[1]:#x})</b>: {why}")
                    sc.text(x0 + EW / 2, y + ROW_H / 2, why, size=10, italic=True,
                            color=theme.TEXT_MUTED, align="center", tag=tag)
                    continue
                self._entry(sc, snap, row, x0, y, hl, tag, links=row_links[k])
        # object boxes
        for oid, y in obj_y.items():
            self._object(sc, objects[oid], y, oid in hl_objs,
                         links=" ".join(dict.fromkeys(obj_links[oid])))
        y = bottom + 14
        if hidden:
            sc.text(PX, y + 4, f"⋯ {hidden} more address range(s) not shown (no fault, no "
                    "object yet)", size=10, italic=True,
                    color=theme.TEXT_MUTED, tag="hidden")
            y += 18
        sc.text(PX, y + 6, "links:", size=10, bold=True, tag="legend")
        x = PX + 40
        for label, color, dash in (("maps (copy)", theme.TEXT_MUTED, "solid"),
                                   ("COW", "#d97706", "solid"),
                                   ("COW + NEEDS_COPY", "#d97706", "dashed"),
                                   ("shared", "#7c3aed", "solid"),
                                   ("shadow → backing object", "#0f766e", "solid")):
            sc.line(x, y + 6, x + 22, y + 6, color=color, lw=2, dash=dash, tag="legend")
            sc.text(x + 26, y + 6, label, size=10, tag="legend")
            x += 26 + 6.0 * len(label) + 14
        y += 18
        sc.text(PX, y + 6, "badges: COW = copy-on-write · NC = NEEDS_COPY (the first write "
                "shadows the object) · PTE count and rights (r- = write-protected)", size=10,
                color=theme.TEXT_MUTED, tag="legend")
        sc.height = int(y + 20)
        _ = W
        return sc

    def _entry(self, sc: Scene, snap: Any, row: Any, x0: float, y: float, hl: bool,
               tag: str, *, links: str = "") -> None:
        start, end = int(row["start"]), int(row["end"])
        ef, prot = int(row["eflags"]), int(row["protection"])
        guard = bool(ef & GUARD)
        maps = snap.mappings
        sel = maps[(maps["va"] >= start) & (maps["va"] < end)] if len(maps) else maps
        npte = len(sel)
        writable = int((sel["prot"] & 2 != 0).sum()) if npte else 0
        tip = (f"<b>[{start:#x}, {end:#x})</b> {theme.fmt_size(end - start)}<br>"
               f"prot {theme.prot_str(prot)} / max {theme.prot_str(int(row['max_protection']))}"
               f", inheritance {_INH.get(int(row['inheritance']), '?')}<br>"
               f"eflags {html.escape(theme.eflags_str(ef))}<br>object "
               f"{'#' + str(int(row['object'])) if int(row['object']) >= 0 else 'none'}, "
               f"offset {int(row['offset']):#x}<br>{npte} PTE(s), {writable} writable")
        sc.box(x0, y, x0 + EW, y + ROW_H, "#eef0f4" if guard else "white",
               line=theme.HIGHLIGHT if hl else theme.CARD_BORDER, lw=3 if hl else 1, tag=tag,
               tip=tip, hatch="/" if guard else " ", links=links)
        sc.box(x0, y, x0 + 5, y + ROW_H, theme.prot_color(prot, ef), line=None, tag=tag)
        sc.text(x0 + 10, y + 10, f"{start:#x}", size=10, mono=True, bold=True, tag=tag)
        sc.text(x0 + 10 + 6.1 * len(f"{start:#x}") + 6, y + 10, theme.fmt_size(end - start),
                size=10, color=theme.TEXT_MUTED, tag=tag)
        inh = _INH.get(int(row["inheritance"]), "?")
        pte = (f"{npte} PTE{'s' if npte != 1 else ''}" + (
            "" if not npte else " rw" if writable == npte else " r-" if not writable else
            f" ({writable} rw)"))
        sc.text(x0 + 10, y + 23, f"{inh} · {pte}", size=9, color=theme.TEXT_MUTED,
                tag=f"{tag}:pte")
        x = x0 + EW - 6
        badges = [("guard", theme.GUARD_FILL, False)] if guard else []
        if ef & NEEDS_COPY:
            badges.append(("NC", "#d97706", True))
        if ef & COW:
            badges.append(("COW", "#d97706", False))
        badges.append((theme.prot_str(prot), theme.prot_color(prot, ef), False))
        for label, color, outline in badges:
            w = 7 + 6.2 * len(label)
            x -= w
            _badge(sc, x, y + 9, label, color, outline=outline, tag=f"{tag}:{label}")
            x -= 3

    def _object(self, sc: Scene, o: Any, y: float, hl: bool, *, links: str = "") -> None:
        tcol = theme.OBJT_COLORS.get(_OBJT_BY_NAME.get(o.type, 0), "#999999")
        kind = {"VNODE": "vnode", "SWAP": "anon", "PHYS": "phys"}.get(
            o.type, o.type.lower())
        name = f"#{o.id} {kind}" + (f" {o.handle}" if o.handle else "")
        pages = o.pages["pindex"].tolist() if len(o.pages) else []
        vals = ", ".join(f"{p}: {html.escape(repr(v))[:24]}" for p, v in
                         zip(pages, o.values, strict=False))
        tip = (f"<b>object #{o.id}</b> {o.type} {html.escape(o.handle)}<br>"
               f"ref_count {o.ref_count}, shadow_count {o.shadow_count}, size {o.size} "
               f"pages<br>backing: "
               f"{'#' + str(o.backing_object) if o.backing_object >= 0 else 'none'}"
               f"<br>resident pages {{{vals}}}")
        tag = f"obj:{o.id}"
        sc.box(OX0, y, OX1, y + OBJ_H, "#fffbeb" if hl else "white",
               line=theme.HIGHLIGHT if hl else theme.CARD_BORDER, lw=3 if hl else 1.2,
               tag=tag, tip=tip, links=links)
        sc.box(OX0, y, OX0 + 6, y + OBJ_H, tcol, line=None, tag=tag)
        sc.text(OX0 + 12, y + 11, name[:30], size=11, bold=True, tag=tag)
        sc.text(OX0 + 12, y + 28, f"ref {o.ref_count} · shadows {o.shadow_count}", size=10,
                color=theme.TEXT_MUTED, tag=f"{tag}:counts")
        # resident pages as small squares
        x = OX1 - 8
        shown = pages[:8]
        for _p in reversed(shown):
            x -= 11
            sc.box(x, y + 23, x + 9, y + 32, "#60a5fa", line=None, tag=f"{tag}:page",
                   tip="")
        if len(pages) > len(shown):
            sc.text(x - 3, y + 28, f"+{len(pages) - len(shown)}", size=9, align="right",
                    color=theme.TEXT_MUTED, tag=f"{tag}:page")


def _last_fault_va(trace: Any, i: int) -> int | None:
    for st in reversed(trace.steps[: i + 1]):
        if st.kind == "fault":
            return int(st.data["va"])
        if st.kind == "fork_entry":
            return None
    return None


def _default_writes(vm: Any) -> str:
    """child:ADDR, parent:ADDR for the first writable, copied entry with resident pages."""
    from vmlab.core.process_snapshot import process_snapshot

    try:
        snap = process_snapshot(vm, False)
    except Exception:  # noqa: BLE001 - a widget default must never raise
        return ""
    best = None
    for row in snap.map.entries:
        if int(row["protection"]) & 2 and int(row["inheritance"]) == 1 and \
                not int(row["eflags"]) & GUARD:
            oid = int(row["object"])
            resident = oid in snap.objects and len(snap.objects[oid].pages) > 0
            if best is None or (resident and not best[1]):
                best = (int(row["start"]), resident)
    if best is None:
        return ""
    return f"child:{best[0]:#x}, parent:{best[0]:#x}"


class ForkView(TracedAnimation):
    """``ForkView(vm, writes="child:0x…, parent:0x…", inherit="0x…:none")``: fork(2) on
    process ``vm`` (a `Vmspace`) — FreeBSD's vmspace_fork, entry by entry — then the listed
    user writes, each a `vm_write` that may break copy-on-write. ``inherit`` first sets the
    inheritance of the entries holding the given addresses with minherit(2) (not animated:
    the trace is the fork). Each Run forks a new child. Bad arguments are reported inline."""

    title = "fork(2): vmspace_fork and copy-on-write"
    blurb = "inheritance per entry, shared objects, then writes that break COW"

    def __init__(self, vm: Any, writes: Any = None, *, inherit: Any = None) -> None:
        self.view = ForkDiagram()
        self.child: Any = None
        self.inherited: list[tuple[int, int, int]] = []  # minherit calls of the last Run
        if writes is None:
            writes = _default_writes(vm) if _need_vmspace(vm, "ForkView") is None else ""
        # the boxes hold text; the form's parsers judge it (inline errors, never a raise)
        fields = [Field("inheritance", "inheritance", self._parse_inherit,
                        as_text(inherit), "520px"),
                  Field("writes", "then write at", _parse_writes_opt, as_text(writes),
                        "520px")]
        super().__init__(vm, fields, [self.view], run_label="Fork")

    def _parse_inherit(self, v: Any, *, what: str = "inheritance") -> list[tuple[int, int]]:
        vm = self.target if _need_vmspace(self.target, "ForkView") is None else None
        return parse_inherit(v, what=what, vm=vm)

    def check_target(self) -> str | None:
        return _need_vmspace(self.target, "ForkView")

    def operation(self, v: dict[str, Any]) -> Any:
        from vmlab.core import VmAccessError, fork, vm_write
        from vmlab.core.process_snapshot import process_snapshot
        from vmlab.core.trace import recording

        self.view.parent_pid = self.target.pid
        self.view.child_pid = None
        self.inherited = self._apply_inherit(v["inheritance"])
        self.view.before = process_snapshot(self.target, with_child=False)
        err, child = fork(self.target)
        done: list[tuple[str, int, Any]] = []
        if err or child is None:
            return err, None, done
        self.child = child
        self.view.child_pid = child.pid
        with recording(self.target, child, trace=self.recording):
            for who, va in v["writes"]:
                proc = child if who == "child" else self.target
                try:
                    vm_write(proc, va, f"{who} wrote")
                    done.append((who, va, None))
                except VmAccessError as exc:
                    done.append((who, va, exc))
                    break
        return err, child, done

    def _apply_inherit(self, items: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """minherit(2) on the whole entry holding each address, before the fork and outside
        the recording (the animation is vmspace_fork). Returns (start, end, inherit)."""
        from vmlab.core import minherit

        spans = []
        for va, inh in items:  # check all first: a bad one changes nothing
            r = _entry_range(self.target, va)
            if r is None:
                raise InputError(f"inheritance: {va:#x} is not inside any entry of the map")
            spans.append((*r, inh))
        saved = self.target._trace
        self.target._trace = None
        try:
            for start, end, inh in spans:
                err = minherit(self.target, start, end - start, inh)
                if err:
                    raise InputError(f"inheritance: minherit({start:#x}, {end - start:#x}, "
                                     f"{_INH[inh]}) failed with errno {err}")
        finally:
            self.target._trace = saved
            if self.recording is not None:
                self.recording.mark_dirty(self.target)
        return spans

    def summary(self, v: dict[str, Any], result: Any) -> str:
        err, child, done = result
        pre = [f"minherit({s:#x}, {e - s:#x}, {_INH[i]}) → 0"
               for s, e, i in self.inherited]
        if err:
            body = " · ".join([*pre, f'fork returned <b style="color:{theme.ERROR}">errno '
                               f"{err}</b>"])
        else:
            parts = [*pre, f"fork() → child pid {child.pid}"]
            for who, va, exc in done:
                parts.append(f"{who} writes {va:#x}: " + (
                    f'<b style="color:{theme.ERROR}">{html.escape(str(exc))}</b>' if exc else
                    "ok"))
            body = " · ".join(parts)
        return (f'<div style="font-family:{theme.FONT};font-size:13px;padding:6px 10px;'
                f'border-left:4px solid {theme.ACCENT};margin-top:4px">{body}</div>')


def _parse_writes_opt(v: Any, *, what: str = "writes") -> list[tuple[str, int]]:
    if v is None or (isinstance(v, str) and not v.strip()):
        return []
    return parse_writes(v, what=what)

"""The one-call widgets lessons use: ``Insert``, ``Find``, ``GapSearch``, ``LockTimeline``,
``Overview``.

Each runs one core operation **through the core's public functions** (vm_map_lock,
vm_map_insert, vm_map_find, vm_map_findspace, ...) with recording on
(`vmlab.core.trace.recording`), then shows the trace in linked views driven by a `Player`. A
widget never changes core state in any other way. Inputs are text boxes that validate: a bad
value shows an inline message and leaves the views as they were; so does an exception the core
raises (a KASSERT): the student sees its sentence, never a traceback.

``Insert``/``GapSearch`` take the map lock around the call if the current thread does not
already hold it exclusively (FreeBSD requires it for vm_map_insert and vm_map_findspace), so
the lock and the timestamp appear in the trace too. Pressing Run again runs the operation again
on the same map (an insert really inserts), with the values in the boxes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
from bokeh.layouts import column

from . import theme
from .bokeh_embed import Embedded
from .inputs import Field, Form, InputError, parse_addr, parse_int, parse_prot, parse_size
from .linking import link_views
from .lockview import LockView
from .mapview import MapView
from .overview import AddressSpaceOverview
from .player import Player
from .treeview import TreeView

__all__ = ["Animation", "Find", "GapSearch", "Insert", "LockTimeline", "Overview",
           "findspace_failed_text"]


def _core(name: str) -> Callable[..., Any]:
    from vmlab import core

    fn = getattr(core, name, None)
    if fn is None:
        raise RuntimeError(f"vmlab.core has no {name}() yet")
    return fn


def _is_map(m: Any) -> bool:
    return hasattr(m, "_trace") and hasattr(m, "_trace_snapshot") and hasattr(m, "lock")


class Animation(W.VBox):
    """Form + Player + linked bokeh views + result line. Subclasses define `operation`
    (run the core calls; return the result) and `summary` (HTML for the result line)."""

    title = ""
    blurb = ""
    show_legend = True  # the protection / gap / highlight legend under the views

    def __init__(self, map: Any, fields: list[Field], views: Sequence[Any], *,
                 run_label: str = "Run") -> None:
        self.map = map
        self.trace: Any = None
        self.value: Any = None  # what the operation returned
        self.form = Form(fields, run_label=run_label)
        self.views = list(views)
        self.player = Player(None, self.views, describe=self.describe)
        self.result = W.HTML()
        self.result.add_class("vmlab-result")
        layout = column(*[v.figure for v in self.views])
        linkables = [lk for v in self.views for lk in getattr(v, "linkables", [])]
        if len(linkables) > 1:
            link_views(linkables)
        self._shown = self.run()
        self.embedded = Embedded(layout)
        for v in self.views:
            v.embedded = self.embedded
        legend = [W.HTML(theme.legend_html())] if self.show_legend else []
        self.body = W.VBox([self.player, self.embedded.widget, *legend, self.result])
        if not self._shown:
            self.body.layout.display = "none"
        head = W.HTML(
            f'<div style="font-family:{theme.FONT}"><b style="font-size:15px">'
            f'{html.escape(self.title)}</b> <span style="color:var(--jp-ui-font-color2,'
            f'{theme.TEXT_MUTED})">{html.escape(self.blurb)}</span></div>')
        self.form.run_button.on_click(lambda _b: self._rerun())
        super().__init__([head, self.form, self.body],
                         layout=W.Layout(max_width="880px", width="100%"))
        self.add_class("vmlab-animation")

    # -- to override -------------------------------------------------------------------------
    def operation(self, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    def summary(self, values: dict[str, Any], result: Any) -> str:
        return ""

    def describe(self, trace: Any, i: int) -> str:
        return ""

    # -- running -----------------------------------------------------------------------------
    def run(self) -> bool:
        """Validate the boxes, run the operation with recording on, show the trace.
        Returns False (views untouched, message shown inline) on bad input or a core error."""
        values = self.form.values()
        if values is None:
            return False
        if not _is_map(self.map):
            self.form.show_errors([f"needs a live vm_map (from vm_map_create), not a "
                                   f"{type(self.map).__name__}"])
            return False
        from vmlab.core.trace import recording

        try:
            with recording(self.map) as tr:
                result = self.operation(values)
        except InputError as exc:
            self.form.show_errors([str(exc)])
            return False
        except Exception as exc:  # noqa: BLE001 - a KASSERT-like error, shown as a sentence
            self.form.show_errors([f"{type(exc).__name__}: {exc}"])
            return False
        self.trace, self.value = tr, result
        self.player.set_trace(tr)
        self.result.value = self.summary(values, result)
        return True

    def _rerun(self) -> None:
        if self.run() and not self._shown:
            self._shown = True
            self.body.layout.display = None
            self.embedded.refresh()

    def refresh(self) -> None:
        """Re-send the figures (for Voilà's first render)."""
        self.embedded.refresh()

    # -- helpers for subclasses --------------------------------------------------------------
    def _locked(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` holding the map lock exclusively (taken here unless already held)."""
        held = _core("vm_map_locked")(self.map)
        if not held:
            _core("vm_map_lock")(self.map)
        try:
            return fn()
        finally:
            if not held:
                _core("vm_map_unlock")(self.map)


def _rv_html(rv: Any) -> str:
    ok = rv == 0
    color = theme.OK if ok else theme.ERROR
    return f'<b style="color:{color}">{html.escape(theme.kern_str(rv))}</b>'


def _box(inner: str) -> str:
    return (f'<div style="font-family:{theme.FONT};font-size:13px;padding:6px 10px;'
            f'border-left:4px solid {theme.ACCENT};margin-top:4px">{inner}</div>')


class Insert(Animation):
    """vm_map_insert(map, object, offset, start, end, prot, max, cow), animated: the new entry
    arrives above the map, lands (link) or extends its neighbour, merges; the return code."""

    title = "vm_map_insert"
    blurb = "insert [start, end) into the map (the map lock is taken around the call)"

    def __init__(self, map: Any, start: Any = 0x1000, end: Any = 0x2000, prot: Any = "rw-",
                 max_prot: Any = "rwx", cow: Any = 0, *, object: Any = None,
                 offset: int = 0) -> None:
        self.object, self.offset = object, offset
        fields = [Field("start", "start", parse_addr, start),
                  Field("end", "end", parse_addr, end),
                  Field("prot", "prot", parse_prot, prot, "110px"),
                  Field("max_prot", "max", parse_prot, max_prot, "110px"),
                  Field("cow", "cow", parse_int, cow, "110px")]
        super().__init__(map, fields, [MapView(title="the map"), TreeView()],
                         run_label="Insert")

    def operation(self, v: dict[str, Any]) -> Any:
        return self._locked(lambda: _core("vm_map_insert")(
            self.map, self.object, self.offset, v["start"], v["end"], v["prot"],
            v["max_prot"], v["cow"]))

    def summary(self, v: dict[str, Any], rv: Any) -> str:
        return _box(f"vm_map_insert(map, …, {v['start']:#x}, {v['end']:#x}, "
                    f"{theme.prot_str(v['prot'])}, {theme.prot_str(v['max_prot'])}, "
                    f"{v['cow']:#x}) returned {_rv_html(rv)}")


_VMFS_NAMES = {"no_space": 0, "any": 1, "any_space": 1, "optimal": 2, "optimal_space": 2,
               "super": 3, "super_space": 3}


def parse_find_space(v: Any, *, what: str = "find_space") -> int:
    """VMFS_* by name (``any``, ``optimal``, ``super``, ``aligned(21)``) or number."""
    if isinstance(v, str):
        t = v.strip().lower().removeprefix("vmfs_").removeprefix("vmfs.")
        if t in _VMFS_NAMES:
            return _VMFS_NAMES[t]
        m = re.fullmatch(r"aligned(?:_space)?\((\d+)\)", t)
        if m:
            return int(m.group(1)) << 8
    return parse_int(v, what=what, hi=0xFFFF)


class Find(Animation):
    """vm_map_find(map, object, offset, addr, length, max_addr, find_space, prot, max, cow),
    animated: the search for space, then the insert; the KERN code and the address."""

    title = "vm_map_find"
    blurb = "find space for length bytes at or above addr, then insert there"

    def __init__(self, map: Any, addr: Any = 0, length: Any = 0x1000, find_space: Any = "any",
                 prot: Any = "rw-", max_prot: Any = "rwx", max_addr: Any = 0, cow: Any = 0, *,
                 object: Any = None, offset: int = 0) -> None:
        self.object, self.offset = object, offset
        fields = [Field("addr", "addr", parse_addr, addr),
                  Field("length", "length", parse_size, length),
                  Field("find_space", "find_space", parse_find_space, find_space, "150px"),
                  Field("prot", "prot", parse_prot, prot, "110px"),
                  Field("max_prot", "max", parse_prot, max_prot, "110px"),
                  Field("max_addr", "max_addr", parse_addr, max_addr),
                  Field("cow", "cow", parse_int, cow, "110px")]
        super().__init__(map, fields, [MapView(title="the map"), TreeView()], run_label="Find")

    def operation(self, v: dict[str, Any]) -> Any:
        return _core("vm_map_find")(self.map, self.object, self.offset, v["addr"],
                                    v["length"], v["max_addr"], v["find_space"], v["prot"],
                                    v["max_prot"], v["cow"])

    def summary(self, v: dict[str, Any], result: Any) -> str:
        rv, addr = result
        where = f" at {addr:#x}" if rv == 0 else " (the address means nothing on failure)"
        return _box(f"vm_map_find(…, addr={v['addr']:#x}, length={v['length']:#x}) returned "
                    f"{_rv_html(rv)}{where}")


def findspace_failed_text(value: int, length: int, vmax: int) -> str:
    """Why FreeBSD 14's vm_map_findspace returned ``value`` when it found no gap."""
    wrap = " (mod 2^64: vm_size_t is unsigned)" if length > vmax + 1 else ""
    return (f"No gap of {length:#x} bytes: FreeBSD 14's vm_map_findspace returns "
            f"vm_map_max − length + 1 = {vmax:#x} − {length:#x} + 1 = {value:#x}{wrap}, an "
            f"address "
            f"whose range would end past vm_map_max, so callers test "
            f"<code>addr + length &gt; vm_map_max(map)</code>. (The man page's older "
            f"convention, returning 1 for failure, is stale.)")


class GapSearch(Animation):
    """vm_map_findspace(map, start, length), animated on the splay tree and the map: the
    descent, subtrees pruned by max_free, the gaps tested, the rotations, the answer (or
    FreeBSD 14's failure value, vm_map_max − length + 1, explained)."""

    title = "vm_map_findspace"
    blurb = "first fit: the lowest gap of length bytes at or above start"

    def __init__(self, map: Any, start: Any = 0, length: Any = 0x1000) -> None:
        fields = [Field("start", "start", parse_addr, start),
                  Field("length", "length", parse_size, length)]
        super().__init__(map, fields, [TreeView(), MapView(title="the map", height=170)],
                         run_label="Search")

    def operation(self, v: dict[str, Any]) -> Any:
        self._length = v["length"]
        return self._locked(lambda: _core("vm_map_findspace")(self.map, v["start"],
                                                               v["length"]))

    def _vmax(self) -> int:
        return int(_core("vm_map_max")(self.map))

    def failed(self) -> bool:
        return self.value is not None and self.value + self._length > self._vmax()

    def summary(self, v: dict[str, Any], addr: Any) -> str:
        if addr + v["length"] > self._vmax():
            return _box(findspace_failed_text(addr, v["length"], self._vmax()))
        return _box(f"vm_map_findspace(map, {v['start']:#x}, {v['length']:#x}) = "
                    f'<b style="color:{theme.OK}">{addr:#x}</b>: the lowest gap at or above '
                    f"start with room for {v['length']:#x} bytes begins there.")

    def describe(self, trace: Any, i: int) -> str:
        st = trace.steps[i]
        if st.kind == "return" and st.data.get("name") == "vm_map_findspace" and \
                self.value is not None and self.failed():
            return "<br>" + findspace_failed_text(self.value, self._length, self._vmax())
        return ""


_LOCK_OPS = ("lock", "unlock", "lock_read", "unlock_read", "trylock", "trylock_read",
             "lock_upgrade", "lock_downgrade")


def parse_ops(v: Any, *, what: str = "script") -> list[tuple[str | None, str]]:
    """``"A:lock_read, B:lock_read, A:unlock_read"`` -> [(thread, op), ...]; thread optional."""
    items = v if isinstance(v, list | tuple) else str(v).replace(";", ",").split(",")
    out: list[tuple[str | None, str]] = []
    for raw in items:
        t = str(raw).strip()
        if not t:
            continue
        thread, _, op = t.rpartition(":")
        op = op.strip().removeprefix("vm_map_")
        if op not in _LOCK_OPS:
            raise InputError(f"{what}: unknown lock operation {op!r} (one of "
                             f"{', '.join(_LOCK_OPS)})")
        out.append((thread.strip() or None, op))
    if not out:
        raise InputError(f"{what}: give at least one operation, e.g. 'A:lock_read'")
    return out


class LockTimeline(Animation):
    """A sequence of vm_map lock calls by named threads, animated: holders, shared/exclusive,
    and map.timestamp after each (``"A:lock_read, B:lock_read, A:lock_upgrade"``). A call that
    would sleep in the kernel stops the script there and says so."""

    title = "vm_map lock"
    show_legend = False
    blurb = "thread:operation, … (e.g. A:lock_read, B:lock_read, A:lock_upgrade)"

    def __init__(self, map: Any, script: Any = "A:lock_read, B:lock_read, B:unlock_read, "
                                               "A:lock_upgrade, A:unlock") -> None:
        shown = script if isinstance(script, str) else _script_text(script)
        fields = [Field("script", "script", parse_ops, shown, "640px")]
        super().__init__(map, fields, [LockView()], run_label="Run")

    def operation(self, v: dict[str, Any]) -> Any:
        results: list[tuple[str, Any]] = []
        for thread, op in v["script"]:
            fn = _core(f"vm_map_{op}")
            label = f"{thread + ':' if thread else ''}{op}"
            try:
                results.append((label, fn(self.map, thread=thread)))
            except Exception as exc:  # noqa: BLE001 - LockWouldBlock & co end the script
                results.append((label, exc))
                break
        return results

    def summary(self, v: dict[str, Any], results: Any) -> str:
        parts = []
        for label, r in results:
            if isinstance(r, Exception):
                parts.append(f'<span style="color:{theme.ERROR}">{html.escape(label)}: '
                             f"{html.escape(str(r))}</span>")
            else:
                parts.append(f"{html.escape(label)}" + (f" → {r}" if r is not None else ""))
        return _box(" · ".join(parts))


def Overview(obj: Any, *, rows: Sequence[dict[str, Any]] | None = None,  # noqa: N802
             mode: str = "log", title: str | None = None) -> AddressSpaceOverview:
    """The whole address space of a VmMap, MapSnapshot or imported map (see
    `AddressSpaceOverview`)."""
    return AddressSpaceOverview(obj, rows=rows, mode=mode, title=title)


def _script_text(script: Any) -> str:
    """A non-string lock script as box text; a bad one is shown as typed, so the form reports
    it inline instead of the constructor raising."""
    try:
        return ", ".join(f"{t}:{o}" if t else o for t, o in parse_ops(script))
    except InputError:
        if isinstance(script, list | tuple):
            return ", ".join(":".join(map(str, x)) if isinstance(x, list | tuple) else str(x)
                             for x in script)
        return str(script)

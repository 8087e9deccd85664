"""Input fields that validate and report errors inline (never a traceback).

`Form` is a row of labelled text boxes plus a Run button and an error line. Each `Field` has a
parser (`parse_addr`, `parse_prot`, ...) that raises `InputError` with a sentence a student
understands; the form collects every field's error, marks bad boxes with the CSS class
``vmlab-invalid`` and shows the messages in its ``vmlab-error`` line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from .theme import ERROR, FONT, prot_str

__all__ = ["Field", "Form", "InputError", "parse_addr", "parse_int", "parse_prot",
           "parse_size"]

U64 = (1 << 64) - 1
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class InputError(ValueError):
    """A bad value typed (or passed) by the user; the message is shown inline."""


def parse_int(v: Any, *, what: str = "value", lo: int = 0, hi: int = U64) -> int:
    """An integer from an int or a string: ``4096``, ``0x1000``, ``0x1_000``, ``16K``, ``2M``."""
    if isinstance(v, bool):
        raise InputError(f"{what}: expected a number, got {v!r}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        t = v.strip().replace("_", "").lower()
        if t.startswith("-"):
            raise InputError(f"{what}: {v!r} is negative")
        # units only after decimal numbers: "0x12g" is a typo, not 0x12 GiB
        m = re.fullmatch(r"0x[0-9a-f]+|(\d+)\s*([kmgt]?)(?:i?b)?", t)
        if not m:
            raise InputError(f"{what}: {v!r} is not a number (try 4096, 0x1000 or 16K)")
        n = int(t, 16) if m.group(1) is None else int(m.group(1)) * _UNITS[m.group(2)]
    else:
        try:
            n = int(v)  # numpy integers, IntEnum...
        except (TypeError, ValueError):
            raise InputError(f"{what}: expected a number, got {type(v).__name__}") from None
        if n != v:
            raise InputError(f"{what}: {v!r} is not a whole number")
    if n < lo:
        raise InputError(f"{what}: {n:#x} is below {lo:#x}")
    if n > hi:
        raise InputError(f"{what}: {n:#x} is above {hi:#x}")
    return n


def parse_addr(v: Any, *, what: str = "address") -> int:
    """A user address (0 .. 2^64-1). Alignment is the kernel's business, not the form's."""
    return parse_int(v, what=what)


def parse_size(v: Any, *, what: str = "length") -> int:
    """A length in bytes, at least 1."""
    return parse_int(v, what=what, lo=1)


def parse_prot(v: Any, *, what: str = "protection") -> int:
    """VM_PROT bits from an int (0..7) or a string: ``rw-``, ``rwx``, ``r``, ``READ|WRITE``."""
    if isinstance(v, str):
        t = v.strip().lower()
        if re.fullmatch(r"[r-][w-][x-]", t) or re.fullmatch(r"r?w?x?", t):
            return (1 if "r" in t else 0) | (2 if "w" in t else 0) | (4 if "x" in t else 0)
        names = {"none": 0, "read": 1, "write": 2, "execute": 4, "rw": 3, "all": 7,
                 "default": 7}
        parts = [p.strip().removeprefix("vm_prot_").removeprefix("vm_prot.") for p in
                 t.split("|")]
        if all(p in names for p in parts):
            out = 0
            for p in parts:
                out |= names[p]
            return out
        raise InputError(f"{what}: {v!r} is not a protection (try 'rw-', 'r-x' or 'rwx')")
    n = parse_int(v, what=what)
    if n > 7:
        raise InputError(f"{what}: {n:#x} has bits outside VM_PROT_ALL (0x7)")
    return n


@dataclass
class Field:
    """One input: ``name`` (the keyword), ``label``, ``parse`` and the initial value."""

    name: str
    label: str
    parse: Callable[..., Any]
    value: Any
    width: str = "150px"

    def shown(self) -> str:
        v = self.value
        if self.parse is parse_prot and isinstance(v, int) and 0 <= v <= 7:
            return prot_str(v)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0 and self.parse in (
                parse_addr, parse_size):
            return hex(v)
        return "" if v is None else str(v)


def fit_width(f: Field) -> str:
    """``f.width``, widened so the label and the initial value show whole (no clipped
    "aligned(16)"): ≈ 7.5 px per label character, 8.5 px per value character, plus padding."""
    want = round(7.5 * len(f.label) + 8.5 * max(len(f.shown()), 6) + 34)
    m = re.fullmatch(r"(\d+)px", f.width.strip())
    if m is None:
        return f.width
    return f"{max(int(m.group(1)), min(want, 860))}px"


class Form(W.VBox):
    """Text boxes for ``fields`` + a Run button + an inline error line."""

    def __init__(self, fields: list[Field], *, run_label: str = "Run") -> None:
        self.fields = fields
        self.boxes: dict[str, W.Text] = {}
        for f in fields:
            box = W.Text(value=f.shown(), description=f.label, continuous_update=False,
                         layout=W.Layout(width=fit_width(f)),
                         style={"description_width": "initial"})
            box.add_class(f"vmlab-input-{f.name}")
            self.boxes[f.name] = box
        self.run_button = W.Button(description=run_label, button_style="primary",
                                   icon="play", layout=W.Layout(width="90px"))
        self.run_button.add_class("vmlab-run")
        self.error = W.HTML()
        self.error.add_class("vmlab-error")
        row = W.HBox([*self.boxes.values(), self.run_button],
                     layout=W.Layout(flex_flow="row wrap", align_items="center"))
        super().__init__([row, self.error])

    def values(self) -> dict[str, Any] | None:
        """Parsed values, or None after showing every problem inline."""
        out: dict[str, Any] = {}
        errors: list[str] = []
        for f in self.fields:
            box = self.boxes[f.name]
            try:
                out[f.name] = f.parse(box.value, what=f.label)
                box.remove_class("vmlab-invalid")
                box.layout.border = None
            except InputError as exc:
                errors.append(str(exc))
                box.add_class("vmlab-invalid")
                box.layout.border = f"2px solid {ERROR}"
        self.show_errors(errors)
        return None if errors else out

    def show_errors(self, errors: list[str]) -> None:
        if not errors:
            self.error.value = ""
            return
        items = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
        self.error.value = (f'<div style="color:{ERROR};font-family:{FONT};font-size:13px">'
                            f'<b>Cannot run:</b><ul style="margin:2px 0 2px 18px;padding:0">'
                            f"{items}</ul></div>")

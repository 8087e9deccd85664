"""Tunables by their FreeBSD sysctl names (sysctl(8) / sysctl(3) for the model).

``sysctl(name)`` reads, ``sysctl(name, value)`` sets and returns the old value,
``sysctl_defaults()`` restores every tunable. Other layers add theirs with `register_sysctl`.
Defaults are FreeBSD 14's (sys/vm/vm_map.c, sys/kern/kern_exec.c / subr_param.c).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .constants import PAGE_SIZE, SGROWSIZ

__all__ = [
    "register_sysctl",
    "sysctl",
    "sysctl_defaults",
    "sysctl_names",
]


@dataclass
class _Tunable:
    default: Any
    doc: str
    value: Any
    choices: tuple[Any, ...] | None = None
    #: returns an error sentence for a value the model cannot take, else None
    check: Callable[[Any], str | None] | None = None


_table: dict[str, _Tunable] = {}


def register_sysctl(
    name: str, default: Any, doc: str, choices: tuple[Any, ...] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> None:
    """Add a tunable (idempotent for the same name and default). ``check(value)`` returns an
    error sentence for a value the model refuses (the sysctl then keeps its old value)."""
    old = _table.get(name)
    if old is not None and old.default != default:
        raise ValueError(f"sysctl {name} is already registered with default {old.default!r}")
    if old is None:
        _table[name] = _Tunable(default, doc, default, choices, check)


def sysctl(name: str, *value: Any) -> Any:
    """Read ``name``, or set it to ``value`` and return the old value."""
    t = _table.get(name)
    if t is None:
        raise KeyError(f"unknown sysctl {name!r} (known: {', '.join(sorted(_table))})")
    if not value:
        return t.value
    if len(value) > 1:
        raise TypeError("sysctl(name[, value]) takes at most one value")
    (v,) = value
    if (isinstance(t.default, int) and not isinstance(t.default, bool)) and (
        isinstance(v, bool) or not isinstance(v, int)
    ):
        raise TypeError(f"sysctl {name} takes an integer, not {type(v).__name__}")
    if t.choices is not None and v not in t.choices:
        raise ValueError(f"sysctl {name}: {v!r} is not one of {t.choices}")
    if t.check is not None and (err := t.check(v)) is not None:
        raise ValueError(f"sysctl {name}: {err}")
    old = t.value
    t.value = v
    return old


def sysctl_defaults() -> None:
    """Restore every tunable to its default."""
    for t in _table.values():
        t.value = t.default


def sysctl_names() -> dict[str, str]:
    """name -> one-line description of every tunable."""
    return {k: v.doc for k, v in sorted(_table.items())}


register_sysctl(
    "vm.cluster_anon",
    1,
    "Cluster anonymous mappings: 0 = no, 1 = yes if no hint, 2 = always",
    choices=(0, 1, 2),
)
def _page_multiple(v: int) -> str | None:
    # FreeBSD accepts any value and would then build stack entries that are not page
    # aligned (vm_map_stack's init_ssize, growstack's roundup); the model refuses instead.
    if v <= 0 or v % PAGE_SIZE:
        return f"{v:#x} is not a positive multiple of PAGE_SIZE ({PAGE_SIZE:#x})"
    return None


register_sysctl("kern.sgrowsiz", SGROWSIZ, "Amount to grow stack on a stack fault",
                check=_page_multiple)
register_sysctl(
    "security.bsd.stack_guard_page",
    1,
    "Specifies the number of guard pages for a stack that grows",
)
register_sysctl("vm.aslr_restarts", 0, "Number of aslr failures (read-only counter)")
register_sysctl(
    "vmlab.findspace_kernel_quirk",
    0,
    "1 = vm_map_findspace ignores the gap after the last entry when start is in the gap "
    "before it (FreeBSD 14's exact answer); 0 = first fit (default)",
    choices=(0, 1),
)

"""Problem, Answer and Part: what every exercise topic produces.

A `Problem` holds its parameters and a *runner*: a function that builds the scenario afresh
with vmlab.core and performs the call the question is about. `Problem.solve()` runs it, so an
answer is always what the model returns, never a formula of ours. `Problem.check(text)` reads a
student's answer with the lenient parsers of `vmlab.exercises.parse` and compares it part by
part; it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmlab.core import KERN

from .parse import (
    AnswerError,
    find_kern,
    parse_addr,
    parse_addrs,
    parse_errcode,
    parse_kern,
    parse_prot_pair,
    parse_pte_flags,
    parse_ranges,
)

__all__ = ["Answer", "Part", "Problem", "fmt_kern", "fmt_prot", "fmt_range", "fmt_ranges"]

def fmt_kern(k: int) -> str:
    """``KERN_NO_SPACE (3)``."""
    return f"KERN_{KERN(k).name} ({int(k)})"

def fmt_prot(p: int) -> str:
    p = int(p)
    return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")

def fmt_range(r: tuple[int, int]) -> str:
    return f"[{r[0]:#x}, {r[1]:#x})"

def fmt_ranges(rs: Sequence[tuple[int, int]]) -> str:
    return " ".join(fmt_range(r) for r in rs) if rs else "none"

# ----------------------------------------------------------------------------------------
# answer parts: one kind = one parser, one formatter, one comparison

def _parse_range(text: str) -> tuple[int, int]:
    rs = parse_ranges(text)
    if len(rs) != 1:
        raise AnswerError(f"expected one range, found {len(rs)}")
    return rs[0]

def _parse_outcome(text: str) -> tuple[str, int]:
    """Walk outcome: ``PA 0x1234`` / ``0x1234`` or ``#PF 0x7`` / ``PF P W U``."""
    if re.search(r"#?\bPF\b|fault|#PF", text, re.IGNORECASE):
        return ("pf", parse_errcode(text))
    t = re.sub(r"\bPA\b|physical|address|[=:]", " ", text, flags=re.IGNORECASE)
    return ("pa", parse_addr(t))

def _fmt_outcome(v: tuple[str, int]) -> str:
    from vmlab.core import format_error_code

    kind, x = v
    return f"PA {x:#x}" if kind == "pa" else f"#PF error code {x:#x} ({format_error_code(x)})"

def _parse_indices(text: str) -> list[int]:
    from .parse import parse_int_list

    t = re.sub(r"PML[45]E?|PDPTE?|PDE?|PTE?|offset|idx|index", " ", text, flags=re.IGNORECASE)
    return parse_int_list(t, 4, "the PML4, PDPT, PD and PT indices")

def _parse_labels(text: str) -> list[str]:
    words = [w for w in re.split(r"[\s,;/|]+", text.strip().lower()) if w]
    aliases = {"cow": "cow", "copy": "cow", "needs_copy": "cow", "shared": "shared",
               "share": "shared", "absent": "absent", "none": "absent", "hole": "absent",
               "missing": "absent", "zero": "zero", "zeroed": "zero", "private": "private"}
    out = []
    for w in words:
        if w not in aliases:
            raise AnswerError(f"{w!r}: answer each entry with cow, shared, zero or absent")
        out.append(aliases[w])
    return out

_KINDS: dict[str, tuple[Callable[[str], Any], Callable[[Any], str]]] = {
    "addr": (parse_addr, lambda v: f"{v:#x}"),
    "size": (parse_addr, lambda v: f"{v:#x}"),
    "kern": (parse_kern, fmt_kern),
    "ranges": (lambda t: sorted(parse_ranges(t)), fmt_ranges),
    "range": (_parse_range, fmt_range),
    "addrs": (lambda t: sorted(set(parse_addrs(t))),
              lambda v: " ".join(f"{a:#x}" for a in v) if v else "none"),
    "prot_pair": (parse_prot_pair, lambda v: f"{fmt_prot(v[0])}/{fmt_prot(v[1])}"),
    "errcode": (parse_errcode, lambda v: f"{v:#x}"),
    "outcome": (_parse_outcome, _fmt_outcome),
    "indices": (_parse_indices, lambda v: " ".join(str(i) for i in v)),
    "labels": (_parse_labels, lambda v: " ".join(v)),
    "pte": (parse_pte_flags, lambda v: " ".join(v) if v else "no PTE"),
}

@dataclass(frozen=True)
class Part:
    """One piece of an answer: ``name`` (shown to students), ``kind`` (how it is read and
    printed: addr, size, kern, ranges, range, addrs, prot_pair, errcode, outcome, indices,
    labels, pte: the set flags among P RW A D, ``()`` for no PTE) and the model's ``value``."""

    name: str
    kind: str
    value: Any

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown answer kind {self.kind!r}")

    def text(self) -> str:
        return _KINDS[self.kind][1](self.value)

    def parse(self, text: str) -> Any:
        return _KINDS[self.kind][0](text)

    def matches(self, got: Any) -> bool:
        if self.kind in ("kern", "errcode"):
            return int(got) == int(self.value)
        if self.kind == "prot_pair":
            return (int(got[0]), int(got[1])) == (int(self.value[0]), int(self.value[1]))
        if self.kind in ("ranges", "addrs"):
            return list(got) == list(self.value)
        return bool(got == self.value)

@dataclass(frozen=True)
class Answer:
    """The model's answer: its parts in the order the question asks for them."""

    parts: tuple[Part, ...]

    def text(self) -> str:
        """One line, parts separated by ``; `` (the format `Problem.check` reads best)."""
        return "; ".join(p.text() for p in self.parts)

    def __getitem__(self, name: str) -> Any:
        for p in self.parts:
            if p.name == name:
                return p.value
        raise KeyError(name)

    def __str__(self) -> str:
        return self.text()

# ----------------------------------------------------------------------------------------

def _decimal_meant_hex(typed: str, value: int) -> bool:
    t = typed.strip().replace("_", "")
    return t.isdigit() and not t.startswith("0x") and f"{value:x}" == t.lstrip("0") or (
        t.isdigit() and value == int(t, 16) and int(t) != value)


_OBJ_ID = re.compile(r"\b(object|obj)(=?)\s*'?#\d+'?")

def scrub(text: str) -> str:
    """Drop global object numbers from model step texts (they depend on what ran before in
    the same Python process; the problem text must depend on the seed only)."""
    return _OBJ_ID.sub(lambda m: m.group(1) + ("=<object>" if m.group(2) else ""), text)

@dataclass
class Problem:
    """One exercise.

    ``topic``/``seed`` (None in explicit-input mode) and ``params`` say what it is; ``setup``
    is the procstat-like scene, ``question`` the call and what to answer, ``answer_format`` how
    to type it. ``solve()`` runs the model (cached); ``check(text)`` → (correct, feedback);
    ``explain()`` the model's own step-by-step account plus the answer.
    """

    topic: str
    seed: int | None
    params: dict[str, Any]
    title: str
    setup: str
    question: str
    answer_format: str
    runner: Callable[[], tuple[Answer, list[str]]] = field(repr=False)
    hints: Callable[[Answer, list[Any]], list[str]] | None = field(default=None, repr=False)
    animation_factory: Callable[[], Any] | None = field(default=None, repr=False)
    _solved: tuple[Answer, list[str]] | None = field(default=None, repr=False)

    # the model's answer ----------------------------------------------------------------
    def _run(self) -> tuple[Answer, list[str]]:
        if self._solved is None:
            self._solved = self.runner()
        return self._solved

    def solve(self) -> Answer:
        """The answer, from running the model on a freshly built scenario."""
        return self._run()[0]

    def explain(self) -> str:
        """What the model did, step by step (its own trace texts), then the answer."""
        ans, steps = self._run()
        lines = [f"Answer: {ans.text()}"]
        if steps:
            lines.append("")
            lines.append("What the kernel does:")
            lines.extend(f"  {i + 1}. {s}" for i, s in enumerate(steps))
        return "\n".join(lines)

    def animation(self) -> Any:
        """A vmlab.widgets animation of the call on the same map, where the topic has one
        (else None). Built on demand: it needs ipywidgets and bokeh."""
        return self.animation_factory() if self.animation_factory is not None else None

    # checking --------------------------------------------------------------------------
    def check(self, answer_text: Any) -> tuple[bool, str]:
        """Read what the student typed and compare with the model, part by part. Returns
        (correct, feedback); never raises."""
        try:
            return self._check(answer_text)
        except AnswerError as exc:
            return False, f"Could not read the answer: {exc}. Format: {self.answer_format}"
        except Exception as exc:  # noqa: BLE001 - a student's typing must never crash a lesson
            return False, f"Could not read the answer ({type(exc).__name__}). " \
                          f"Format: {self.answer_format}"

    def _segments(self, text: str, n: int) -> list[str]:
        segs = [s for s in re.split(r"[;\n]", text) if s.strip()]
        if n == 1:
            return [text]
        if len(segs) >= n:
            return segs[:n]
        return segs

    def _check(self, answer_text: Any) -> tuple[bool, str]:
        if not isinstance(answer_text, str):
            answer_text = "" if answer_text is None else str(answer_text)
        if not answer_text.strip():
            return False, f"Type an answer first. Format: {self.answer_format}"
        ans = self.solve()
        parts = ans.parts
        segs = self._segments(answer_text, len(parts))
        if len(segs) < len(parts):
            if len(parts) == 2 and parts[0].kind == "kern":
                k, rest = find_kern(answer_text)
                if k is None:
                    raise AnswerError("no KERN code found")
                segs = [f"KERN_{k.name}", rest]
            else:
                raise AnswerError(f"expected {len(parts)} parts separated by ';'")
        got = []
        for p, s in zip(parts, segs, strict=False):
            try:
                got.append(p.parse(s))
            except AnswerError as exc:
                raise AnswerError(f"{p.name}: {exc}") from None
        results = [p.matches(g) for p, g in zip(parts, got, strict=False)]
        ok = all(results)
        lines = []
        for p, g, r in zip(parts, got, results, strict=False):
            lines.append(f"{'✓' if r else '✗'} {p.name}: {_KINDS[p.kind][1](g)}")
        for p, s, r in zip(parts, segs, results, strict=False):
            if not r and p.kind in ("addr", "size") and _decimal_meant_hex(s, p.value):
                lines.append(f"Hint: numbers without 0x are read as decimal; did you mean "
                             f"0x{s.strip()}?")
        if not ok and self.hints is not None:
            lines.extend(f"Hint: {h}" for h in self.hints(ans, got))
        lines.insert(0, "Correct!" if ok else "Not quite.")
        return ok, "\n".join(lines)

    # printing --------------------------------------------------------------------------
    def header(self) -> str:
        origin = f"seed {self.seed}" if self.seed is not None else "explicit input"
        return f"[{self.topic}, {origin}] {self.title}"

    def text(self, solution: bool = False) -> str:
        """Plain text, OSTEP style: the scene, the question, the format, and with
        ``solution`` the explanation."""
        out = [self.header(), "", self.setup.rstrip(), "", self.question.rstrip(),
               f"Answer format: {self.answer_format}"]
        if solution:
            out += ["", self.explain()]
        return "\n".join(out) + "\n"

    def markdown(self, solution: bool = False) -> str:
        """Markdown: the scene in a code block, the question as prose."""
        out = [f"**{self.title}** (`{self.topic}`, "
               f"{'seed ' + str(self.seed) if self.seed is not None else 'explicit input'})",
               "", "```", self.setup.rstrip(), "```", "", self.question.rstrip(), "",
               f"*Answer format:* {self.answer_format}"]
        if solution:
            out += ["", "<details><summary>Solution</summary>", "", "```",
                    self.explain(), "```", "", "</details>"]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.text()

    def _repr_markdown_(self) -> str:
        return self.markdown()

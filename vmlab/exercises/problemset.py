"""The topic registry, `generate` / `build`, and the instructor's `problem_set`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

from .base import Problem

__all__ = ["TOPICS", "build", "generate", "problem_set", "topic_for"]

#: Topic name -> what it asks. Only topics whose model code exists are listed.
TOPICS: dict[str, str] = {
    "findspace": "what vm_map_findspace returns (first fit; FreeBSD 14's failure value)",
    "insert": "vm_map_insert's KERN code and the entries after extend/merge",
    "clip": "the entries after vm_map_clip_start / vm_map_clip_end, and the clipped entry",
    "protect": "vm_map_protect's KERN code with max_protection, and the protections after",
    "find": "vm_map_find with find_space modes, alignment, max_addr and anon clustering",
    "fork": "what each entry becomes in the child of vmspace_fork, by inheritance",
    "fork_pte": "the P, RW, A and D bits of a page's PTE in parent and child after fork",
    "walk": "x86-64 page-walk indices of an address, and the PA or the #PF error code",
    "prefault": "which neighbours of a faulting page vm_fault_prefault maps (or none)",
    "stack": "vm_map_growstack's KERN code and the stack size after a store below the stack",
}


def _module(topic: str) -> Any:
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
    return importlib.import_module(f".topics.{topic}", __package__)


def generate(topic: str, seed: int) -> Problem:
    """The problem of ``topic`` for ``seed`` (identical on every machine)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    return _module(topic).generate(seed)


def build(topic: str, **params: Any) -> Problem:
    """Explicit input (OSTEP's -A): a problem from given parameters instead of a seed. The
    parameters are those of ``vmlab.exercises.topics.<topic>.build`` (see docs/exercises.md);
    ``problem.params`` of any generated problem is a valid set."""
    return _module(topic).build(**params)


def topic_for(seed: int, topics: Sequence[str] | None = None) -> str:
    """The topic a mixed problem set uses for ``seed``: topics[seed % len(topics)]."""
    ts = list(topics) if topics else list(TOPICS)
    return ts[seed % len(ts)]


def problem_set(
    seeds: Iterable[int] | int,
    topics: Sequence[str] | None = None,
    solutions: bool = False,
    markdown: bool = False,
    title: str = "vmlab problem set",
) -> str:
    """A numbered problem set. ``seeds``: the seeds, or a count K (seeds 1..K). ``topics``:
    which topics (each problem's topic is `topic_for(seed, topics)`). With ``solutions`` each
    problem is followed by its answer and the model's explanation; ``markdown`` for a course
    page."""
    seed_list = list(range(1, seeds + 1)) if isinstance(seeds, int) else list(seeds)
    ts = list(topics) if topics else list(TOPICS)
    for t in ts:
        _module(t)
    out: list[str] = []
    if markdown:
        out.append(f"# {title}\n")
    else:
        out.append(f"{title}\n{'=' * len(title)}\n")
    for i, seed in enumerate(seed_list, 1):
        p = generate(topic_for(seed, ts), seed)
        if markdown:
            out.append(f"## Problem {i}\n\n{p.markdown(solutions)}")
        else:
            out.append(f"Problem {i}. {p.text(solutions)}")
    return "\n".join(out)

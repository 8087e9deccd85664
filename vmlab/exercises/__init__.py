"""vmlab.exercises: OSTEP-style problems generated from a seed, answered by the model itself.

::

    from vmlab.exercises import generate, problem_set
    p = generate("findspace", seed=7)
    print(p)                      # the map as a procstat-like table, the call, the question
    p.check("0x17000")            # (True/False, feedback)
    print(p.explain())            # the model's own step-by-step account and the answer
    print(problem_set(range(1, 6), ["insert", "clip"], solutions=True))

Same seed → same problem on every machine, Python and numpy version (`vmlab.exercises.rng`).
Explicit input (OSTEP's ``-A``): ``build("insert", entries=[...], start=..., ...)``.
"""

from __future__ import annotations

from .base import Answer, Part, Problem
from .parse import AnswerError
from .problemset import TOPICS, build, generate, problem_set, topic_for
from .rng import Rng

__all__ = [
    "TOPICS",
    "Answer",
    "AnswerError",
    "Part",
    "Problem",
    "Rng",
    "build",
    "generate",
    "problem_set",
    "topic_for",
]

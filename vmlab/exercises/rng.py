"""The exercises' random source: numpy's PCG64, used only through its raw 64-bit stream.

OSTEP's homework simulators taught the lesson: a seed must give the same problem on every
machine and Python version. ``random`` and ``hash()`` ordering are out. numpy's
``Generator`` methods (``integers``, ``choice`` ...) may change their algorithms between numpy
releases (NEP 19 only freezes the bit generators), so `Rng` draws raw 64-bit words from
``numpy.random.default_rng(...).bit_generator`` (PCG64, whose stream is frozen) and derives
every choice from them with integer arithmetic only.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["Rng", "topic_salt"]

T = TypeVar("T")
_U64 = 1 << 64


def topic_salt(topic: str) -> int:
    """A stable per-topic number (CRC-32 of the name), so seed 7 of two topics differ."""
    return zlib.crc32(topic.encode("ascii"))


class Rng:
    """Seeded choices that are identical on every platform, Python and numpy version."""

    def __init__(self, seed: int, topic: str = "") -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        # SeedSequence hashes the entropy list deterministically (documented stable).
        self._bg = np.random.default_rng([int(seed), topic_salt(topic)]).bit_generator

    def u64(self) -> int:
        """The next raw 64-bit word of the PCG64 stream."""
        return int(self._bg.random_raw())

    def below(self, n: int) -> int:
        """Uniform integer in [0, n), by rejection (no modulo bias)."""
        if n <= 0:
            raise ValueError("below(n) needs n > 0")
        limit = _U64 - _U64 % n
        while True:
            x = self.u64()
            if x < limit:
                return x % n

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi] (both included)."""
        if hi < lo:
            raise ValueError(f"randint({lo}, {hi}): empty range")
        return lo + self.below(hi - lo + 1)

    def chance(self, num: int, den: int) -> bool:
        """True with probability num/den."""
        return self.below(den) < num

    def choice(self, seq: Sequence[T]) -> T:
        """One element of a non-empty sequence."""
        return seq[self.below(len(seq))]

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """k distinct elements, in the order drawn."""
        pool = list(seq)
        out: list[T] = []
        for _ in range(min(k, len(pool))):
            out.append(pool.pop(self.below(len(pool))))
        return out

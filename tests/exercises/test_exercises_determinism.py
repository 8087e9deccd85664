"""Same seed, same problem: twice in one process, and in a subprocess with another
PYTHONHASHSEED (set ordering and hash() must not leak into the text)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmlab.exercises import TOPICS, Rng, generate, problem_set

SEEDS = range(0, 12)


@pytest.mark.parametrize("topic", list(TOPICS))
def test_same_seed_same_text_twice(topic: str) -> None:
    for seed in SEEDS:
        a = generate(topic, seed).text(solution=True)
        b = generate(topic, seed).text(solution=True)
        assert a == b, f"{topic} seed {seed} differs between two runs"


@pytest.mark.parametrize("topic", list(TOPICS))
def test_seeds_differ(topic: str) -> None:
    texts = {generate(topic, s).text() for s in SEEDS}
    assert len(texts) >= len(SEEDS) - 2  # a collision or two is fine, a constant is not


def test_subprocess_with_other_hash_seed_prints_the_same_set() -> None:
    here = problem_set(range(3, 3 + 2 * len(TOPICS)), solutions=True, markdown=True)
    code = ("import sys; from vmlab.exercises import problem_set; "
            f"sys.stdout.write(problem_set(range(3, {3 + 2 * len(TOPICS)}), solutions=True, "
            "markdown=True))")
    for hashseed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, encoding="utf-8", check=True, timeout=120).stdout
        assert out == here


def test_rng_stream_is_pinned() -> None:
    """The raw PCG64 stream behind every problem; if numpy ever changed it, every seed's
    problem would change. (Values of numpy's PCG64 via SeedSequence([0, crc32('')]).)"""
    r = Rng(0)
    first = [r.u64() for _ in range(3)]
    assert first == [11749869230777074271, 4976686463289251617, 755828109848996024]
    again = Rng(0)
    assert [again.u64() for _ in range(3)] == first
    assert first != [Rng(1).u64() for _ in range(3)]
    r = Rng(2024, "findspace")
    draws = [r.below(10) for _ in range(1000)]
    assert set(draws) == set(range(10))
    assert all(0 <= Rng(9).randint(5, 7) - 5 <= 2 for _ in range(10))


def test_rng_rejects_bad_seeds() -> None:
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError):
            Rng(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate("findspace", -3)
    with pytest.raises(ValueError):
        generate("no-such-topic", 1)

"""vmlab exercise: output, determinism, exit codes."""

from __future__ import annotations

import pytest

from vmlab.cli import EXIT_OK, EXIT_USAGE, main
from vmlab.exercises import TOPICS, generate, problem_set


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_one_problem_without_and_with_solution(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "exercise", "--seed", "7", "--topic", "findspace")
    assert rc == EXIT_OK and err == ""
    p = generate("findspace", 7)
    assert p.setup in out and "Answer:" not in out
    rc, out2, _ = _run(capsys, "exercise", "--seed", "7", "--topic", "findspace", "--solve")
    assert rc == EXIT_OK
    assert f"Answer: {p.solve().text()}" in out2
    assert out2.startswith(out.split("\n", 1)[0].replace("exercises", "exercises with solutions")
                           [:15])


def test_count_and_topics_follow_problem_set(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "exercise", "--seed", "3", "--count", "4", "--topic", "insert",
                      "--topic", "walk")
    assert rc == EXIT_OK
    assert out == problem_set(range(3, 7), ["insert", "walk"], title="vmlab exercises")
    assert out.count("Problem ") == 4
    assert "[insert, seed 4]" in out and "[walk, seed 3]" in out


def test_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "exercise", "--seed", "1", "--count", "2", "--markdown",
                      "--solve")
    assert rc == EXIT_OK
    assert out.startswith("# vmlab exercises") and "<details>" in out and "```" in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "exercise", "--list")
    assert rc == EXIT_OK
    assert [line.split()[0] for line in out.splitlines()] == list(TOPICS)


@pytest.mark.parametrize("argv", [
    ["exercise"],
    ["exercise", "--seed", "-1"],
    ["exercise", "--seed", "1", "--topic", "nope"],
    ["exercise", "--seed", "1", "--count", "0"],
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = _run(capsys, *argv)
    assert rc == EXIT_USAGE and out == "" and err.startswith("vmlab exercise:")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exercise", "--seed", "x"])
    assert exc.value.code == EXIT_USAGE


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exercise", "--help"])
    assert exc.value.code == 0
    assert "vmlab exercise --seed 7" in capsys.readouterr().out

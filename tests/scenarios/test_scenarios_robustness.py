"""Scenario input that must fail cleanly: steps whose saved value or process was never made,
bytes that are not UTF-8, standard input, JSON nested too deeply, numbers too long for int()
or too wide for 64 bits. Always a `ScenarioError`/`ScenarioReplayError` (or, for `vmlab
replay`, one line on stderr and exit 2 or 1), never another exception."""

from __future__ import annotations

import io
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmlab.cli import main
from vmlab.io import scenario as S

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAP = "MAP_ANON|MAP_PRIVATE"


def doc(*steps, procs=("p",)):
    return {"format": "vmlab-scenario", "version": 1, "processes": list(procs),
            "machine": {"physmem": "4M", "pmap": "mem"}, "steps": list(steps)}


def mmap(save="buf", flags=MAP, **extra):
    return {"proc": "p", "op": "mmap", "save": save,
            "args": {"len": "8K", "prot": "rw-", "flags": flags, **extra}}


def touch(addr="$buf"):
    return {"proc": "p", "op": "touch", "args": {"addr": addr, "access": "w"}}


def run_cli(argv, capsys, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# --- a step uses $name that a failed step did not save -------------------------------------

FAILED_SAVE = ("steps[1]: touch cannot run: it uses $buf (steps[1].args.addr), but steps[0] "
               "(p: mmap) returned EBADF, so it saved nothing")


def test_failed_save_fails_the_step_that_uses_it():
    # MAP_PRIVATE without MAP_ANON is a file mapping: fd -1 gives EBADF (vm_mmap.c kern_mmap).
    sc = S.load_scenario(doc(mmap(flags="MAP_PRIVATE"), touch()))
    with pytest.raises(S.ScenarioReplayError) as ex:
        S.replay(sc, check=False)
    assert str(ex.value) == FAILED_SAVE and ex.value.index == 1


def test_failed_save_in_cli(tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc(mmap(flags="MAP_PRIVATE"), touch())))
    code, out, err = run_cli(["replay", str(f)], capsys)
    # the steps that ran before the replay stopped are printed first
    assert code == 1 and out == "ok  steps[0] p: mmap returned EBADF.\n"
    assert err == f"vmlab replay: {FAILED_SAVE}\n"
    with pytest.raises(S.ScenarioReplayError) as ex:
        S.replay(S.load_scenario(doc(mmap(flags="MAP_PRIVATE"), touch())), check=False)
    assert [r.index for r in ex.value.results] == [0]


def test_failed_save_does_not_keep_an_older_value():
    # $buf was saved by steps[0]; steps[1] saves it again and fails: steps[2] must not touch
    # the first mapping by mistake.
    sc = S.load_scenario(doc(mmap(), mmap(flags="MAP_PRIVATE"), touch()))
    with pytest.raises(S.ScenarioReplayError, match=r"^steps\[2\]: touch cannot run: it uses "
                       r"\$buf \(steps\[2\]\.args\.addr\), but steps\[1\] \(p: mmap\) returned "
                       r"EBADF, so it saved nothing$"):
        S.replay(sc, check=False)
    # ...and a later successful save makes it usable again
    rep = S.replay(doc(mmap(), mmap(flags="MAP_PRIVATE"), mmap(), touch()), check=False)
    assert [r.rv for r in rep.results] == [0, 9, 0, "ok"]
    assert rep.values["buf"] == rep.results[2].value


def test_failed_save_used_in_expect():
    bad = doc(mmap(flags="MAP_PRIVATE"), {**mmap("c"), "expect": {"rv": 0, "value": "$buf"}})
    with pytest.raises(S.ScenarioReplayError, match=r"it uses \$buf \(steps\[1\]\.expect\.value"
                       r"\), but steps\[0\]"):
        S.replay(bad, check=False)


@SETTINGS
@given(plan=st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b"]),
                               st.sampled_from(["a", "b", None])), min_size=1, max_size=6))
def test_random_failed_saves(plan):
    """mmaps that succeed or fail, each followed by a touch of a saved name: a step runs iff
    the last step that saved its name succeeded; otherwise the error names that step."""
    steps, last = [], {}
    expect_fail = None
    for ok, name, use in plan:
        steps.append(mmap(name, MAP if ok else "MAP_PRIVATE"))
        last[name] = (len(steps) - 1, ok)
        if use is not None and use in last:
            steps.append(touch(f"${use}"))
            k, good = last[use]
            if not good and expect_fail is None:
                expect_fail = (len(steps) - 1, k, use)
    sc = S.load_scenario(doc(*steps))
    if expect_fail is None:
        rep = S.replay(sc, check=False)
        assert len(rep.results) == len(steps)
        return
    i, k, use = expect_fail
    with pytest.raises(S.ScenarioReplayError) as ex:
        S.replay(sc, check=False)
    assert ex.value.index == i
    assert str(ex.value) == (f"steps[{i}]: touch cannot run: it uses ${use} (steps[{i}].args."
                             f"addr), but steps[{k}] (p: mmap) returned EBADF, so it saved "
                             "nothing")


def test_expression_that_overflows_at_replay_is_a_replay_error():
    sc = S.load_scenario(doc(mmap(), touch("$buf*$buf*$buf")))  # fine with $buf = 0 at load
    with pytest.raises(S.ScenarioReplayError, match=r"^steps\[1\]: touch cannot run: steps\[1\]"
                       r"\.args\.addr: in '\$buf\*\$buf\*\$buf': a product = 0x[0-9a-f]+ does "
                       r"not fit in 64 bits$"):
        S.replay(sc, check=False)


# --- bytes, standard input, nesting, long numbers ------------------------------------------


def test_not_utf8_file(tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_bytes(b'{"format": "vmlab-scenario", "title": "caf\xe9"}')
    with pytest.raises(S.ScenarioError, match=r"s\.json: not UTF-8 text \(byte 0xe9 at offset "
                       r"42\)"):
        S.load_scenario(f)
    code, out, err = run_cli(["replay", str(f)], capsys)
    assert code == 2 and err == (f"vmlab replay: invalid scenario: {f}: not UTF-8 text (byte "
                                 "0xe9 at offset 42); a scenario is a JSON file\n")


@pytest.mark.parametrize(("data", "msg"), [
    (b"[]\n", "expected a scenario (a JSON object), got []"),
    (b"\x00\xff\xfe", "standard input: not UTF-8 text (byte 0xff at offset 1); a scenario is a "
     "JSON file"),
    (b"fork-and-cow\n", "standard input: not valid JSON: Expecting value at line 1 column 1"),
    (b"", 'standard input: empty; expected a JSON object {"format": "vmlab-scenario", ...}'),
    (b"[" * 100000, "standard input: line 1: not valid JSON here: arrays/objects nested too "
     f"deeply (Python's decoder stops near {sys.getrecursionlimit()} levels)"),
])
def test_stdin_is_always_content(capsys, monkeypatch, data, msg):
    code, out, err = run_cli(["replay", "-"], capsys, data, monkeypatch)
    assert code == 2 and out == "" and err == f"vmlab replay: invalid scenario: {msg}\n"


def test_stdin_scenario_replays(capsys, monkeypatch):
    data = json.dumps(doc(mmap(), touch())).encode()
    code, out, err = run_cli(["replay", "-"], capsys, data, monkeypatch)
    assert code == 0
    assert out.splitlines()[1] == "ok  steps[1] p: touch returned ok."


def _with_value(value):
    return doc(mmap(), {**touch(), "args": {"addr": "$buf", "access": "w", "value": value}})


@pytest.mark.parametrize("depth", [S.MAX_DEPTH - 3, 500])
def test_nesting_deeper_than_max_depth(depth):
    # document → steps → step → args: 4 levels above the value
    text = json.dumps(_with_value("x")).replace('"x"', "[" * depth + "]" * depth)
    with pytest.raises(S.ScenarioError, match=f"^the document nests arrays/objects more than "
                       f"{S.MAX_DEPTH} levels deep; a scenario needs only a few$"):
        S.load_scenario(text)
    with pytest.raises(S.ScenarioError, match="more than"):
        S.load_scenario(json.loads(text))  # the dict API is checked the same way


def test_nesting_up_to_max_depth_replays():
    depth = S.MAX_DEPTH - 4
    text = json.dumps(_with_value("x")).replace('"x"', "[" * depth + "]" * depth)
    rep = S.replay(S.load_scenario(text))
    assert rep.results[1].rv == "ok"
    json.loads(rep.trace_json())  # the page's content survives into the trace


def test_long_numbers():
    big = "9" * 5000
    with pytest.raises(S.ScenarioError, match=r"^steps\[0\]\.args\.len: in '9{8}.*': the number "
                       r"9{16}\.\.\. \(5000 characters\) does not fit in 64 bits$"):
        S.load_scenario(doc(mmap(len=big)))
    with pytest.raises(S.ScenarioError, match="not valid JSON here: a number of 5000 digits"):
        S.parse_scenario(json.dumps(doc(mmap())).replace('"8K"', big))
    with pytest.raises(S.ScenarioError, match=r"^steps\[0\]\.args\.len: 0x1" + "0" * 25
                       + " does not fit in 64 bits"):
        S.load_scenario(doc(mmap(len=1 << 100)))
    with pytest.raises(S.ScenarioError, match="a product = 0x1fffffffffffffffe does not fit"):
        S.load_scenario(doc(mmap(len="0xffffffffffffffff*2")))
    assert S.load_scenario(doc(mmap(len="0xffffffffffffffff"))).steps[0].args["len"] == 2**64 - 1
    assert S.load_scenario(doc(mmap(len="-0x8000000000000000"))).steps[0].args["len"] == -2**63


VALID = json.dumps(doc(mmap(), touch()), indent=1).encode()


@SETTINGS
@given(st.data())
def test_bad_bytes_anywhere(data):
    """Random bytes spliced into a valid scenario file: ScenarioError or a clean replay."""
    at = data.draw(st.integers(0, len(VALID)))
    cut = data.draw(st.integers(0, 8))
    junk = data.draw(st.one_of(st.binary(min_size=1, max_size=12),
                               st.sampled_from([b"\xff", b"\xc3", b"\x00", b"[" * 5000,
                                                b"9" * 5000, b"\xed\xa0\x80"])))
    text = VALID[:at] + junk + VALID[at + cut:]
    try:
        sc = S.parse_scenario(text, "fuzz.json")
    except S.ScenarioError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    try:
        S.replay(sc, check=False)
    except S.ScenarioReplayError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(depth=st.integers(1, 20000), kind=st.sampled_from(["[", '{"a":', '{"steps":[']))
def test_nested_json_never_raises_anything_else(depth, kind):
    with pytest.raises(S.ScenarioError):
        S.parse_scenario(kind * depth)


def test_step_on_a_child_whose_fork_failed(monkeypatch):
    import vmlab.core.syscalls as sc

    monkeypatch.setattr(sc, "fork", lambda vm: (sc.ENOMEM, None))  # vmspace_fork: MemoryError
    d = doc({"proc": "p", "op": "fork", "child": "c"},
            {"proc": "c", "op": "munmap", "args": {"addr": "0x1000", "len": "4K"}})
    with pytest.raises(S.ScenarioReplayError, match=r"^steps\[1\]: munmap cannot run: process "
                       r"'c' was never created: the fork at steps\[0\] returned ENOMEM$"):
        S.replay(d, check=False)

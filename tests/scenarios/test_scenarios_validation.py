"""Bad scenarios: a clear error naming the field, never another exception; the JSON Schema
agrees with the loader on what is structurally invalid."""

from __future__ import annotations

import contextlib
import copy
import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.io import scenario as S

BASE = {"format": "vmlab-scenario", "version": 1, "processes": ["p"],
        "machine": {"physmem": "4M", "pmap": "mem"},
        "steps": [{"proc": "p", "op": "mmap", "save": "a",
                   "args": {"len": "8K", "prot": "rw-", "flags": "MAP_ANON|MAP_PRIVATE"}},
                  {"proc": "p", "op": "touch", "args": {"addr": "$a", "access": "w"}}]}
VALIDATOR = jsonschema.Draft202012Validator(S.schema())


def mutated(fn):
    d = copy.deepcopy(BASE)
    fn(d)
    return d


# (mutation, path in the error, words in the message, the schema also rejects it)
CASES = [
    (lambda d: d.update(format="vmlab-trace"), "format", "vmlab-scenario", True),
    (lambda d: d.update(version=2), "version", "expected 1", True),
    (lambda d: d.update(processes=[]), "processes", "non-empty", True),
    (lambda d: d.update(processes=["p", "p"]), "processes[1].name", "two processes", False),
    (lambda d: d.update(processes=["9p"]), "processes[0].name", "process name", True),
    (lambda d: d["steps"][0].update(op="mmapp"), "steps[0].op", "unknown operation", True),
    (lambda d: d["steps"][0].update(proc="q"), "steps[0].proc", "does not exist", False),
    (lambda d: d["steps"][0]["args"].update(len="8K!"), "steps[0].args.len", "cannot read",
     False),
    (lambda d: d["steps"][0]["args"].update(len=[1]), "steps[0].args.len", "expected an "
     "integer", True),
    (lambda d: d["steps"][0]["args"].update(prot="PROT_RAED"), "steps[0].args.prot",
     "unknown constant", False),
    (lambda d: d["steps"][0]["args"].pop("len"), "steps[0].args.len", "needs argument", True),
    (lambda d: d["steps"][0]["args"].update(length=1), "steps[0].args.length", "no argument",
     True),
    (lambda d: d["steps"][0].update(len=1), "steps[0].len", "go in \"args\"", True),
    (lambda d: d["steps"][1]["args"].update(addr="$b"), "steps[1].args.addr", "$b is not "
     "saved", False),
    (lambda d: d["steps"][1]["args"].update(access="x"), "steps[1].args.access", '"r"', True),
    (lambda d: d["steps"][1].update(expect="SIGKILL"), "steps[1].expect", "SIGSEGV", True),
    (lambda d: d["steps"][1].update(save="x"), "steps[1].save", "nothing to save", True),
    (lambda d: d["steps"].append({"proc": "p", "op": "fork"}), "steps[2].child", "child", True),
    (lambda d: d["steps"].extend([{"proc": "p", "op": "exit"}, {"proc": "p", "op": "munmap",
                                                                "args": {"addr": 0, "len": 1}}]),
     "steps[3].proc", "has exited", False),
    (lambda d: d["machine"].update(pmap="x86"), "machine.pmap", "amd64", True),
    (lambda d: d["machine"].update(sysctl={"kern.nope": 1}), "machine.sysctl.kern.nope",
     "unknown sysctl", False),
    (lambda d: d.update(extra=1), "extra", "unknown key", True),
    (lambda d: d["steps"][0]["args"].update(flags="MAP_ALIGNED"), "steps[0].args.flags",
     "macro", False),
]


@pytest.mark.parametrize("fn, path, words, schema_rejects", CASES)
def test_bad_scenarios_name_the_field(fn, path, words, schema_rejects):
    d = mutated(fn)
    with pytest.raises(S.ScenarioError) as ei:
        S.load_scenario(d)
    assert ei.value.path == path
    assert words in str(ei.value)
    assert str(ei.value).startswith(path + ": ")
    if schema_rejects:
        assert list(VALIDATOR.iter_errors(d)), "the JSON Schema should reject this too"


def test_valid_scenarios_pass_the_schema_and_the_loader():
    assert not list(VALIDATOR.iter_errors(BASE))
    for name in S.example_names():
        assert not list(VALIDATOR.iter_errors(S.load_example(name).raw))


def test_not_json_is_reported_with_line_and_column(tmp_path):
    f = tmp_path / "s.json"
    f.write_text('{"format": "vmlab-scenario",\n "version": }')
    with pytest.raises(S.ScenarioError, match="line 2 column"):
        S.load_scenario(f)


def test_loading_does_not_run_anything():
    d = mutated(lambda d: d["steps"][0].update(expect="ENOMEM"))
    sc = S.load_scenario(d)  # a wrong expectation is a replay result, not a load error
    assert sc.steps[0].expect == {"rv": 12}


JUNK = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.text(max_size=12), lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_random_corruption_gives_scenario_error_or_a_clean_replay(data):
    d = copy.deepcopy(BASE)
    # pick a random container and key inside the document and overwrite it with junk
    node, key = d, None
    for _ in range(data.draw(st.integers(1, 4))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)):
            break
        parent, node = node, node[key]
        node, key = parent, key
        node = node[key] if isinstance(node[key], (dict, list)) else node
    if isinstance(node, dict) and node:
        node[data.draw(st.sampled_from(list(node)))] = data.draw(JUNK)
    elif isinstance(node, list) and node:
        node[data.draw(st.integers(0, len(node) - 1))] = data.draw(JUNK)
    try:
        sc = S.load_scenario(json.loads(json.dumps(d)))
    except S.ScenarioError as exc:
        assert exc.path is not None and str(exc)
        return
    with contextlib.suppress(S.ScenarioReplayError):  # an expected-to-panic path; else clean
        S.replay(sc, check=False)

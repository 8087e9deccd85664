"""Scenario loading, replay results, determinism and the trace JSON round trip."""

from __future__ import annotations

import json

import pytest

from vmlab.core import KERN, Trace, vm_object_allocate_anon
from vmlab.core.sysctl import sysctl
from vmlab.io import scenario as S


def doc(*steps, processes=("p",), **top):
    d = {"format": "vmlab-scenario", "version": 1, "processes": list(processes),
         "steps": list(steps), "machine": {"physmem": "4M", "pmap": "mem"}}
    d.update(top)
    return d


MMAP = {"proc": "p", "op": "mmap", "save": "a",
        "args": {"len": "8K", "prot": "rw-", "flags": "MAP_ANON|MAP_PRIVATE"}}


@pytest.mark.parametrize("name", S.example_names())
def test_examples_replay_and_meet_expectations(name):
    rep = S.replay(S.load_example(name))
    assert rep.ok and len(rep.results) == len(rep.scenario.steps)
    kinds = rep.trace.kinds()
    assert kinds.count("scenario_op") == kinds.count("scenario_result") == len(rep.results)


def test_examples_are_the_three_documented():
    assert {"fork-and-cow", "stack-overflow", "findspace-tour"} <= set(S.example_names())


def test_fork_and_cow_records_the_copy_and_both_contents():
    rep = S.replay(S.load_example("fork-and-cow"))
    kinds = rep.trace.kinds()
    assert "fork_entry" in kinds and "shadow" in kinds and "cow_copy" in kinds
    parent, child = rep.procs["parent"], rep.procs["child"]
    from vmlab.core import vm_read

    buf = rep.values["buf"]
    assert vm_read(parent, buf) == "parent's data"
    assert vm_read(child, buf) == "child's data"
    assert rep.results[-1].rv == "SIGSEGV"
    # process names by pid are in the trace's meta for the exporters
    assert set(rep.trace.meta["processes"].values()) == {"parent", "child"}


def test_stack_overflow_fails_on_rlimit_then_grows_after_setrlimit():
    rep = S.replay(S.load_example("stack-overflow"))
    grows = [s for s in rep.trace if s.kind == "grow"]
    assert [g.data["rv"] for g in grows].count(int(KERN.NO_SPACE)) >= 1
    assert [r.rv for r in rep.results] == ["ok", "ok", "ok", "SIGSEGV", 0, "ok", "SIGSEGV"]


def test_findspace_tour_addresses():
    rep = S.replay(S.load_example("findspace-tour"))
    assert rep.values == {"a1": 0x14000, "a2": 0x20000, "a3": 0x31000, "b": 0x20000}
    assert "prune" in rep.trace.kinds()


def test_replay_is_deterministic_whatever_ran_before():
    a = S.replay(S.load_example("fork-and-cow")).trace_json()
    vm_object_allocate_anon(3)  # move the global id counters
    S.replay(S.load_example("findspace-tour"))
    b = S.replay(S.load_example("fork-and-cow")).trace_json()
    assert a == b


def test_ids_are_not_reused_after_a_replay():
    rep = S.replay(S.load_example("fork-and-cow"))
    used = [o for st in rep.trace.states if hasattr(st, "objects") for o in st.objects]
    assert vm_object_allocate_anon(1).id > max(used)


def test_sysctls_are_restored():
    before = sysctl("kern.sgrowsiz")
    rep = S.replay(doc({"proc": "p", "op": "munmap", "args": {"addr": "0x1000", "len": 1}},
                       machine={"physmem": "4M", "sysctl": {"kern.sgrowsiz": "64K"}}))
    assert rep.ok and sysctl("kern.sgrowsiz") == before


def test_trace_json_round_trip():
    rep = S.replay(S.load_example("fork-and-cow"))
    d = json.loads(rep.trace_json())
    t2 = Trace.from_dict(d)
    assert t2.to_dict() == d
    assert len(t2) == len(rep.trace) and t2.meta == rep.trace.meta
    assert t2.states[-1].map.nentries == rep.trace.states[-1].map.nentries


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(format="x"), "not a vmlab trace"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d["steps"][0].update(state=10**6), "steps[0].state"),
])
def test_trace_from_dict_rejects_bad_input(mutate, msg):
    d = json.loads(S.replay(doc(MMAP)).trace_json())
    mutate(d)
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        Trace.from_dict(d)


@pytest.mark.parametrize("text, value", [
    ("16K", 0x4000), ("0x1000", 0x1000), ("PROT_READ|PROT_WRITE", 3), ("$a+4*PAGE_SIZE",
                                                                         0x10000 + 0x4000),
    ("MAP_ALIGNED(21)", 21 << 24), ("(1+2)*3", 9), ("USRSTACK-8", 0x7FFFFFFFEFF8),
    ("VM_PROT_ALL", 7), ("KERN_NO_SPACE", 3), ("MAP_COPY_ON_WRITE|MAP_ANON", 0x2 | 0x1000),
])
def test_expressions(text, value):
    e = S._Expr(text, "x")
    assert e.evaluate({"a": 0x10000}) == value


def test_expect_failure_raises_or_is_recorded():
    d = doc({**MMAP, "expect": "ENOMEM"})
    with pytest.raises(S.ScenarioExpectationError, match=r"steps\[0\].*EXPECTED ENOMEM"):
        S.replay(d)
    rep = S.replay(d, check=False)
    assert not rep.ok and rep.results[0].rv == 0
    assert rep.trace.steps[-1].data["ok"] is False


def test_a_panic_stops_replay_unless_expected_and_changes_nothing():
    bad = {"proc": "p", "op": "vm_map_insert",
           "args": {"start": "0x10000", "end": "0x12000", "prot": "rwx", "max": "r--"}}
    with pytest.raises(S.ScenarioReplayError, match="would panic"):
        S.replay(doc(MMAP, bad))
    rep = S.replay(doc(MMAP, {**bad, "expect": "panic"}))
    assert rep.ok and rep.results[1].rv == "panic"
    tr = rep.trace
    ends = [tr.state_at(i) for i, s in enumerate(tr.steps) if s.kind == "scenario_result"]
    assert rep.procs["p"].vm_map.nentries == 1
    assert (ends[0].map.entries == ends[1].map.entries).all()  # the panic changed nothing


def test_expect_panic_fails_when_nothing_panics():
    rep = S.replay(doc({**MMAP, "expect": "panic"}), check=False)
    assert not rep.ok


def test_quiet_steps_record_only_the_frame():
    loud = S.replay(doc(MMAP)).trace
    quiet = S.replay(doc({**MMAP, "quiet": True})).trace
    assert quiet.kinds() == ["scenario_op", "scenario_result"]
    assert len(loud) > len(quiet)
    assert quiet.states[-1].map.nentries == loud.states[-1].map.nentries == 1


def test_every_op_runs():
    """One scenario that calls every operation once (the dispatcher and OPS agree)."""
    steps = [
        MMAP,
        {"proc": "p", "op": "mprotect", "args": {"addr": "$a", "len": "4K", "prot": "r--"}},
        {"proc": "p", "op": "minherit", "args": {"addr": "$a", "len": "4K",
                                                 "inherit": "INHERIT_SHARE"}},
        {"proc": "p", "op": "msync", "args": {"addr": "$a", "len": "4K"}},
        {"proc": "p", "op": "madvise", "args": {"addr": "$a", "len": "4K",
                                                "behav": "MADV_WILLNEED"}},
        {"proc": "p", "op": "mlock", "args": {"addr": "$a", "len": "4K"}},
        {"proc": "p", "op": "munlock", "args": {"addr": "$a", "len": "4K"}},
        {"proc": "p", "op": "open", "args": {"path": "/f", "size": "8K"}, "save": "fd"},
        {"proc": "p", "op": "mmap", "args": {"len": "8K", "prot": "r--", "flags": "MAP_SHARED",
                                             "fd": "$fd"}, "expect": 0},
        {"proc": "p", "op": "close", "args": {"fd": "$fd"}, "expect": 0},
        {"proc": "p", "op": "setrlimit", "args": {"resource": "RLIMIT_DATA", "value": "1G"}},
        {"proc": "p", "op": "touch", "args": {"addr": "$a+0x1000"}, "expect": "ok"},
        {"proc": "p", "op": "vm_fault", "args": {"addr": "$a+0x1000", "fault_type": "rw-"},
         "expect": "KERN_SUCCESS"},
        {"proc": "p", "op": "vm_map_insert", "args": {"start": "0x100000", "end": "0x102000",
                                                      "prot": "rw-"}, "expect": 0},
        {"proc": "p", "op": "vm_map_find", "args": {"length": "8K", "prot": "rw-"},
         "save": "f"},
        {"proc": "p", "op": "vm_map_find_min", "args": {"length": "8K", "prot": "rw-",
                                                        "min_addr": "0x1000"}},
        {"proc": "p", "op": "vm_map_fixed", "args": {"start": "0x200000", "length": "8K",
                                                     "prot": "rw-"}},
        {"proc": "p", "op": "vm_map_stack", "args": {"addrbos": "0x400000",
                                                     "max_ssize": "256K"}, "expect": 0},
        {"proc": "p", "op": "vm_map_growstack", "args": {"addr": "0x41e000"}},
        {"proc": "p", "op": "vm_map_findspace", "args": {"start": 0, "length": "4K"},
         "save": "g"},
        {"proc": "p", "op": "vm_map_lookup_entry", "args": {"address": "0x100000"},
         "expect": {"rv": True, "value": "0x100000"}},
        {"proc": "p", "op": "vm_map_protect", "args": {"start": "0x100000", "end": "0x101000",
                                                       "new_prot": "r--"}, "expect": 0},
        {"proc": "p", "op": "vm_map_inherit", "args": {"start": "0x100000", "end": "0x101000",
                                                       "new_inheritance": "VM_INHERIT_NONE"}},
        {"proc": "p", "op": "vm_map_wire", "args": {"start": "0x200000", "end": "0x202000"}},
        {"proc": "p", "op": "vm_map_unwire", "args": {"start": "0x200000", "end": "0x202000"}},
        {"proc": "p", "op": "vm_map_delete", "args": {"start": "0x100000", "end": "0x101000"}},
        {"proc": "p", "op": "vm_map_remove", "args": {"start": "0x200000", "end": "0x202000"}},
        {"proc": "p", "op": "munmap", "args": {"addr": "$a", "len": "8K"}, "expect": 0},
        {"proc": "p", "op": "fork", "child": "q", "expect": 0},
        {"proc": "q", "op": "exit"},
    ]
    rep = S.replay(doc(*steps))
    assert rep.ok
    assert {r.op for r in rep.results} == set(S.OPS)
    assert rep.procs["q"].exited and not rep.procs["p"].exited


def test_shipped_schema_matches_the_loader():
    assert S.schema() == S._build_schema()

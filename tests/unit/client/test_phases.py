"""The run collector's phases, walked through their table."""

from __future__ import annotations

from support.machines import walk
from twisted.internet import task

from pybrid.client.phases import RUN, RunPhase
from pybrid.client.results import RunSpec
from pybrid.client.run import RunCollector


def make(phase: RunPhase) -> RunCollector:
    c = RunCollector(task.Clock(), "run-1", RunSpec(op_time=0.01, channels=1), ["aa"], 1.0)
    c.phase = phase
    return c


def test_run_table_walk():
    refused = walk(RUN, RunPhase, make=make, fire=lambda c, event: c._to(event),
                   read=lambda c: c.phase)
    assert refused == 5 * 5 - 7  # seven transitions out of five phases and four events + one


def test_phases_compare_as_their_old_strings():
    assert RunPhase.FAILED == "failed" and RunPhase.SETTLING == "settling"


def test_late_events_after_the_end_are_ignored_not_transitions():
    c = make(RunPhase.RUNNING)
    c.fail(RuntimeError("connection lost"))
    c.done.addErrback(lambda f: None)
    assert c.phase is RunPhase.FAILED and not c.collecting
    c.fail(RuntimeError("again"))  # no second errback, no InvalidTransition
    c.cancel()
    assert c.phase is RunPhase.FAILED

"""Periodic work: one lifecycle, and a body that cannot kill its loop."""

from __future__ import annotations

from twisted.internet import task
from twisted.logger import capturedLogs

from pybrid.wire.periodic import Periodic


def test_calls_every_interval_between_start_and_stop():
    clock, calls = task.Clock(), []
    job = Periodic(clock, 1.0, lambda: calls.append(clock.seconds()), "job")
    job.start()
    job.start()  # idempotent
    clock.pump([1.0] * 3)
    job.stop()
    job.stop()
    clock.pump([1.0] * 3)
    assert calls == [1.0, 2.0, 3.0] and not job.running


def test_now_calls_at_once_and_a_zero_interval_never_runs():
    clock, calls = task.Clock(), []
    Periodic(clock, 2.0, lambda: calls.append("now"), "job", now=True).start()
    never = Periodic(clock, 0.0, lambda: calls.append("never"), "job")
    never.start()
    clock.pump([2.0, 2.0])
    assert calls == ["now", "now", "now"] and not never.running


def test_a_failing_body_is_logged_and_the_loop_goes_on():
    clock, calls = task.Clock(), []

    def work():
        calls.append(clock.seconds())
        if len(calls) == 1:
            raise RuntimeError("boom")

    job = Periodic(clock, 1.0, work, "the job")
    with capturedLogs() as events:
        job.start()
        clock.pump([1.0] * 3)
    assert calls == [1.0, 2.0, 3.0] and job.running
    (failure,) = [e for e in events if "log_failure" in e]
    assert failure["what"] == "the job" and failure["log_failure"].check(RuntimeError)


def test_stop_before_start_is_harmless():
    Periodic(task.Clock(), 1.0, lambda: None, "job").stop()

"""RunBarrier under task.Clock: TAKE_OFF and DONE across backends, first error, deadlines."""

from __future__ import annotations

import pytest
from support.machines import walk
from twisted.internet import task

from pybrid.proto import pb
from pybrid.proxy.runs.barrier import BARRIER, BarrierPhase, RunBarrier, run_seconds

A0, A1, B0 = "/aa-00", "/aa-01", "/bb-00"
OWNERS = {A0: "a:1", A1: "a:1", B0: "b:2"}


class Hooks:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str]] = []
        self.deadlines: list[tuple[dict[str, list[str]], str]] = []

    def on_error(self, barrier, backend, carrier, reason):
        self.errors.append((backend, carrier, reason))
        # the carriers of this message are all recorded before the hook runs
        self.pending_then = barrier.pending_backends()

    def on_deadline(self, barrier, missing, what):
        self.deadlines.append((missing, what))


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def hooks():
    return Hooks()


def make(clock, hooks, run_s: float | None = 3.0) -> RunBarrier:
    return RunBarrier("run-1", clock, OWNERS, take_off_timeout=10.0, run_seconds=run_s,
                      on_error=hooks.on_error, on_deadline=hooks.on_deadline)


def fired(d) -> list:
    out: list = []
    d.addCallback(out.append)
    return out


def test_took_off_fires_only_when_every_carrier_took_off(clock, hooks):
    barrier = make(clock, hooks)
    took_off = fired(barrier.when_took_off())
    barrier.state_changed("a:1", (A0, A1), pb.TAKE_OFF, "")
    assert took_off == [] and not barrier.took_off
    barrier.state_changed("b:2", (B0,), pb.QUEUED, "")
    assert took_off == []  # QUEUED has not taken off
    barrier.state_changed("b:2", (B0,), pb.IC, "")  # a later state counts as taken off
    assert took_off == [None]
    assert fired(barrier.when_took_off()) == [None]  # late waiters fire at once


def test_finished_fires_done_when_every_carrier_is_done(clock, hooks):
    barrier = make(clock, hooks)
    finished = fired(barrier.when_finished())
    barrier.state_changed("a:1", (A0, A1), pb.DONE, "")
    assert finished == [] and barrier.pending_backends() == ["b:2"]
    barrier.state_changed("b:2", (B0,), pb.DONE, "")
    assert finished == [pb.DONE] and barrier.finished
    assert hooks.errors == []


def test_first_error_is_reported_once_with_its_backend_and_the_run_ends_in_error(clock, hooks):
    barrier = make(clock, hooks)
    finished = fired(barrier.when_finished())
    barrier.state_changed("a:1", (A0, A1), pb.ERROR, "overheated")
    assert hooks.errors == [("a:1", A0, "overheated")]
    assert hooks.pending_then == ["b:2"]  # a:1 is already counted as finished
    barrier.state_changed("a:1", (A0,), pb.DONE, "")  # ERROR is final: DONE changes nothing
    assert barrier.states[A0] == pb.ERROR
    assert finished == []
    barrier.state_changed("b:2", (B0,), pb.DONE, "")  # the others were stopped and ended
    assert finished == [pb.ERROR]
    assert len(hooks.errors) == 1


def test_states_only_move_forward(clock, hooks):
    barrier = make(clock, hooks)
    barrier.state_changed("a:1", (A0,), pb.DONE, "")
    barrier.state_changed("a:1", (A0,), pb.OP, "")
    assert barrier.states[A0] == pb.DONE
    barrier.state_changed("x:9", ("/unknown",), pb.DONE, "")
    assert barrier.ignored == 1


def test_take_off_deadline_names_the_missing_carriers_by_backend(clock, hooks):
    barrier = make(clock, hooks)
    finished = fired(barrier.when_finished())
    clock.advance(100)
    assert hooks.deadlines == []  # not armed before the start was accepted
    barrier.arm()
    barrier.state_changed("a:1", (A0, A1), pb.TAKE_OFF, "")
    clock.advance(9.9)
    assert hooks.deadlines == []
    clock.advance(0.2)
    [(missing, what)] = hooks.deadlines
    assert missing == {"b:2": [B0]} and what == "no TAKE_OFF within 10 s"
    # the barrier marks what the hook left open: B0 failed, so the run cannot end in DONE
    assert barrier.states[B0] == pb.ERROR
    assert hooks.errors == [("b:2", B0, "backend b:2: no TAKE_OFF within 10 s")]
    assert finished == []  # a:1 is still running, now under the run deadline
    barrier.state_changed("a:1", (A0, A1), pb.DONE, "")
    assert finished == [pb.ERROR]
    assert clock.getDelayedCalls() == []


def test_run_deadline_starts_when_every_carrier_took_off(clock, hooks):
    barrier = make(clock, hooks, run_s=3.0)
    finished = fired(barrier.when_finished())
    barrier.arm()
    clock.advance(5)
    barrier.state_changed("a:1", (A0, A1), pb.TAKE_OFF, "")
    barrier.state_changed("b:2", (B0,), pb.TAKE_OFF, "")
    barrier.state_changed("a:1", (A0, A1), pb.DONE, "")
    clock.advance(2.9)
    assert hooks.deadlines == []
    clock.advance(0.2)
    [(missing, what)] = hooks.deadlines
    assert missing == {"b:2": [B0]} and "not finished within 3 s" in what
    assert finished == [pb.ERROR]


def test_repetitive_run_has_no_run_deadline(clock, hooks):
    barrier = make(clock, hooks, run_s=None)
    barrier.arm()
    barrier.state_changed("a:1", (A0, A1), pb.TAKE_OFF, "")
    barrier.state_changed("b:2", (B0,), pb.TAKE_OFF, "")
    assert clock.getDelayedCalls() == []


def test_all_done_before_the_start_reply_needs_no_timer(clock, hooks):
    barrier = make(clock, hooks)
    barrier.state_changed("a:1", (A0, A1), pb.DONE, "")
    barrier.state_changed("b:2", (B0,), pb.DONE, "")
    barrier.arm()
    assert clock.getDelayedCalls() == []
    assert barrier.outcome == pb.DONE


def test_cancel_releases_waiters_and_the_timer(clock, hooks):
    barrier = make(clock, hooks)
    took_off, finished = fired(barrier.when_took_off()), fired(barrier.when_finished())
    barrier.arm()
    barrier.cancel()
    assert took_off == [None] and finished == [pb.ERROR]
    assert clock.getDelayedCalls() == []
    assert hooks.errors == []  # cancelling is not an error report


def test_run_seconds_adds_ic_op_and_grace_in_any_prefix():
    command = pb.StartRunCommand()
    command.run_config.ic_time.value = 500
    command.run_config.ic_time.prefix = pb.MICRO
    command.run_config.op_time.value = 2
    command.run_config.op_time.prefix = pb.NONE
    assert run_seconds(command, 10.0) == pytest.approx(12.0005)
    command.run_config.op_time.value = 30_000_000
    command.run_config.op_time.prefix = pb.NANO
    assert run_seconds(command, 1.0) == pytest.approx(1.0305)
    command.run_config.repetitive = True
    assert run_seconds(command, 1.0) is None


def test_barrier_table_walk():
    refused = walk(
        BARRIER, BarrierPhase,
        make=lambda phase: RunBarrier("run-1", task.Clock(), OWNERS, phase=phase),
        fire=lambda barrier, event: barrier._to(event),
        read=lambda barrier: barrier.phase,
    )
    assert refused == 4 * (3 + 1) - 5  # e.g. no second arm, nothing after FINISHED


def test_barrier_phases_follow_a_run(clock, hooks):
    b = make(clock, hooks)
    assert b.phase is BarrierPhase.UNARMED
    b.arm()
    assert b.phase is BarrierPhase.TAKE_OFF
    b.state_changed("a:1", (A0, A1), pb.TAKE_OFF, "")
    b.state_changed("b:2", (B0,), pb.TAKE_OFF, "")
    assert b.phase is BarrierPhase.RUNNING
    b.state_changed("a:1", (A0, A1), pb.DONE, "")
    b.state_changed("b:2", (B0,), pb.DONE, "")
    assert b.phase is BarrierPhase.FINISHED and b.outcome == pb.DONE
    b.arm()  # a late arm changes nothing (the coordinator may arm after a fast run)
    assert b.phase is BarrierPhase.FINISHED and not clock.getDelayedCalls()

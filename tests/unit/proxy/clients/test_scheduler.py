"""Sessions under task.Clock: FIFO, event-driven promotion, overload, idle timeouts."""

from __future__ import annotations

import pytest
from support.proxy_fakes import read_frames
from twisted.internet import task
from twisted.internet.testing import StringTransport

from pybrid.proxy.clients.scheduler import OVERLOADED, Scheduler
from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.wire import messages


class Health:
    ok = True

    def __call__(self):
        return self.ok


def make_session(name: str) -> Session:
    return Session(name, f"peer-{name}", ClientSender(StringTransport()))


def join(scheduler, session) -> bool:
    """Open the session and claim the device, as a client's first real request does."""
    if not scheduler.open(session):
        return False
    scheduler.claim(session)
    return True


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def health():
    return Health()


@pytest.fixture
def ended():
    return []


@pytest.fixture
def scheduler(clock, health, ended):
    return Scheduler(clock, health, ended.append, max_sessions=3, session_timeout=10.0)


def test_first_session_is_active_others_queue_fifo(scheduler):
    a, b, c = make_session("a"), make_session("b"), make_session("c")
    for s in (a, b, c):
        assert join(scheduler, s)
    assert scheduler.active is a and a.state is SessionState.ACTIVE
    assert list(scheduler.queue) == [b, c]
    scheduler.end(a, "gone")
    assert scheduler.active is b  # at once, no polling
    scheduler.end(b, "gone")
    assert scheduler.active is c


def test_on_end_runs_before_the_next_promotion(scheduler, ended):
    a, b = make_session("a"), make_session("b")
    join(scheduler, a)
    join(scheduler, b)
    seen = []
    scheduler.on_end = lambda s: seen.append((s.id, scheduler.active))
    scheduler.end(a, "gone")
    assert seen == [("a", None)]
    assert scheduler.active is b


def test_queued_session_leaving_keeps_order(scheduler):
    a, b, c = make_session("a"), make_session("b"), make_session("c")
    for s in (a, b, c):
        join(scheduler, s)
    scheduler.end(b, "gone")
    scheduler.end(a, "gone")
    assert scheduler.active is c and not scheduler.queue


def test_end_is_idempotent(scheduler, ended):
    a, b = make_session("a"), make_session("b")
    join(scheduler, a)
    join(scheduler, b)
    scheduler.end(a, "x")
    scheduler.end(a, "x")
    assert ended == [a]
    assert scheduler.active is b


def test_promotion_waits_for_healthy_backends(scheduler, health):
    health.ok = False
    a = make_session("a")
    join(scheduler, a)
    assert a.state is SessionState.QUEUED and scheduler.active is None
    health.ok = True
    scheduler.promote()  # the service calls this when a backend becomes ready
    assert scheduler.active is a


def test_beyond_max_sessions_gets_server_overloaded_then_close(scheduler):
    sessions = [make_session(str(i)) for i in range(4)]
    assert [join(scheduler, s) for s in sessions] == [True, True, True, False]
    last = sessions[-1]
    assert last.closed
    frames = read_frames(last.sender.transport)
    assert [messages.kind_of(f) for f in frames] == ["error_message"]
    assert frames[0].message_v1.error_message.description == OVERLOADED
    assert last.sender.transport.disconnecting
    assert scheduler.overloaded == 1


def test_idle_session_times_out_with_a_message(scheduler, clock):
    a = make_session("a")
    join(scheduler, a)
    clock.advance(9.9)
    assert not a.closed
    clock.advance(0.2)
    assert a.closed and scheduler.active is None
    [frame] = read_frames(a.sender.transport)
    assert "timed out" in frame.message_v1.error_message.description
    assert not frame.message_v1.HasField("id")
    assert a.sender.transport.disconnecting


def test_queued_session_that_never_ran_times_out_too(scheduler, clock):
    a, b = make_session("a"), make_session("b")
    join(scheduler, a)
    join(scheduler, b)
    for _ in range(4):  # a stays busy; b never does anything
        clock.advance(3)
        scheduler.touch(a)
    assert b.closed and not a.closed
    assert list(scheduler.queue) == []


def test_activity_restarts_the_timer(scheduler, clock):
    a = make_session("a")
    join(scheduler, a)
    for _ in range(5):
        clock.advance(8)
        scheduler.touch(a)
    assert not a.closed
    clock.advance(10.1)
    assert a.closed


def test_no_timeout_while_a_run_is_in_progress(scheduler, clock):
    a = make_session("a")
    join(scheduler, a)
    a.runs.add("r1")
    clock.advance(35)
    assert not a.closed
    a.run_ended("r1", 2)  # restarts the timer
    clock.advance(9.9)
    assert not a.closed
    clock.advance(0.2)
    assert a.closed


def test_degrade_closes_the_active_session_with_the_reason(scheduler):
    a, b = make_session("a"), make_session("b")
    join(scheduler, a)
    join(scheduler, b)
    scheduler.degrade("Cluster degraded: backend x lost")
    assert a.closed
    [frame] = read_frames(a.sender.transport)
    assert frame.message_v1.error_message.description.startswith("Cluster degraded")
    assert scheduler.active is b  # health is the caller's business; here it is fine


def test_idle_sessions_hold_no_place_in_the_queue(scheduler):
    discovery, real = make_session("discovery"), make_session("real")
    scheduler.open(discovery)  # extract from the cache only: never claims
    scheduler.open(real)
    assert scheduler.claim(real) is SessionState.ACTIVE
    assert discovery.state is SessionState.IDLE and scheduler.count == 2
    other = make_session("other")
    scheduler.open(other)
    assert scheduler.claim(other) is SessionState.QUEUED
    scheduler.end(discovery, "closed")  # an idle session leaving changes nothing
    assert scheduler.active is real and list(scheduler.queue) == [other]


def test_idle_sessions_count_towards_max_sessions(scheduler):
    sessions = [make_session(str(i)) for i in range(4)]
    assert [scheduler.open(s) for s in sessions] == [True, True, True, False]


def test_timers_are_cancelled_on_end(scheduler, clock):
    a = make_session("a")
    join(scheduler, a)
    scheduler.end(a, "gone")
    assert clock.getDelayedCalls() == []


@pytest.fixture
def patient(clock, health, ended):
    """--session-timeout 2, as in the reference interop scenario; queued allowance 3 s."""
    return Scheduler(clock, health, ended.append, max_sessions=3, session_timeout=2.0,
                     queued_grace=3.0)


def test_a_queued_session_asking_every_2_s_plus_a_round_trip_is_not_timed_out(patient, clock):
    a, b = make_session("a"), make_session("b")
    join(patient, a)
    join(patient, b)
    assert b.state is SessionState.QUEUED
    for _ in range(10):  # the reference client: busy, wait 2 s, ask again (round trip 0.3 s)
        for _ in range(2):
            clock.advance(1.15)
            patient.touch(a)  # the active session keeps busy
        patient.touch(b)
        assert patient.claim(b) is SessionState.QUEUED
    assert not b.closed


def test_a_queued_session_that_stops_asking_still_times_out(patient, clock):
    a, b = make_session("a"), make_session("b")
    join(patient, a)
    join(patient, b)
    for _ in range(7):
        clock.advance(0.7)
        patient.touch(a)
    assert not b.closed  # 4.9 s < 2 s + 3 s allowance
    clock.advance(0.2)
    assert b.closed and list(patient.queue) == []


def test_promotion_restarts_the_timer_with_the_allowance(patient, clock):
    a, b = make_session("a"), make_session("b")
    join(patient, a)
    join(patient, b)
    clock.advance(4.5)  # b last asked 4.5 s ago (allowed: 5 s)
    patient.touch(a)
    patient.end(a, "client closed the connection")
    assert patient.active is b
    clock.advance(4.9)  # it asks again only after its 2 s busy wait: plenty of time
    assert not b.closed
    patient.touch(b)  # its request: now an active session, the plain timeout
    clock.advance(2.1)
    assert b.closed

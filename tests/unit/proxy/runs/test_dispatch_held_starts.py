"""Starts while the session's previous run is unfinished, reused run ids, opaque kinds.

On a memory reactor with two fake backends (two carriers and one): a start held behind an
unfinished run is forwarded when the run has finished everywhere — with what is left of the
request timeout — or refused after ``Timing.start_hold``; a start naming a run id in use is
refused at once; every request gets exactly one reply.
"""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, make_proxy
from support.proxy_multi import active_client, start_command, start_run, state, udp
from twisted.logger import globalLogPublisher

from pybrid.proto import pb
from pybrid.proxy.runs.dispatch import HeldStart
from pybrid.wire import messages

A0, A1, B0 = "/aa-00-00-00-00-00", "/aa-00-00-00-00-01", "/bb-00-00-00-00-00"
CARRIERS = [["aa-00-00-00-00-00", "aa-00-00-00-00-01"], ["bb-00-00-00-00-00"]]


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def proxy(reactor):
    service, backends = make_proxy(reactor, carriers=CARRIERS)
    client = active_client(service)
    return service, backends, client


def kinds(backend):
    return [k for k in map(messages.kind_of, backend.received()) if not k.startswith("generic")]


def replies(client):
    """(request id, kind, error text) of the client's replies (run traffic left out)."""
    return [(e.message_v1.id, messages.kind_of(e), e.message_v1.error_message.description)
            for e in client.frames() if e.message_v1.HasField("id")
            and messages.kind_of(e) != "run_state_change_message"]


def a_failed_run_still_going_on_a(service, a, b, client):
    """run-1 started; b failed it, a is told to stop but has not finished yet."""
    start_run(client, (a, b))
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    udp(service, state("run-1", pb.ERROR, entity=B0, reason="boom"), lane=1)
    a.take("stop_run_command")
    client.frames()


def held_timers(reactor):
    return [c for c in reactor.getDelayedCalls()
            if getattr(c.func, "__func__", None) is HeldStart._expired]


def test_a_released_start_gets_what_is_left_of_the_request_timeout(reactor, proxy):
    service, (a, b), client = proxy
    a_failed_run_still_going_on_a(service, a, b, client)
    client.request("start_run_command", start_command("run-2"), id="start-2")
    reactor.advance(1.5)
    assert kinds(a) == kinds(b) == [] and replies(client) == []
    udp(service, state("run-1", pb.DONE), lane=0)
    assert kinds(a) == kinds(b) == ["start_run_command"]  # released …
    assert held_timers(reactor) == []
    b.answer("start_run_command", "start_run_response")  # … a never answers
    reactor.advance(3.49)
    assert replies(client) == []
    reactor.advance(0.02)  # 5 s after the start arrived: the client's request timeout
    [(rid, kind, text)] = replies(client)
    assert (rid, kind) == ("start-2", "error_message")
    assert text == "backend 127.0.0.1:6000: no reply to start_run_command within 3.5 s"
    assert service.dispatcher.counters.held_starts == 1
    assert service.dispatcher.counters.held_starts_refused == 0


def test_a_start_held_too_long_is_refused_naming_the_run_and_backend(reactor, proxy):
    service, (a, b), client = proxy
    a_failed_run_still_going_on_a(service, a, b, client)
    barrier = own_barrier(service, "run-1")
    waiting = barrier._finished_seen.waiting
    client.request("start_run_command", start_command("run-2"), id="start-2")
    assert barrier._finished_seen.waiting == waiting + 1
    reactor.advance(1.99)
    assert replies(client) == []
    reactor.advance(0.02)
    assert replies(client) == [("start-2", "error_message",
                                "previous run run-1 still running on backend 127.0.0.1:6000 "
                                "after 2 s; start_run not forwarded (a device runs one run at "
                                "a time)")]
    assert barrier._finished_seen.waiting == waiting  # nothing left waiting for run-1
    assert service.dispatcher.counters.held_starts_refused == 1
    udp(service, state("run-1", pb.DONE), lane=0)  # run-1 ends later: nothing more happens
    assert kinds(a) == kinds(b) == [] and replies(client) == []
    start_run(client, (a, b), "run-2")  # the client tries again: not held


def test_a_held_start_of_a_session_that_ends_gets_nothing_and_leaves_no_timer(reactor, proxy):
    service, (a, b), client = proxy
    a_failed_run_still_going_on_a(service, a, b, client)
    client.request("start_run_command", start_command("run-2"), id="start-2")
    assert len(held_timers(reactor)) == 1
    client.close()
    assert held_timers(reactor) == []
    assert service.scheduler.active is None and not service.dispatcher.coordinator.barriers
    reactor.advance(5)
    assert "start_run_command" not in kinds(a) + kinds(b)


def test_a_start_released_behind_another_waits_against_its_first_deadline(reactor, proxy):
    service, (a, b), client = proxy
    a_failed_run_still_going_on_a(service, a, b, client)
    client.request("start_run_command", start_command("run-2"), id="start-2")
    client.request("start_run_command", start_command("run-3"), id="start-3")
    reactor.advance(1)
    udp(service, state("run-1", pb.DONE), lane=0)  # both released: run-2 starts, run-3 waits
    for backend in (a, b):
        sent = backend.take("start_run_command")
        assert sent.message_v1.start_run_command.run.id == service.router.runs["run-2"].run_id
        backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert kinds(a) == kinds(b) == []
    assert replies(client) == [("start-2", "start_run_response", "")]
    reactor.advance(0.99)
    assert replies(client) == []
    reactor.advance(0.02)  # 2 s after run-3 arrived, not after its release
    [(rid, kind, text)] = replies(client)
    assert (rid, kind) == ("start-3", "error_message")
    assert text.startswith("previous run run-2 still running on backend 127.0.0.1:6000, "
                           "127.0.0.1:6001 after 2 s")
    assert service.dispatcher.counters.held_starts == 2


@pytest.mark.parametrize("flag", ["clear_queue", None])
def test_a_start_reusing_the_id_of_a_run_in_progress_is_refused(proxy, flag):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    barrier = own_barrier(service, "run-1")
    command = start_command("run-1")
    if flag is not None:
        setattr(command, flag, True)
    client.request("start_run_command", command, id="again")
    assert replies(client) == [(
        "again", "error_message",
        "run id 'run-1' is already in use by a run in progress on backend 127.0.0.1:6000, "
        "127.0.0.1:6001; start_run not forwarded (a new run needs a new id)")]
    assert kinds(a) == kinds(b) == []
    assert own_barrier(service, "run-1") is barrier  # its bookkeeping is untouched
    assert service.dispatcher.counters.reused_run_ids == 1
    for lane, entity in ((0, None), (1, B0)):
        udp(service, state("run-1", pb.DONE, entity=entity), lane=lane)
    assert barrier.finished and client.proto.session.runs == set()
    start_run(client, (a, b), "run-1")  # finished: the id may be used again


def test_end_repetitive_naming_the_run_in_progress_is_forwarded_and_keeps_its_bookkeeping(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b), repetitive=True)
    barrier = own_barrier(service, "run-1")
    command = start_command("run-1")
    command.end_repetitive = True
    client.frames()
    client.request("start_run_command", command, id="end")
    for backend in (a, b):
        sent = backend.take("start_run_command")
        assert sent.message_v1.start_run_command.end_repetitive
        backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert replies(client) == [("end", "start_run_response", "")]
    assert own_barrier(service, "run-1") is barrier
    assert service.dispatcher.counters.reused_run_ids == 0
    for lane, entity in ((0, None), (1, B0)):
        udp(service, state("run-1", pb.DONE, entity=entity), lane=lane)
    assert barrier.finished and client.proto.session.runs == set()


def test_an_opaque_kind_for_several_backends_is_logged_and_gets_the_first_reply(proxy):
    _service, (a, b), client = proxy
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        client.request("get_system_ident_command", id="ident")
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = [e for e in events if "opaque" in e.get("log_format", "")]
    assert [(e["log_level"].name, e["kind"]) for e in logged] == [
        ("debug", "get_system_ident_command")]
    a.answer("get_system_ident_command", "get_system_ident_response")
    b.answer("get_system_ident_command", "success_message")
    assert replies(client) == [("ident", "get_system_ident_response", "")]


def own_barrier(service, client_id):
    """The barrier of the active session's run the client calls ``client_id``."""
    [barrier] = [b for _, b in service.dispatcher.coordinator.barriers.values()
                 if b.client_id == client_id]
    return barrier

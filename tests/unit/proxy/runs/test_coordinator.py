"""Runs across several backends on a memory reactor: first error, lost backend, deadlines,
the next run waiting for every backend."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_backend, connect_client, make_proxy
from support.proxy_multi import active_client, start_command, start_run, state, states_of, udp
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from pybrid.proto import pb
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


def test_error_on_one_backend_reaches_the_client_and_stops_the_run_on_the_others(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    udp(service, state("run-1", pb.TAKE_OFF, entity=B0), lane=1)
    udp(service, state("run-1", pb.ERROR, entity=B0, reason="overload"), lane=1)
    assert states_of(client.frames())[-1] == (B0, "ERROR", "overload")
    stop = a.take("stop_run_command")  # the backend still running is stopped …
    assert kinds(b) == []  # … the failed one is not
    a.send(messages.success(id=stop.message_v1.id))
    udp(service, state("run-1", pb.DONE), lane=0)  # it ends its run
    assert service.dispatcher.counters.stop_runs == 1
    assert client.proto.session.runs == set()  # the idle timeout runs again
    assert service.scheduler.active is client.proto.session  # the session goes on


def test_next_start_waits_until_every_backend_is_done(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    udp(service, state("run-1", pb.ERROR, entity=B0, reason="boom"), lane=1)
    a.take("stop_run_command")
    client.frames()
    client.request("start_run_command", start_command("run-2"), id="start-2")
    assert kinds(a) == [] and kinds(b) == []  # held: a is still running run-1
    assert service.dispatcher.counters.held_starts == 1
    udp(service, state("run-1", pb.DONE), lane=0)
    assert kinds(a) == kinds(b) == ["start_run_command"]  # forwarded now
    client.frames()
    for backend in (a, b):
        sent = backend.take("start_run_command")
        backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    [reply] = client.frames()
    assert messages.kind_of(reply) == "start_run_response" and reply.message_v1.id == "start-2"


def test_a_start_after_a_clean_run_is_not_held(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.DONE), lane=0)
    udp(service, state("run-1", pb.DONE), lane=1)
    start_run(client, (a, b), "run-2")
    assert service.dispatcher.counters.held_starts == 0


def test_lost_backend_mid_run_fails_its_carriers_then_the_session_is_closed(reactor, proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    udp(service, state("run-1", pb.TAKE_OFF), lane=1)
    client.frames()
    a.proto.connectionLost(Failure(ConnectionLost("gone")))
    frames = client.frames()
    text = "Cluster degraded: backend 127.0.0.1:6000 lost"
    assert [(c, s) for c, s, _ in states_of(frames)] == [(A0, "ERROR"), (A1, "ERROR")]
    assert all(r.startswith(text) for _, _, r in states_of(frames))
    assert kinds(b) == ["stop_run_command"]  # the surviving backend stops the run
    # the reference client drops what arrives right before a close: the close waits a little
    assert not client.closing
    reactor.advance(0.49)
    assert client.frames() == [] and not client.closing
    reactor.advance(0.02)
    [last] = client.frames()
    assert last.message_v1.error_message.description.startswith(text)
    assert not last.message_v1.HasField("id")
    assert client.closing
    assert service.scheduler.active is None


def test_a_client_leaving_during_the_close_grace_cancels_the_timer(reactor, proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    a.proto.connectionLost(Failure(ConnectionLost("gone")))
    session = client.proto.session
    assert session.close_timer is not None
    client.close()
    assert session.close_timer is None and service.scheduler.active is None
    reactor.advance(1)
    assert client.frames()[-1].message_v1.run_state_change_message.new_ == pb.ERROR


def test_lost_backend_while_nobody_runs_only_closes_the_active_session(proxy):
    _service, (a, b), client = proxy
    b.proto.connectionLost(Failure(ConnectionLost("gone")))
    [reply] = client.frames()
    assert reply.message_v1.error_message.description.startswith(
        "Cluster degraded: backend 127.0.0.1:6001 lost")
    assert kinds(a) == []  # no run: nothing to stop


def test_a_backend_that_never_takes_off_fails_and_is_stopped(reactor, proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    for _ in range(20):  # both backends stay alive, b just never takes off
        reactor.advance(0.5)
        a.send(messages.generic_pong())
        b.send(messages.generic_pong())
    failed = [s for s in states_of(client.frames()) if s[1] == "ERROR"]
    assert failed == [(B0, "ERROR", "backend 127.0.0.1:6001: no TAKE_OFF within 10 s")]
    assert kinds(b) == ["stop_run_command"]
    assert kinds(a) == ["stop_run_command"]  # the run failed: a must not run on alone
    assert service.dispatcher.counters.deadlines == 1


def test_a_backend_that_never_finishes_fails_after_op_time_plus_grace(reactor, proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b), op_ns=2_000_000_000)  # 2 s; deadline 2 + 10 s after TAKE_OFF
    udp(service, state("run-1", pb.TAKE_OFF), lane=0)
    udp(service, state("run-1", pb.TAKE_OFF), lane=1)
    udp(service, state("run-1", pb.DONE), lane=1)
    client.frames()
    for _ in range(23):
        reactor.advance(0.5)
        a.send(messages.generic_pong())
        b.send(messages.generic_pong())
    assert client.frames() == []
    reactor.advance(0.6)
    a.send(messages.generic_pong())
    failed = states_of(client.frames())
    assert [(c, s) for c, s, _ in failed] == [(A0, "ERROR"), (A1, "ERROR")]
    assert "not finished within 12 s" in failed[0][2]
    assert kinds(a) == ["stop_run_command"] and kinds(b) == []
    assert client.proto.session.runs == set()


def test_session_end_mid_run_stops_every_backend_once(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    client.close()
    assert kinds(a) == kinds(b) == ["stop_run_command"]
    assert service.dispatcher.counters.stop_runs == 2


def test_start_refused_by_one_backend_is_stopped_on_the_other_and_forgotten(proxy):
    service, (a, b), client = proxy
    client.request("start_run_command", start_command("half"), id="s")
    sa, sb = a.take("start_run_command"), b.take("start_run_command")
    a.send(messages.v1("start_run_response", id=sa.message_v1.id))
    b.send(messages.error("cannot", id=sb.message_v1.id))
    [reply] = client.frames()
    assert reply.message_v1.error_message.description == "backend 127.0.0.1:6001: cannot"
    assert kinds(a) == ["stop_run_command"] and kinds(b) == []
    assert service.dispatcher.coordinator.barriers == {}
    start_run(client, (a, b), "next")  # not held behind the refused run
    assert service.dispatcher.counters.held_starts == 0


def test_after_a_lost_backend_no_session_is_promoted_until_it_is_back(reactor, proxy):
    service, (a, _b), active = proxy

    waiting = connect_client(service, 2)
    waiting.request("reset_command", id="r")
    assert waiting.kinds() == ["busy_response"]
    a.proto.connectionLost(Failure(ConnectionLost("gone")))
    assert service.scheduler.active is None
    assert active.closing
    waiting.request("reset_command", id="r2")
    assert waiting.kinds() == ["busy_response"]
    reactor.advance(0.5)  # the lane reconnects: connectTCP number 3 (after the first two)
    connect_backend(reactor, index=2, macs=CARRIERS[0]).handshake()
    assert service.scheduler.active is waiting.proto.session


def test_run_meta_tells_the_taps_the_rate_channels_and_times_of_the_start_command():
    from pybrid.client.results import RunSpec
    from pybrid.proxy.runs.coordinator import run_meta

    cmd = RunSpec(0.25, ic_time=1e-3, channels=3, sample_rate=20_000).command("r", None)
    cmd.run_config.ic_time.value, cmd.run_config.ic_time.prefix = 1, pb.MILLI
    assert run_meta(cmd) == {"sample_rate": 20_000, "channels": 3, "sample_op": True,
                             "sample_op_end": True, "op_time_ns": 250_000_000,
                             "ic_time_ns": 1_000_000}
    assert run_meta(pb.StartRunCommand()) == {}

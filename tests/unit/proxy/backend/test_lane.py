"""Backend lanes under a memory reactor: handshake, UDP negotiation, health, reconnects."""

from __future__ import annotations

import pytest
from support.proxy_fakes import connect_backend, spec_reply
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backend.lane import BackendLane, LaneState, carrier_paths
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import Timing
from pybrid.wire import messages


@pytest.fixture
def lane(reactor, events):
    lane = BackendLane(Backend("127.0.0.1", 5999), reactor, events, events)
    lane.start()
    return lane


def test_handshake_extract_reset_udp_in_order(reactor, events, lane):
    assert reactor.tcpClients[0][:2] == ("127.0.0.1", 5999)
    assert reactor.tcpClients[0][3] == 5.0  # connect timeout
    backend = connect_backend(reactor, macs=["aa-00-00-00-00-01", "aa-00-00-00-00-02"])
    assert lane.state is LaneState.HANDSHAKE
    [extract] = backend.received()
    assert messages.kind_of(extract) == "extract_command"
    cmd = extract.message_v1.extract_command
    assert cmd.recursive and cmd.specification and not cmd.configuration
    backend.handshake()
    assert backend.received() == []
    assert lane.healthy and lane.state is LaneState.READY
    assert lane.data_mode == "udp"
    assert lane.carriers == ("/aa-00-00-00-00-01", "/aa-00-00-00-00-02")
    assert events.ready == [lane]
    # the UDP request named the intake, bound to the TCP connection's local address
    [udp] = reactor.udp_ports
    assert udp.interface == "127.0.0.1"
    assert lane.intake is not None and lane.intake.peer_host == "127.0.0.1"


def test_handshake_messages_carry_the_reference_flags(reactor, lane):
    backend = connect_backend(reactor)
    request = backend.take("extract_command")
    backend.send(spec_reply(request.message_v1.id, ["00-00-00-00-00-00"]))
    reset = backend.answer("reset_command", "reset_response").message_v1.reset_command
    assert reset.keep_calibration and reset.overload_reset and reset.sync
    assert not reset.circuit_reset
    udp = backend.answer("udp_data_streaming_command", "success_message")
    assert udp.message_v1.udp_data_streaming_command.port == reactor.udp_ports[0].port
    assert lane.healthy


def test_refused_udp_falls_back_to_tcp_and_run_traffic_arrives_by_tcp(reactor, events, lane):
    backend = connect_backend(reactor, accept_udp=False)
    backend.handshake()
    assert lane.healthy and lane.data_mode == "tcp"
    data = messages.v1("run_data_message")
    data.message_v1.run_data_message.run.id = "r1"
    backend.send(data)
    assert [messages.kind_of(e) for e, _ in events.messages] == ["run_data_message"]


def test_pings_every_half_second_and_pongs_keep_it_healthy(reactor, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    for _ in range(10):
        reactor.advance(0.5)
        pings = [e for e in backend.received() if messages.kind_of(e) == "generic.ping_command"]
        assert len(pings) == 1
        backend.inbox.clear()
        backend.send(messages.generic_pong())
    assert lane.healthy
    assert not backend.transport.disconnecting


def test_silent_backend_is_dropped_after_two_seconds_and_reconnected(reactor, events, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    reactor.advance(2.0)
    assert not backend.transport.disconnecting  # exactly 2 s of silence is still fine
    reactor.advance(0.5)
    assert backend.transport.disconnected  # aborted, not a polite close
    backend.proto.connectionLost(Failure(ConnectionDone("aborted")))
    assert lane.state is LaneState.WAITING and not lane.healthy
    assert len(events.lost) == 1
    assert len(reactor.tcpClients) == 1
    reactor.advance(0.5)
    assert len(reactor.tcpClients) == 2
    again = connect_backend(reactor)
    again.handshake()
    assert lane.healthy and len(events.ready) == 2
    assert len(reactor.udp_ports) == 1  # the intake socket is kept across reconnects


def test_backend_down_at_start_retries_with_backoff(reactor, events, lane):
    delays = []
    for _ in range(8):
        n = len(reactor.tcpClients)
        factory = reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        assert lane.state is LaneState.WAITING
        t0 = reactor.seconds()
        while len(reactor.tcpClients) == n:
            reactor.advance(0.05)
        delays.append(round(reactor.seconds() - t0, 2))
    assert delays[0] == pytest.approx(0.5, abs=0.06)
    assert delays == sorted(delays)
    assert max(delays) <= 5.05
    backend = connect_backend(reactor)
    backend.handshake()
    assert lane.healthy and events.ready == [lane] and events.lost == []


def test_unanswered_handshake_times_out_and_reconnects(reactor, lane):
    backend = connect_backend(reactor)
    backend.take("extract_command")
    # pongs keep the connection alive; only the request itself is left unanswered
    for _ in range(10):
        reactor.advance(0.5)
        backend.send(messages.generic_pong())
    assert backend.transport.disconnected
    assert not lane.healthy


def test_request_gets_a_fresh_id_and_resolves(reactor, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    env = messages.v1("get_system_ident_command", id="client-id")
    d = lane.request(env)
    sent = backend.take("get_system_ident_command")
    assert sent.message_v1.id != "client-id"
    replies = []
    d.addCallback(replies.append)
    backend.send(messages.v1("get_system_ident_response", id=sent.message_v1.id))
    assert messages.kind_of(replies[0]) == "get_system_ident_response"


def test_intake_drops_datagrams_from_unknown_addresses(reactor, events, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    intake = lane.intake
    intake.datagramReceived(b"\x01\x02", ("10.9.9.9", 1234))
    intake.datagramReceived(b"\x03", ("127.0.0.1", 4321))
    assert intake.counters.foreign == 1
    assert intake.counters.datagrams == 1
    assert events.datagrams == [b"\x03"]


def test_stop_closes_and_does_not_reconnect(reactor, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    lane.stop()
    assert backend.transport.disconnecting
    backend.proto.connectionLost(Failure(ConnectionDone()))
    reactor.advance(10)
    assert len(reactor.tcpClients) == 1
    assert lane.state is LaneState.STOPPED
    assert not reactor.udp_ports[0].listening


def test_carrier_paths_of_a_carrier_root_and_a_device_root():
    carrier = pb.Item()
    carrier.entity_specification.entity.id = "/11-22"
    carrier.entity_specification.entity.class_ = pb.Entity.CARRIER
    device = pb.Item()
    root = device.entity_specification.entity
    root.class_ = pb.Entity.DEVICE
    root.children.add(id="/aa", class_=pb.Entity.CARRIER)
    root.children.add(id="/FP", class_=pb.Entity.FRONT_PANEL)
    assert carrier_paths([carrier, device]) == ("/11-22", "/aa")


def test_timing_is_injected(reactor, events):
    lane = BackendLane(Backend("h", 1), reactor, events, events, Timing(connect_timeout=1.5))
    lane.start()
    assert reactor.tcpClients[0][3] == 1.5


def test_reconnect_waits_follow_backoff_delay_with_jitter(reactor, events):
    timing = Timing(reconnect_initial=1.0, reconnect_factor=2.0, reconnect_max=3.0,
                    reconnect_jitter=0.5)
    lane = BackendLane(Backend("h", 1), reactor, events, events, timing,
                       jitter_source=lambda: 0.0)
    lane.start()
    waits = []
    for _ in range(4):
        reactor.tcpClients[-1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        waits.append(round(min(c.getTime() for c in reactor.getDelayedCalls()
                               if c.func == lane._connect) - reactor.seconds(), 3))
        reactor.advance(waits[-1])
    assert waits == [0.5, 1.0, 1.5, 1.5]  # 1, 2, 3, 3 s less half (jitter 0.5, random 0)


def test_a_connection_lost_after_stop_and_start_is_stale(reactor, events, lane):
    old = connect_backend(reactor)
    old.handshake()
    lane.stop()
    lane.start()  # a new connectTCP is under way before the old connection is gone
    assert lane.state is LaneState.CONNECTING and len(reactor.tcpClients) == 2
    old.proto.connectionLost(Failure(ConnectionDone()))
    assert lane.state is LaneState.CONNECTING  # not WAITING with a second connect pending
    assert not [c for c in reactor.getDelayedCalls() if c.func == lane._connect]
    again = connect_backend(reactor)
    again.handshake()
    assert lane.healthy and events.ready == [lane, lane]

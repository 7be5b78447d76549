"""The status snapshot of a proxy on a memory reactor: backends, sessions, rates, recent errors."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_backend, connect_client, device_bytes
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backendfile import parse_text
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.proxy.status.collect import StatusCollector, proxy_counters
from pybrid.proxy.status.events import RecentEvents
from pybrid.wire import messages

MACS = ["00-00-5E-00-53-01", "00-00-5E-00-53-02"]
SETUP = """
carrier 127.0.0.1:6000 0
carrier 127.0.0.1:6001 1
wire 0/0 1/0
wire 1/aux0 0/3
"""


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def devices():
    return []


@pytest.fixture
def proxy(reactor, devices):
    spec = parse_text(SETUP)
    service = ProxyService(ProxyConfig(backends=spec.backends, wires=spec.wires,
                                       interface="127.0.0.1", port=0), reactor)
    service.startService()
    for i, mac in enumerate(MACS):
        device = connect_backend(reactor, index=i, macs=[mac])
        device.handshake()
        devices.append(device)
    assert service.all_healthy()
    yield service
    service.stopService()


@pytest.fixture
def collector(reactor, proxy):
    c = StatusCollector(proxy, reactor)
    c.start()
    yield c
    c.stop()


def test_backends_locations_carriers_and_wiring(proxy, collector):
    status = collector.snapshot()
    assert [b.name for b in status.backends] == ["127.0.0.1:6000", "127.0.0.1:6001"]
    assert [b.state for b in status.backends] == ["ready", "ready"]
    assert [b.location for b in status.backends] == ["0", "1"]
    assert [b.carriers for b in status.backends] == [("/" + MACS[0],), ("/" + MACS[1],)]
    assert {b.data_mode for b in status.backends} == {"udp"}
    intake_port = proxy.lanes[0].intake.port.getHost().port
    assert status.backends[0].intake.address == f"127.0.0.1:{intake_port}"
    assert status.wires == (("0/0", "1/0"), ("1/aux0", "0/3"))
    assert [(c.path, c.backend, c.location) for c in status.carriers] == [
        ("/" + MACS[0], "127.0.0.1:6000", "0"), ("/" + MACS[1], "127.0.0.1:6001", "1")]
    assert status.healthy and status.listen is not None and status.uptime == 0


def test_a_lost_backend_shows_as_not_ready(reactor, proxy, devices, collector):
    devices[1].proto.connectionLost(Failure(ConnectionDone()))
    status = collector.snapshot()
    assert [b.healthy for b in status.backends] == [True, False]
    assert status.backends[1].state == "waiting"
    assert not status.healthy


def test_active_session_queue_and_idle_sessions(reactor, proxy, collector):
    first = connect_client(proxy, port=41001)
    first.request("reset_command", pb.ResetCommand())
    reactor.advance(1.0)
    second = connect_client(proxy, port=41002)
    second.request("reset_command", pb.ResetCommand())
    third = connect_client(proxy, port=41003)
    third.request("ping_command")  # a complete frame: a session slot, idle
    reactor.advance(0.5)
    status = collector.snapshot()
    assert status.active is not None
    assert (status.active.peer, status.active.state) == ("127.0.0.1:41001", "active")
    assert status.active.forwarded == 1
    assert 0.0 <= status.active.since <= 1.0  # observed by the next sample (1 s interval)
    assert [(q.peer, q.state, q.busy_replies) for q in status.queue] == [
        ("127.0.0.1:41002", "queued", 1)]
    assert status.queue[0].since == 1.5  # queued at 1.0, after that sample: seen by this one
    assert [i.peer for i in status.idle] == ["127.0.0.1:41003"]
    first.close()
    after = collector.snapshot()
    assert after.active is not None and after.active.peer == "127.0.0.1:41002"
    assert after.active.since == 1.5  # a snapshot observes too
    assert after.queue == ()
    third.close()
    second.close()


def test_current_run_of_the_active_session(reactor, proxy, collector):
    client = connect_client(proxy)
    command = pb.StartRunCommand()
    command.run.id = "run-42"
    client.request("start_run_command", command)
    status = collector.snapshot()
    assert status.active is not None
    assert [(r.id, r.carriers, r.finished) for r in status.active.runs] == [("run-42", 2, 0)]
    client.close()


def test_rates_come_from_counter_differences_over_the_window(reactor, proxy, collector):
    intake = proxy.lanes[0].intake
    for _ in range(10):
        intake.datagramReceived(b"\x00" * 100, ("127.0.0.1", 7000))
    reactor.advance(1.0)
    for _ in range(30):
        intake.datagramReceived(b"\x00" * 100, ("127.0.0.1", 7000))
    reactor.advance(1.0)
    backend = collector.snapshot().backends[0]
    assert backend.intake.datagrams == 40 and backend.intake.bytes == 4000
    assert backend.datagram_rate == pytest.approx(20.0)  # 40 over the 2 s window
    assert backend.byte_rate == pytest.approx(2000.0)
    assert collector.snapshot().backends[1].datagram_rate == 0.0


def test_client_buffer_is_read_from_the_sender(reactor, proxy, collector):
    client = connect_client(proxy)
    client.request("reset_command", pb.ResetCommand())
    active = collector.snapshot().active
    assert active is not None
    sender = client.proto.session.sender.status()
    assert (active.buffered, active.buffer_limit) == (sender.buffered, sender.limit)
    assert active.buffer_limit == 64 << 20  # --client-buffer's default
    client.close()


def test_kernel_drops_come_from_the_intake_watch(reactor, proxy, collector):
    proxy.lanes[1].intake.counters.kernel_drops = 7  # what IntakeWatch.poll adds up
    assert [b.intake.kernel_drops for b in collector.snapshot().backends] == [0, 7]


def test_version_is_on_the_snapshot(collector):
    from pybrid.version import version

    assert collector.snapshot().version == version()


def test_proxy_counters_are_collected(reactor, proxy, collector):
    client = connect_client(proxy)
    client.request("reset_command", pb.ResetCommand())
    counters = collector.snapshot().counters
    assert counters["connections"] == 1 and counters["handovers"] == 1
    assert counters["requests_forwarded"] == 1
    client.close()


# -- recent events ------------------------------------------------------------------------


def emit(publisher, namespace, level, text, **fields):
    Logger(namespace=namespace, observer=publisher).emit(level, text, **fields)


def test_recent_events_keep_warnings_and_errors_of_the_proxy_only():
    ring = RecentEvents(capacity=3)
    publisher = LogPublisher(ring)
    emit(publisher, "pybrid.proxy.backend.lane.BackendLane", LogLevel.info, "hello")
    emit(publisher, "pybrid.proxy.backend.lane.BackendLane", LogLevel.warn, "backend {b} lost",
         b="x")
    emit(publisher, "pybrid.proxyfoo", LogLevel.error, "not ours")
    emit(publisher, "twisted.web", LogLevel.error, "not ours either")
    emit(publisher, "pybrid.proxy.data.router", LogLevel.error, "bad {thing}", thing="<datagram>")
    assert [(e.level, e.text) for e in ring.entries] == [
        ("warn", "backend x lost"), ("error", "bad <datagram>")]
    assert ring.counts == {"warn": 1, "error": 1, "critical": 0}


def test_recent_events_are_bounded_and_counted():
    ring = RecentEvents(capacity=3)
    publisher = LogPublisher(ring)
    for i in range(10):
        emit(publisher, "pybrid.proxy", LogLevel.warn, "event {i}", i=i)
    assert [e.text for e in ring.entries] == ["event 7", "event 8", "event 9"]
    assert ring.counts == {"warn": 10, "error": 0, "critical": 0}


def test_recent_events_include_failures_and_survive_bad_formats():
    ring = RecentEvents()
    log = Logger(namespace="pybrid.proxy.runs.dispatch", observer=LogPublisher(ring))
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("forwarding failed")
    log.error("broken {format", x=1)
    assert ring.entries[0].level == "critical"
    assert ring.entries[0].text == "forwarding failed: boom"
    assert len(ring.entries) == 2  # the unformattable one is kept too


# -- per-carrier chunks --------------------------------------------------------------------


def run_data(run_id: str, chunk: int, mac: str) -> bytes:
    env = pb.Envelope()
    msg = env.message_v1.run_data_message
    msg.run.id = run_id
    msg.run.chunk = chunk
    msg.entity.path = "/" + mac
    msg.data.data = b"\x00" * 32
    return env.SerializeToString()


def test_chunks_and_chunk_rates_per_carrier(reactor, proxy, collector):
    client = connect_client(proxy)
    command = pb.StartRunCommand()
    command.run.id = "11111111-2222-3333-4444-555555555555"
    client.request("start_run_command", command)
    intakes = [lane.intake for lane in proxy.lanes]

    def dev(payload):
        return device_bytes(proxy.router, payload)

    for chunk in range(10):
        intakes[0].datagramReceived(dev(run_data(command.run.id, chunk, MACS[0])), ("127.0.0.1", 1))
    for chunk in (0, 1, 5):  # chunks 2..4 lost on the way
        intakes[1].datagramReceived(dev(run_data(command.run.id, chunk, MACS[1])), ("127.0.0.1", 1))
    reactor.advance(1.0)
    for chunk in range(10, 30):
        intakes[0].datagramReceived(dev(run_data(command.run.id, chunk, MACS[0])), ("127.0.0.1", 1))
    reactor.advance(1.0)
    status = collector.snapshot()
    by_path = {c.path: c for c in status.carriers}
    first, second = by_path["/" + MACS[0]], by_path["/" + MACS[1]]
    assert (first.gaps, second.gaps) == (0, 0)  # chunks 2..4 may still come (reordered)
    assert first.chunk_rate == pytest.approx(15.0)  # 30 chunks over the 2 s window
    assert second.chunk_rate == pytest.approx(1.5)  # 3 chunks received (3 lost) in 2 s
    assert (first.chunks, second.chunks) == (30, 3)  # counted by the router
    assert status.active is not None and status.active.runs[0].chunks == 36  # positions
    for index, mac in enumerate(MACS[:2]):  # the run ends: what is still missing is lost
        change = pb.RunStateChangeMessage(old=pb.OP_END, new_=pb.DONE)
        change.run.id = command.run.id
        change.entity.path = "/" + mac
        intakes[index].datagramReceived(
            dev(messages.v1("run_state_change_message", change).SerializeToString()),
            ("127.0.0.1", 1))
    by_path = {c.path: c for c in collector.snapshot().carriers}
    assert (by_path["/" + MACS[0]].gaps, by_path["/" + MACS[1]].gaps) == (0, 3)
    client.close()


def test_chunk_counts_of_a_run_that_ended_stay(reactor, proxy, collector):
    client = connect_client(proxy)
    command = pb.StartRunCommand()
    command.run.id = "11111111-2222-3333-4444-555555555555"
    client.request("start_run_command", command)
    intake = proxy.lanes[0].intake
    for chunk in range(5):
        datagram = device_bytes(proxy.router, run_data(command.run.id, chunk, MACS[0]))
        intake.datagramReceived(datagram, ("127.0.0.1", 1))
    # a short run, over between two samples (forget_run takes the proxy's own run id)
    proxy.router.forget_run(proxy.router.runs[command.run.id].run_id)
    carrier = collector.snapshot().carriers[0]
    assert carrier.chunks == 5
    client.close()


def test_every_proxy_wide_counter_has_a_metric(proxy) -> None:
    """A counter added to ``proxy_counters`` must also be exported at /metrics."""
    from pybrid.proxy.status import metrics

    names = set(proxy_counters(proxy.status()))
    assert "auth_throttled" in names and "held_starts_refused" in names
    exported = set(metrics.COUNTERS) | set(metrics.DROPS) | metrics.PER_CARRIER
    assert names <= exported, names - exported


def test_the_isolation_counters_are_on_the_status_page(reactor, proxy, collector) -> None:
    """Issue 15's counters: refused client run traffic, paused reads and connection deadlines
    reach the snapshot (the page and /status.json render ``counters``)."""
    client = connect_client(proxy)
    for i in range(30):  # run traffic, and past the frame-rate burst: reads paused
        client.request("run_data_message", id=f"r{i}")
    silent = connect_client(proxy, 41999)
    reactor.advance(proxy.front.first_frame_deadline + 1)  # silent: closed at its deadline
    counters = collector.snapshot().counters
    assert counters["client_run_traffic_refused"] == 30
    assert counters["client_reads_paused"] >= 1
    assert counters["connection_deadlines"] == 1
    assert counters["auth_closed"] == 0 and counters["intake_connects"] == 0
    silent.close()
    client.close()

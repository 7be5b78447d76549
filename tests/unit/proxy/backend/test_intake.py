"""Intake sockets: receive buffer, kernel drop accounting and the once-a-second watch."""

from __future__ import annotations

import socket
import sys
from typing import Any

import attrs
import pytest
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from pybrid import netstats
from pybrid.proxy.backend.intake import (
    MAX_PACKET,
    DatagramIntake,
    IntakeWatch,
    intake_backlog,
)

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/udp")


class Sink:
    """A router stand-in: hands each datagram to ``deliver`` and returns its answer."""

    def __init__(self, deliver):
        self.deliver = deliver

    def route_datagram(self, source, data):
        return self.deliver(data)


@attrs.define
class SocketPort:
    """A bound UDP socket standing in for Twisted's port (what the intake reads)."""

    socket: socket.socket
    maxThroughput: int = 256 * 1024

    def getHost(self) -> Any:
        host, port = self.socket.getsockname()
        return attrs.make_class("Addr", ["host", "port"])(host, port)

    def stopListening(self) -> None:
        self.socket.close()


@attrs.define
class SocketReactor:
    ports: list = attrs.field(factory=list)
    max_packet: int = 0

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.max_packet = maxPacketSize
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((interface, port))
        fake = SocketPort(sock)
        self.ports.append(fake)
        return fake


@attrs.define
class Lane:
    name: str
    intake: DatagramIntake | None


@attrs.define
class Router:
    gaps_by_carrier: dict = attrs.field(factory=dict)
    settled: int = 0

    def settle_gaps(self):
        self.settled += 1


@pytest.fixture
def captured():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def flood(port: int, count: int, size: int = 1400) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(count):
            tx.sendto(b"\x00" * size, ("127.0.0.1", port))


def test_listen_asks_for_the_buffer_and_reports_what_the_kernel_granted():
    reactor = SocketReactor()
    intake = DatagramIntake("dev", None, Sink(lambda data: None))
    try:
        intake.listen(reactor, "127.0.0.1", 8 << 20, max_throughput=64 * 1024)
        sock = reactor.ports[0].socket
        assert reactor.max_packet == MAX_PACKET == 65536
        assert reactor.ports[0].maxThroughput == 64 * 1024
        assert intake.rcvbuf == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert intake.rcvbuf > 212_992  # more than the default
    finally:
        intake.stop()


@linux
def test_the_backlog_is_the_fullest_intakes_share_of_its_buffer():
    reactor = SocketReactor()
    busy = DatagramIntake("busy", None, Sink(lambda data: None))
    quiet = DatagramIntake("quiet", None, Sink(lambda data: None))
    lanes = [Lane("busy", busy), Lane("quiet", quiet), Lane("down", None)]
    try:
        assert intake_backlog(lanes) == 0.0  # not listening: nothing known, nothing waits
        busy.listen(reactor, "127.0.0.1", 1 << 20)
        quiet.listen(reactor, "127.0.0.1", 1 << 20)
        assert intake_backlog(lanes) == 0.0
        flood(busy.port.getHost().port, 100)  # nobody reads: it waits in the kernel
        queued, limit = netstats.receive_backlog(reactor.ports[0].socket) or (0, 1)
        assert queued >= 100 * 1400
        assert busy.backlog() == pytest.approx(queued / limit) and quiet.backlog() == 0.0
        assert intake_backlog(lanes) == busy.backlog()
    finally:
        busy.stop()
        quiet.stop()
    assert busy.backlog() == 0.0  # stopped: no socket to ask


@linux
def test_kernel_drops_are_read_per_socket_and_counted_once(captured):
    reactor = SocketReactor()
    intake = DatagramIntake("dev", None, Sink(lambda data: None))
    intake.listen(reactor, "127.0.0.1", 4096)
    sock = reactor.ports[0].socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # tiny: drops for sure
    watch = IntakeWatch(task.Clock(), [Lane("dev", intake), Lane("down", None)], Router())
    try:
        assert watch.poll()["kernel_drops"] == 0
        flood(intake.port.getHost().port, 200)
        kernel = netstats.socket_drops(sock)
        assert kernel is not None and kernel > 0
        report = watch.poll()
        assert report["kernel_drops"] == kernel == intake.counters.kernel_drops
        assert report["backends"]["dev"]["kernel_drops"] == kernel
        assert "down" not in report["backends"]
        assert watch.poll()["kernel_drops"] == kernel  # not counted twice
        warnings = [e for e in captured if e.get("log_level") == LogLevel.warn
                    and "kernel dropped" in e.get("log_format", "")]
        assert len(warnings) == 1 and warnings[0]["new"] == kernel
    finally:
        intake.stop()


def test_the_watch_polls_every_second_on_the_clock_and_reports_gaps(captured):
    clock = task.Clock()
    router = Router()
    intake = DatagramIntake("dev", None, Sink(lambda data: None))
    drops = iter([0, 5, 5])
    intake.kernel_drops = lambda: next(drops)  # type: ignore[method-assign]
    watch = IntakeWatch(clock, [Lane("dev", intake)], router)
    watch.start()
    clock.advance(1)
    router.gaps_by_carrier["/c0"] = 4
    clock.advance(1)
    assert intake.counters.kernel_drops == 5 and watch.drops == 5
    warning = [e for e in captured if "kernel dropped" in e.get("log_format", "")][-1]
    assert warning["gaps"] == {"/c0": 4}
    clock.advance(1)
    assert watch.drops == 5
    watch.stop()
    assert clock.getDelayedCalls() == []


def test_a_failing_poll_is_logged_and_the_loop_survives(captured):
    clock = task.Clock()
    intake = DatagramIntake("dev", None, Sink(lambda data: None))
    calls = []

    def broken() -> int:
        calls.append(1)
        raise OSError("no /proc")

    intake.kernel_drops = broken  # type: ignore[method-assign]
    watch = IntakeWatch(clock, [Lane("dev", intake)], Router())
    watch.start()
    clock.advance(1)
    clock.advance(1)
    assert len(calls) == 2
    assert any(e.get("log_failure") is not None for e in captured)
    watch.stop()


def test_unknown_senders_are_dropped_and_counted():
    got = []
    intake = DatagramIntake("dev", None, Sink(got.append))
    intake.peer_host = "127.0.0.1"
    intake.datagramReceived(b"a", ("127.0.0.1", 1))
    intake.datagramReceived(b"b", ("10.0.0.9", 1))
    assert got == [b"a"]
    assert (intake.counters.datagrams, intake.counters.foreign) == (1, 1)


def test_the_devices_source_port_is_latched_by_its_first_accepted_datagram(captured):
    got = []

    def deliver(data):  # the router: True for traffic of a registered run
        got.append(data)
        return data.startswith(b"run")

    intake = DatagramIntake("dev", None, Sink(deliver))
    intake.peer_host = "127.0.0.1"
    intake.datagramReceived(b"junk", ("127.0.0.1", 7))  # routed (and dropped) but no latch
    assert intake.latched is None
    intake.datagramReceived(b"run 1", ("127.0.0.1", 8))
    assert intake.latched == ("127.0.0.1", 8)
    intake.datagramReceived(b"run forged", ("127.0.0.1", 7))  # the backend's host, other port
    intake.datagramReceived(b"run forged", ("10.0.0.9", 8))  # another host
    intake.datagramReceived(b"anything", ("127.0.0.1", 8))
    assert got == [b"junk", b"run 1", b"anything"]
    assert (intake.counters.datagrams, intake.counters.foreign) == (3, 2)
    warnings = [e for e in captured if "dropped datagram" in e.get("log_format", "")]
    assert "not the device's port 8" in warnings[0]["why"]
    assert "not the backend's" in warnings[1]["why"]
    # a new run (or negotiation) releases the latch: a device with a new socket is accepted
    intake.unlatch()
    intake.datagramReceived(b"run 2", ("127.0.0.1", 9))
    intake.datagramReceived(b"run 1", ("127.0.0.1", 8))
    assert intake.latched == ("127.0.0.1", 9) and intake.counters.foreign == 3
    intake.peer_host = "127.0.0.1"
    assert intake.latched is None


def test_the_watch_unlatches_every_intake():
    intakes = [DatagramIntake(f"dev{i}", None, Sink(lambda data: True)) for i in range(2)]
    for intake in intakes:
        intake.peer_host = "127.0.0.1"
        intake.datagramReceived(b"run", ("127.0.0.1", 5))
        assert intake.latched == ("127.0.0.1", 5)
    watch = IntakeWatch(task.Clock(), [Lane("a", intakes[0]), Lane("b", intakes[1]),
                                       Lane("down", None)], Router())
    watch.unlatch()
    assert [i.latched for i in intakes] == [None, None]


def test_a_flood_of_foreign_datagrams_is_counted_exactly_but_logged_sparingly(captured):
    intake = DatagramIntake("dev", None, Sink(lambda data: True))
    intake.peer_host = "127.0.0.1"
    for n in range(5000):
        intake.datagramReceived(b"x", ("127.0.0.1", 1000 + n % 2))
    assert intake.counters.foreign == 2500  # every one from port 1001: 1000 latched first
    warnings = [e for e in captured if "dropped datagram" in e.get("log_format", "")]
    assert [e["count"] for e in warnings] == [1, 2, 3, 1000, 2000]

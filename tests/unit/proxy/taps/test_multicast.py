"""MulticastTap against a fake multicast reactor: what it sends, counts and never raises."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
from twisted.internet import task

from pybrid.monitor.options import monitor_config
from pybrid.proxy.taps.multicast import MulticastTap, TapSetupError, make_tap
from pybrid.wire.monitor_header import FLAG_TCP_LANE, HEADER_SIZE, MAX_ENVELOPE, decode_header


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.options: dict[tuple[int, int], Any] = {}
        self.fail: dict[tuple[str, int], OSError] = {}
        self.fail_option: OSError | None = None

    def setsockopt(self, level: int, name: int, value: Any) -> None:
        if self.fail_option is not None and name == socket.IP_MULTICAST_IF:
            raise self.fail_option
        self.options[(level, name)] = value

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if addr in self.fail:
            raise self.fail[addr]
        self.sent.append((data, addr))
        return len(data)


class FakePort:
    def __init__(self, interface: str) -> None:
        self.socket = FakeSocket()
        self.interface = interface
        self.ttl: int | None = None
        self.loopback: int | None = None
        self.stopped = False

    def setTTL(self, ttl: int) -> None:
        self.ttl = ttl

    def setLoopbackMode(self, mode: int) -> None:
        self.loopback = mode

    def stopListening(self) -> None:
        self.stopped = True


class FakeReactor(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakePort] = []

    def listenMulticast(self, port: int, proto: Any, interface: str = "", **kw: Any) -> FakePort:
        assert port == 0
        self.ports.append(FakePort(interface))
        return self.ports[-1]


GROUPS = [("239.255.0.1", 5007), ("239.255.0.2", 5008)]


@pytest.fixture
def reactor() -> FakeReactor:
    clock = FakeReactor()
    clock.advance(1_700_000_000.25)
    return clock


def started(reactor: FakeReactor, **kw: Any) -> tuple[MulticastTap, FakeSocket]:
    tap = MulticastTap(reactor, GROUPS, **kw)
    tap.start()
    return tap, reactor.ports[-1].socket


def test_start_configures_ttl_loopback_and_interface(reactor: FakeReactor) -> None:
    tap, sock = started(reactor, ttl=0, interface="127.0.0.1")
    port = reactor.ports[0]
    assert (port.ttl, port.loopback, port.interface) == (0, 1, "127.0.0.1")
    assert sock.options[(socket.IPPROTO_IP, socket.IP_MULTICAST_IF)] == socket.inet_aton(
        "127.0.0.1"
    )
    assert tap.running


def test_any_interface_leaves_the_choice_to_the_kernel(reactor: FakeReactor) -> None:
    _, sock = started(reactor, interface=None)
    assert reactor.ports[0].interface == ""
    assert (socket.IPPROTO_IP, socket.IP_MULTICAST_IF) not in sock.options


def test_emit_sends_header_and_payload_once_per_group(reactor: FakeReactor) -> None:
    tap, sock = started(reactor)
    tap.emit(b"envelope-1", 3)
    tap.emit(b"envelope-2", 4, flags=FLAG_TCP_LANE, timestamp_ns=42)
    assert [addr for _, addr in sock.sent] == GROUPS * 2
    first, second = sock.sent[0][0], sock.sent[2][0]
    assert sock.sent[1][0] == first
    h1, h2 = decode_header(first), decode_header(second)
    assert (h1.lane, h1.sequence, h1.flags) == (3, 0, 0)
    # reactor.seconds() is a float: its resolution near 1.7e9 s is ~0.24 µs
    assert abs(h1.timestamp_ns - 1_700_000_000_250_000_000) < 1_000
    assert (h2.lane, h2.sequence, h2.flags, h2.timestamp_ns) == (4, 1, 1, 42)
    assert first[HEADER_SIZE:] == b"envelope-1"
    assert [(g.sent, g.bytes) for g in tap.counters.groups] == [(2, 2 * HEADER_SIZE + 20)] * 2
    assert tap.counters.emitted == 2 and tap.counters.dropped == 0


@pytest.mark.parametrize(
    ("err", "field"),
    [
        (BlockingIOError(errno.EAGAIN, "busy"), "dropped_busy"),
        (OSError(errno.ENOBUFS, "no buffer space"), "dropped_busy"),
        (OSError(errno.ENETUNREACH, "unreachable"), "dropped_error"),
    ],
)
def test_send_errors_are_counted_per_group_not_raised(
    reactor: FakeReactor, err: OSError, field: str
) -> None:
    tap, sock = started(reactor)
    sock.fail[GROUPS[0]] = err
    for _ in range(3):
        tap.emit(b"x", 0)
    bad, good = tap.counters.groups
    assert getattr(bad, field) == 3 and bad.sent == 0
    assert good.sent == 3 and good.dropped == 0
    del sock.fail[GROUPS[0]]
    tap.emit(b"x", 0)
    assert bad.sent == 1
    assert decode_header(sock.sent[-1][0]).sequence == 3  # drops consumed sequence numbers


def test_oversize_is_dropped_and_consumes_a_sequence_number(reactor: FakeReactor) -> None:
    tap, sock = started(reactor)
    tap.emit(bytes(MAX_ENVELOPE), 0)
    tap.emit(bytes(MAX_ENVELOPE + 1), 0)
    tap.emit(b"y", 0)
    assert tap.counters.oversize == 1
    assert [len(d) for d, _ in sock.sent] == [65_507, 65_507, HEADER_SIZE + 1, HEADER_SIZE + 1]
    assert decode_header(sock.sent[-1][0]).sequence == 2
    assert tap.counters.dropped == 2  # one datagram lost to each of two groups


def test_invalid_carrier_index_is_counted_not_raised(reactor: FakeReactor) -> None:
    tap, sock = started(reactor)
    tap.emit(b"x", 70_000)
    tap.emit(b"x", -1)
    assert tap.counters.invalid == 2 and sock.sent == []


def test_emit_before_start_and_after_stop_is_counted(reactor: FakeReactor) -> None:
    tap = MulticastTap(reactor, GROUPS)
    tap.emit(b"x", 0)
    tap.start()
    tap.emit(b"x", 0)
    d = tap.stop()
    assert reactor.ports[0].stopped
    assert d.called
    tap.emit(b"x", 0)
    assert tap.counters.not_running == 2
    assert [g.sent for g in tap.counters.groups] == [1, 1]
    assert tap.sequence == 3


def test_setup_failure_raises_and_closes_the_socket(reactor: FakeReactor) -> None:
    tap = MulticastTap(reactor, GROUPS, interface="192.0.2.99")

    def listen(port: int, proto: Any, interface: str = "", **kw: Any) -> FakePort:
        fake = FakePort(interface)
        fake.socket.fail_option = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        reactor.ports.append(fake)
        return fake

    reactor.listenMulticast = listen  # type: ignore[method-assign]
    with pytest.raises(TapSetupError, match=r"192\.0\.2\.99"):
        tap.start()
    assert reactor.ports[0].stopped and not tap.running
    tap.emit(b"x", 0)
    assert tap.counters.not_running == 1


def test_bad_arguments_are_rejected_at_construction(reactor: FakeReactor) -> None:
    with pytest.raises(ValueError, match="TTL"):
        MulticastTap(reactor, GROUPS, ttl=256)
    with pytest.raises(ValueError, match="not a multicast address"):
        MulticastTap(reactor, [("10.0.0.1", 5007)])
    with pytest.raises(ValueError, match="port"):
        MulticastTap(reactor, [("239.0.0.1", 0)])
    with pytest.raises(ValueError, match="interface"):
        MulticastTap(reactor, GROUPS, interface="eth0")


def test_make_tap_from_config(reactor: FakeReactor) -> None:
    assert make_tap(reactor, monitor_config([])) is None
    tap = make_tap(reactor, monitor_config(["239.255.0.9:6000"], 0, "any"))
    assert tap is not None
    assert (tap.groups, tap.ttl, tap.interface) == ([("239.255.0.9", 6000)], 0, None)


def test_run_events_reach_a_listener_with_the_clients_id_and_sample_rate(
        reactor: FakeReactor) -> None:
    from pybrid.monitor.listener import MonitorListener
    from pybrid.proto import pb
    from pybrid.proxy.taps.base import RunEnd, RunInfo
    from pybrid.wire.monitor_header import FLAG_RUN_RECORD, RUN_WIDE

    tap, sock = started(reactor)
    runs: list[Any] = []
    listener = MonitorListener(task.Clock(), "239.255.0.1", 5007, on_run=runs.append)
    info = RunInfo("client-id", "proxy-id", ("/00-00-00-00-00-01",), 7,
                   {"sample_rate": 125_000, "channels": 4})
    tap.run_started(info)
    change = pb.Envelope()
    change.message_v1.run_state_change_message.run.id = "client-id"
    change.message_v1.run_state_change_message.new_ = pb.DONE
    raw = change.SerializeToString()
    tap.state_changed(info, 2, "/00-00-00-00-00-01", pb.DONE, "", raw, FLAG_TCP_LANE)
    tap.run_ended(info, RunEnd(pb.DONE, {}, 10, 1))
    first = [data for data, addr in sock.sent if addr == GROUPS[0]]
    assert len(first) == 3
    head = decode_header(first[0])
    assert head.flags == FLAG_RUN_RECORD and head.lane == RUN_WIDE
    assert first[1][HEADER_SIZE:] == raw and decode_header(first[1]).lane == 2
    for data in first:
        listener.datagram(data, ("127.0.0.1", 1))
    assert [r.event for r in runs] == ["run-start", "run-end"]
    assert all(r.run_id == "client-id" for r in runs)
    start = listener.run_info("client-id")
    assert start is not None and start["sample_rate"] == 125_000
    assert start["proxy_run_id"] == "proxy-id" and start["carriers"] == ["/00-00-00-00-00-01"]
    assert runs[1].record["state"] == "DONE" and runs[1].record["lost"] == 1
    assert listener.stats.run_records == 2 and listener.stats.malformed == 0
    assert listener.stats.state_changes == 1

"""The two ways run notifications leave the device: UDP datagrams or TCP frames.

A run never knows which lane it writes to: it calls ``lane.send(payload)`` with one serialized
Envelope and respects ``lane.limit`` (65 507 bytes for a datagram, 262 084 for a frame).
Send failures on UDP (a full socket buffer, an ICMP "port unreachable") are counted in
``DeviceCounters.datagram_errors`` and logged at most once per second, never raised.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol, cast

import attrs
from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime, IReactorUDP, ITransport, IUDPTransport
from twisted.logger import Logger

from pybrid.device.counters import DeviceCounters
from pybrid.wire.framing import MAX_DATAGRAM, MAX_FRAME_LENGTH, encode_varint

log = Logger()


class DataLane(Protocol):
    """Where a run writes its notifications."""

    kind: str
    limit: int

    def send(self, payload: bytes | memoryview) -> None: ...

    def close(self) -> None: ...


@attrs.define
class TcpLane:
    """Notifications as varint-delimited frames on the client's control connection."""

    transport: ITransport
    counters: DeviceCounters
    kind: str = "tcp"
    limit: int = MAX_FRAME_LENGTH

    def send(self, payload: bytes | memoryview) -> None:
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        n = len(payload)
        self.transport.writeSequence((encode_varint(n), payload))
        self.counters.tcp_frames_sent += 1
        self.counters.tcp_bytes_sent += n

    def close(self) -> None:
        """Nothing to close: the connection belongs to the session."""


class DatagramSender(Protocol):
    """A connected datagram socket: ``send(bytes)`` may raise ``OSError``."""

    def send(self, data: bytes | memoryview) -> Any: ...

    def close(self) -> None: ...


@attrs.define
class UdpLane:
    """Notifications as bare Envelopes, one per datagram, to the client's UDP port."""

    sender: DatagramSender
    counters: DeviceCounters
    clock: IReactorTime
    target: str = ""
    kind: str = "udp"
    limit: int = MAX_DATAGRAM
    _send: Callable[[bytes | memoryview], Any] | None = None
    _last_error_log: float = -1e9
    _errors_since_log: int = 0

    def __attrs_post_init__(self) -> None:
        self._send = self.sender.send

    def send(self, payload: bytes | memoryview) -> None:
        try:
            self._send(payload)  # type: ignore[misc,arg-type]
        except OSError as e:
            self._error(e)
            return
        c = self.counters
        c.datagrams_sent += 1
        c.datagram_bytes += len(payload)

    def _error(self, e: OSError) -> None:
        self.counters.datagram_errors += 1
        self._errors_since_log += 1
        now = self.clock.seconds()
        if now - self._last_error_log >= 1.0:
            log.warn(
                "UDP send to {target} failed {count} time(s): {error}",
                target=self.target,
                count=self._errors_since_log,
                error=e,
            )
            self._last_error_log = now
            self._errors_since_log = 0

    def close(self) -> None:
        self.sender.close()


class _SilentDatagramProtocol(protocol.DatagramProtocol):
    """The device never reads from its data sockets; refusals are counted by the lane."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        pass


@attrs.define
class TwistedDatagramSender:
    """A Twisted UDP port connected to one client address; sends with the socket directly
    (one ``send`` system call per datagram, no per-datagram Twisted bookkeeping)."""

    port: Any

    def send(self, data: bytes | memoryview) -> Any:
        return self.port.socket.send(data)

    def close(self) -> None:
        self.port.stopListening()


def open_udp(
    reactor: IReactorUDP, local_host: str, peer_host: str, peer_port: int, send_buffer: int
) -> TwistedDatagramSender:
    """Bind a UDP port on ``local_host`` and connect it to the client's ``(host, port)``."""
    # listenUDP is declared to return an IListeningPort; the port is an IUDPTransport too
    port = cast(IUDPTransport, reactor.listenUDP(0, _SilentDatagramProtocol(),
                                                 interface=local_host, maxPacketSize=8192))
    try:
        port.connect(peer_host, peer_port)
        sock = getattr(port, "socket", None)
        if sock is not None and send_buffer:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            except OSError as e:
                log.warn("could not set SO_SNDBUF on the UDP data socket: {error}", error=e)
    except Exception:
        port.stopListening()
        raise
    return TwistedDatagramSender(port)


__all__ = ["DataLane", "DatagramSender", "TcpLane", "TwistedDatagramSender", "UdpLane", "open_udp"]

"""The client's UDP data lane.

The client binds a UDP port (port 0, on the local address of its TCP connection) and asks the
device to stream there (docs/protocol.md#data-lane).  Each datagram is one bare Envelope holding a
run notification.  Datagrams from any host other than the TCP peer are dropped and counted, as are
unparseable ones and non-run kinds; nothing is dropped silently.

Receive-side facts (docs/protocol.md#twisted-udp): ``maxPacketSize`` must be 65 536 (Twisted's
default 8 192 silently truncates) and a large ``SO_RCVBUF`` is the biggest single fix against
kernel drops.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf.message import DecodeError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.wire.framing import parse_datagram
from pybrid.wire.messages import RUN_KINDS

log = Logger()

#: Receive buffer asked for (the kernel caps it at net.core.rmem_max and doubles it).
RCVBUF_BYTES = 8 * 1024 * 1024
MAX_PACKET = 65536


@attrs.define
class DataLaneCounters:
    """What the UDP data lane received and dropped."""

    datagrams: int = 0
    bytes: int = 0
    foreign_source: int = 0
    unparseable: int = 0
    not_run_data: int = 0


class UdpDataLane(DatagramProtocol):
    """Receives run notifications by UDP from the TCP peer's host and hands them to ``sink``."""

    noisy = False

    def __init__(self, peer_host: str, sink: Callable[[pb.Envelope], None]) -> None:
        self.peer_host = peer_host
        self.sink = sink
        self.counters = DataLaneCounters()
        self.rcvbuf = 0

    def startProtocol(self) -> None:
        sock = getattr(self.transport, "socket", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        except OSError as e:
            log.warn("could not enlarge the UDP receive buffer: {error}", error=e)
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        log.debug("UDP data lane receive buffer: {rcvbuf} bytes", rcvbuf=self.rcvbuf)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        c = self.counters
        if addr[0] != self.peer_host:
            c.foreign_source += 1
            if c.foreign_source == 1:
                log.warn(
                    "dropping UDP datagrams from {source} (only {peer} may send run data)",
                    source=addr[0], peer=self.peer_host,
                )
            return
        try:
            env = parse_datagram(data)
        except DecodeError:
            c.unparseable += 1
            log.warn("dropped an unparseable {length}-byte datagram", length=len(data))
            return
        if env.WhichOneof("kind") != "message_v1" or env.message_v1.WhichOneof("kind") not in (
            RUN_KINDS
        ):
            c.not_run_data += 1
            return
        c.datagrams += 1
        c.bytes += len(data)
        self.sink(env)


def listen_data_lane(
    reactor: Any, interface: str, peer_host: str, sink: Callable[[pb.Envelope], None]
) -> tuple[Any, UdpDataLane]:
    """Bind a UDP data lane on ``interface`` port 0; returns ``(port, lane)``."""
    lane = UdpDataLane(peer_host, sink)
    port = reactor.listenUDP(0, lane, interface=interface, maxPacketSize=MAX_PACKET)
    return port, lane

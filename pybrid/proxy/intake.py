"""The UDP sockets backends stream run data to.

Design note
-----------
Each backend lane gets its own intake socket, so a datagram's backend is known from the socket
it arrived on, even when several backends share one host (and a device's source port is not
known in advance).  The socket is bound to the local address of the lane's TCP connection —
the address the backend sends to (PROTOCOL.md §5) — with ``maxPacketSize=65536`` (Twisted's
default of 8192 silently truncates) and a large ``SO_RCVBUF`` (the biggest single fix against
kernel drops; the kernel may cap the request, so the granted size is read back and logged).

A datagram from any address other than the backend's IP is dropped and counted in
``counters.foreign``; everything else goes to the ``deliver`` callable unparsed — parsing and
routing are the router's job.  Per datagram, the intake does one tuple index, one comparison
and one call.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import protocol
from twisted.logger import Logger

MAX_PACKET = 65536


@attrs.define
class IntakeCounters:
    """What one intake socket received."""

    datagrams: int = 0
    bytes: int = 0
    foreign: int = 0


class DatagramIntake(protocol.DatagramProtocol):
    """One backend's UDP intake socket; see the module note.

    ``deliver(data)`` is called with every datagram from ``peer_host``.
    """

    log = Logger()
    noisy = False

    def __init__(self, name: str, deliver: Callable[[bytes], None]) -> None:
        self.name = name
        self.deliver = deliver
        self.peer_host: str | None = None
        self.counters = IntakeCounters()
        self.port: Any = None
        self.rcvbuf = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if addr[0] != self.peer_host:
            self._foreign(addr, len(data))
            return
        counters = self.counters
        counters.datagrams += 1
        counters.bytes += len(data)
        self.deliver(data)

    def _foreign(self, addr: Any, length: int) -> None:
        self.counters.foreign += 1
        if self.counters.foreign == 1 or self.counters.foreign % 1000 == 0:
            self.log.warn(
                "backend {backend} intake: dropped datagram from unknown address {addr} "
                "({length} bytes; {count} so far)",
                backend=self.name, addr=f"{addr[0]}:{addr[1]}", length=length,
                count=self.counters.foreign,
            )

    # -- socket ------------------------------------------------------------------------------

    def listen(self, reactor: Any, interface: str, rcvbuf: int) -> int:
        """Bind to ``interface`` on a free port; return the port number."""
        self.port = reactor.listenUDP(0, self, interface=interface, maxPacketSize=MAX_PACKET)
        self.rcvbuf = _raise_rcvbuf(self.port, rcvbuf)
        number = int(self.port.getHost().port)
        self.log.info(
            "backend {backend} intake listening on {interface}:{port} (SO_RCVBUF {rcvbuf} bytes)",
            backend=self.name, interface=interface, port=number, rcvbuf=self.rcvbuf,
        )
        return number

    @property
    def interface(self) -> str | None:
        return None if self.port is None else str(self.port.getHost().host)

    def stop(self) -> Any:
        port, self.port = self.port, None
        return None if port is None else port.stopListening()


def _raise_rcvbuf(port: Any, wanted: int) -> int:
    sock = getattr(port, "socket", None)
    if sock is None:  # a fake port in unit tests
        return 0
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    except OSError:
        pass
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

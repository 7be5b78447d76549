"""The one fake reactor of the unit tests: a ``MemoryReactorClock`` that also does UDP.

``advance`` moves time (``task.Clock``); TCP listens and connects are recorded by
``MemoryReactor``; :meth:`FakeReactor.listenUDP` hands out :class:`FakeUDPPort` objects on
ports 40000, 40001 … (or the port asked for), connected to their protocol as the real reactor
does (``makeConnection``, so ``startProtocol`` runs).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock


@attrs.define
class FakeUDPPort:
    protocol: Any
    interface: str
    port: int
    max_packet_size: int = 8192
    listening: bool = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface, self.port)

    def stopListening(self) -> None:
        self.listening = False


class FakeReactor(MemoryReactorClock):
    """MemoryReactorClock plus a recorded ``listenUDP`` (``udp_ports``)."""

    def __init__(self) -> None:
        super().__init__()
        self.udp_ports: list[FakeUDPPort] = []

    def listenUDP(  # type: ignore[override]
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        fake = FakeUDPPort(protocol, interface, port or 40000 + len(self.udp_ports),
                           maxPacketSize)
        self.udp_ports.append(fake)
        protocol.makeConnection(fake)
        return fake


__all__ = ["FakeReactor", "FakeUDPPort"]

"""The proxy's TCP front door: one :class:`ClientProtocol` per client connection."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.front import Front
from pybrid.proxy.session import Session
from pybrid.wire.framing import EnvelopeReceiver


class ClientProtocol(EnvelopeReceiver):
    """Parses a client's frames and hands them to the :class:`~pybrid.proxy.front.Front`."""

    session: Session | None = None
    transport: Any

    def __init__(self, front: Front) -> None:
        self.front = front

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.session = self.front.connection_made(self.transport)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        if self.session is not None:
            self.front.frame_received(self.session, envelope, payload)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.session is not None:
            self.front.connection_lost(self.session)


class ClientFactory(protocol.ServerFactory):
    """Builds :class:`ClientProtocol` instances sharing one front."""

    noisy = False

    def __init__(self, front: Front) -> None:
        self.front = front

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        proto = ClientProtocol(self.front)
        proto.factory = self
        return proto

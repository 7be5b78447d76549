"""The TCP plumbing of a backend lane: frames and connect outcomes → calls on the lane.

:class:`BackendProtocol` parses one control connection and hands every frame to its lane;
:class:`LaneFactory` reports a failed connect.  Both carry the lane's *generation* (one per
connect attempt), so the lane can ignore events of a connection it has already given up.
The state machine itself is :class:`pybrid.proxy.backend.lane.BackendLane`.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet import protocol
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.wire.framing import EnvelopeReceiver
from pybrid.wire.interfaces import IStreamTransport


class LaneCalls(Protocol):
    """What the plumbing calls on its lane."""

    def connection_made(self, proto: BackendProtocol) -> None: ...

    def frame_received(self, proto: BackendProtocol, env: pb.Envelope, payload: bytes) -> None: ...

    def connection_lost(self, proto: BackendProtocol, reason: Failure) -> None: ...

    def connect_failed(self, generation: int, reason: Failure) -> None: ...


class BackendProtocol(EnvelopeReceiver):
    """Frames of one backend control connection → calls on its lane."""

    transport: IStreamTransport

    def __init__(self, lane: LaneCalls, generation: int) -> None:
        self.lane = lane
        self.generation = generation

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.lane.connection_made(self)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        self.lane.frame_received(self, envelope, payload)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lane.connection_lost(self, reason)


class LaneFactory(protocol.ClientFactory):
    """One connect attempt of a lane."""

    noisy = False

    def __init__(self, lane: LaneCalls, generation: int) -> None:
        self.lane = lane
        self.generation = generation

    def buildProtocol(self, addr: Any) -> BackendProtocol:
        return BackendProtocol(self.lane, self.generation)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.lane.connect_failed(self.generation, reason)

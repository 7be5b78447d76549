"""Bytes → calls: the simulated device's TCP protocol.

:class:`DeviceProtocol` only parses frames (via :class:`~pybrid.wire.framing.EnvelopeReceiver`)
and calls named methods of its :class:`~pybrid.device.session.DeviceSession`; it is also the
push producer of its transport, so a slow TCP reader pauses a run that streams over TCP.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from pybrid.device.session import DeviceCalls, DeviceSession
from pybrid.proto import pb
from pybrid.wire.framing import EnvelopeReceiver


@implementer(IPushProducer)
class DeviceProtocol(EnvelopeReceiver):
    """Parses Envelopes from one client and hands them to its session."""

    session: DeviceSession | None = None

    def __init__(self, device: DeviceCalls) -> None:
        self.device = device

    def connectionMade(self) -> None:
        transport: Any = self.transport
        peer = transport.getPeer()
        host = transport.getHost()
        self.session = DeviceSession(
            self.device, self, getattr(peer, "host", "127.0.0.1"), getattr(host, "host", "")
        )
        self.device.session_started(self.session)
        transport.registerProducer(self, True)

    def connectionLost(self, reason: Any = None) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.connection_lost()

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        top = envelope.WhichOneof("kind")
        if top == "generic":
            if envelope.generic.HasField("ping_command"):
                session.generic_ping()
            return
        if top != "message_v1":
            session.request("unknown", None, None)
            return
        msg = envelope.message_v1
        kind = msg.WhichOneof("kind") or "unknown"
        rid = msg.id if msg.HasField("id") and msg.id else None
        session.request(kind, rid, getattr(msg, kind) if kind != "unknown" else None)

    # -- IPushProducer ----------------------------------------------------------------------

    def pauseProducing(self) -> None:
        if self.session is not None:
            self.session.pause()

    def resumeProducing(self) -> None:
        if self.session is not None:
            self.session.resume()

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost does the cleanup."""


class DeviceFactory(protocol.ServerFactory):
    """Builds one :class:`DeviceProtocol` per accepted connection of a device."""

    noisy = False

    def __init__(self, device: DeviceCalls) -> None:
        self.device = device

    def buildProtocol(self, addr: Any) -> DeviceProtocol:
        p = DeviceProtocol(self.device)
        p.factory = self
        return p


__all__ = ["DeviceFactory", "DeviceProtocol"]

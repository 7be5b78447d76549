"""The proxy's TCP front door: one :class:`ClientProtocol` per client connection.

The protocol only parses frames and calls the :class:`~pybrid.proxy.clients.front.Front`.  The
front builds each connection's session and its
:class:`~pybrid.proxy.clients.sender.ClientSender` complete (bounded by ``--client-buffer``, on
the front's clock, closing the session through the scheduler when its queue overflows); the
protocol makes the sender its transport's streaming producer.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.clients.front import Front
from pybrid.proxy.clients.session import Session
from pybrid.proxy.sizes import PARTIAL_FREE
from pybrid.wire.framing import EnvelopeReceiver
from pybrid.wire.interfaces import IStreamTransport


class ClientProtocol(EnvelopeReceiver):
    """Parses a client's frames and hands them to the :class:`~pybrid.proxy.clients.front.Front`."""

    session: Session | None = None
    transport: IStreamTransport
    log = Logger()

    def __init__(self, front: Front) -> None:
        self.front = front

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):  # not the tests' StringTransport
            self.transport.setTcpNoDelay(True)
        session = self.session = self.front.connection_made(self.transport, frames=self)
        session.sender.attach()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        session, held = self.session, self.bufferedBytes
        if session is not None and (held > PARTIAL_FREE or session in self.front.budget):
            self.front.partial(session, held)  # the waiting budget (the front's note)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        if self.session is not None:
            self.front.frame_received(self.session, envelope, payload)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        session = self.session
        if session is not None:
            self.front.connection_lost(session)
            c = session.sender.counters
            if c.frames > 1000 or c.peak or c.dropped or c.discarded_frames:
                self.log.info(
                    "session {session}: {frames} frames ({bytes} bytes) for the client; its "
                    "queue peaked at {peak} bytes (limit {limit}), {pauses} pauses; "
                    "{discarded} frames discarded, {dropped} refused after the close",
                    session=session.id, frames=c.frames, bytes=c.bytes, peak=c.peak,
                    limit=session.sender.limit, pauses=c.pauses, discarded=c.discarded_frames,
                    dropped=c.dropped,
                )


class ClientFactory(protocol.ServerFactory):
    """Builds :class:`ClientProtocol` instances sharing one front."""

    noisy = False

    def __init__(self, front: Front) -> None:
        self.front = front

    def buildProtocol(self, addr: IAddress | None) -> ClientProtocol:
        proto = ClientProtocol(self.front)
        proto.factory = self
        return proto

"""The proxy's TCP front door: one :class:`ClientProtocol` per client connection.

Each connection's :class:`~pybrid.proxy.sender.ClientSender` is set up here: it becomes the
transport's streaming producer, bounded by ``client_buffer`` bytes (``--client-buffer``), with
the front's clock for its close grace timer.  When its queue overflows, the session is closed
through the scheduler with an ``error_message`` naming the run(s), the bytes buffered and the
limit; the scheduler's end hook (the dispatcher) sends ``stop_run`` to the backends for the
unfinished run, and the next queued session is promoted at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.flow import DEFAULT_CLIENT_BUFFER, Overflow
from pybrid.proxy.front import Front
from pybrid.proxy.session import Session
from pybrid.wire.framing import EnvelopeReceiver


class ClientProtocol(EnvelopeReceiver):
    """Parses a client's frames and hands them to the :class:`~pybrid.proxy.front.Front`."""

    session: Session | None = None
    transport: Any
    log = Logger()

    def __init__(self, front: Front, client_buffer: int = DEFAULT_CLIENT_BUFFER) -> None:
        self.front = front
        self.client_buffer = client_buffer

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        session = self.session = self.front.connection_made(self.transport)
        sender = session.sender
        sender.limit = self.client_buffer
        sender.clock = self.front.clock
        sender.on_overflow = self._overflow
        sender.attach()

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

    def _overflow(self, overflow: Overflow) -> None:
        session = self.session
        if session is None or session.closed:
            return
        text = overflow.describe(tuple(sorted(session.runs)))
        self.log.warn("session {session} from {peer}: {error}", session=session.id,
                      peer=session.peer, error=text)
        self.front.scheduler.close(session, text, "client buffer overflow")


class ClientFactory(protocol.ServerFactory):
    """Builds :class:`ClientProtocol` instances sharing one front."""

    noisy = False

    def __init__(self, front: Front, client_buffer: int = DEFAULT_CLIENT_BUFFER) -> None:
        self.front = front
        self.client_buffer = client_buffer

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        proto = ClientProtocol(self.front, self.client_buffer)
        proto.factory = self
        return proto

"""Per-client output: the single place every byte the proxy sends to a client goes through.

Design note
-----------
Replies, notifications and forwarded run data all reach a client through its
:class:`ClientSender`.  Data forwarded from a backend is written as the backend's original
Envelope bytes behind a varint length prefix (no re-serialization).  Prefix and payload are
handed to the transport separately, so a large payload is not copied to prepend two bytes.

A sender never raises into the data path: writes after :meth:`close` are counted in
``dropped`` and otherwise ignored.  :meth:`close` uses ``loseConnection``, which flushes what
was written before closing, so a last message (an error, a pong) is never lost.

(Bounded per-client queues with producer back-pressure belong here too; see issue 5.)
"""

from __future__ import annotations

from typing import Any

import attrs

from pybrid.proto import pb
from pybrid.wire.framing import encode_varint


@attrs.define
class SenderCounters:
    """What one sender wrote or refused."""

    frames: int = 0
    bytes: int = 0
    dropped: int = 0


@attrs.define(eq=False)
class ClientSender:
    """Frames and writes Envelopes to one client's TCP transport; see the module note."""

    transport: Any
    counters: SenderCounters = attrs.field(factory=SenderCounters)
    closed: bool = False

    def send_payload(self, payload: bytes) -> None:
        """Write one serialized Envelope as a frame."""
        if self.closed:
            self.counters.dropped += 1
            return
        n = len(payload)
        self.counters.frames += 1
        self.counters.bytes += n
        if n < 0x80:
            self.transport.write(bytes((n,)) + payload)
        else:
            self.transport.writeSequence((encode_varint(n), payload))

    def send_envelope(self, envelope: pb.Envelope) -> None:
        self.send_payload(envelope.SerializeToString())

    def close(self) -> None:
        """Close after everything written so far is flushed."""
        if not self.closed:
            self.closed = True
            self.transport.loseConnection()

    def connection_gone(self) -> None:
        """The transport is gone: later writes are dropped and counted."""
        self.closed = True

"""Varint-delimited Envelope framing.

Design note
-----------
Every TCP frame in the protocol is a protobuf base-128 varint length followed by that many
bytes of one serialized ``Envelope`` (docs/protocol.md#framing); UDP datagrams carry one bare
Envelope.  :class:`EnvelopeReceiver` is the one receiver every TCP lane uses (client, proxy,
device):

* frames may be split across segments and many frames may share a segment; a segment is
  walked with an offset and every frame is one ``bytes`` slice of it; only the unfinished
  frame at its end is kept (a ``bytearray``), joined with the next segment once, so a segment
  holding thousands of frames costs linear time;
* a declared length above ``maxFrameLength`` (262 084 bytes, the reference's limit) or a
  varint longer than 10 bytes is a protocol violation: logged with the peer and the length,
  then the connection is closed (``frameTooLong``);
* an empty frame or one that protobuf cannot parse is counted in ``counters`` and skipped
  (logged for the first three and every 1000th per connection); the connection survives;
* each frame is parsed exactly once; ``envelopeReceived(envelope, payload)`` receives both the
  parsed message and its raw bytes, so a forwarder can relay the original bytes unchanged;
* :meth:`~EnvelopeReceiver.pauseFrames` stops the walk after the current frame: the rest of
  the segment, and anything that arrives meanwhile, stays raw bytes (not parsed, not
  allocated as messages) until :meth:`~EnvelopeReceiver.resumeFrames`.  The proxy pauses a
  client's frames together with its transport (``pybrid.proxy.clients.gate``), so a flooding
  client costs one segment of bytes, not thousands of parsed frames.
"""

from __future__ import annotations

import attrs
from google.protobuf.message import DecodeError
from twisted.internet import protocol
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.wire.noise import worth_logging

#: The TCP port devices and the proxy listen on (the reference's default).
DEFAULT_PORT = 5732

#: Largest Envelope payload accepted on TCP (the reference proxy closes on 262 085).
MAX_FRAME_LENGTH = 262_084
#: Largest Envelope that fits one UDP datagram.
MAX_DATAGRAM = 65_507

_MAX_VARINT_BYTES = 10


class FrameTooLong(Exception):
    """A frame's declared length exceeds the configured maximum."""


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint."""
    if value < 0:
        raise ValueError("varints here are unsigned")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """Decode a varint at ``pos``; return ``(value, next_pos)`` or ``None`` if incomplete.

    Raises :class:`ValueError` for a varint longer than 10 bytes.
    """
    result = 0
    shift = 0
    end = len(buf)
    i = pos
    while i < end:
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return result, i
        shift += 7
        if i - pos >= _MAX_VARINT_BYTES:
            raise ValueError("varint longer than 10 bytes")
    return None


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` (a serialized Envelope) with its varint length."""
    n = len(payload)
    if n < 0x80:
        return bytes((n,)) + payload
    return encode_varint(n) + payload


def parse_datagram(data: bytes) -> pb.Envelope:
    """Parse one UDP datagram (a bare Envelope). Raises ``DecodeError`` on garbage."""
    if not data:
        raise DecodeError("empty datagram")
    env = pb.Envelope()
    env.ParseFromString(data)
    return env


@attrs.define
class FrameCounters:
    """Counts of what one receiver has seen; read by status and tests."""

    frames: int = 0
    bytes: int = 0
    empty: int = 0
    unparseable: int = 0
    oversized: int = 0


class EnvelopeReceiver(protocol.Protocol):
    """Splits a TCP byte stream into Envelopes; see the module's design note.

    Subclasses implement :meth:`envelopeReceived` and may override :meth:`badFrame` and
    :meth:`frameTooLong`.  :meth:`sendEnvelope` and :meth:`sendPayload` write frames.
    """

    log = Logger()
    maxFrameLength: int = MAX_FRAME_LENGTH
    _buffer: bytearray
    counters: FrameCounters
    _closingForViolation: bool = False
    _framesPaused: bool = False
    _walking: bool = False
    _arrived: bool = False

    def makeConnection(self, transport):  # type: ignore[no-untyped-def]
        self._buffer = bytearray()
        self.counters = FrameCounters()
        super().makeConnection(transport)

    # -- receiving -------------------------------------------------------------------------

    def pauseFrames(self) -> None:
        """Deliver no further frame until :meth:`resumeFrames`; bytes wait unparsed."""
        self._framesPaused = True

    def resumeFrames(self) -> None:
        """Deliver the frames that waited (until paused again), then new ones as they come."""
        if not self._framesPaused:
            return
        self._framesPaused = False
        if self._buffer and not self._walking and not self._closingForViolation:
            self.dataReceived(b"")

    @property
    def bufferedBytes(self) -> int:
        """Bytes received and not yet delivered as frames (a partial frame, or paused ones)."""
        return len(self._buffer)

    def dataReceived(self, data: bytes) -> None:
        if self._closingForViolation:
            return
        buf = self._buffer
        if self._framesPaused or self._walking:
            buf += data  # the walk in progress (or the resume) reaches these bytes
            self._arrived = self._arrived or self._walking
            return
        self._arrived = False
        self._walking = True
        if buf:  # a frame begun in an earlier segment: join once, then slice bytes
            buf += data
            data = bytes(buf)
            buf.clear()
        pos = 0
        end = len(data)
        maxlen = self.maxFrameLength
        try:
            while pos < end:
                first = data[pos]
                if first < 0x80:  # one-byte length: small frames
                    length, start = first, pos + 1
                elif pos + 1 < end and data[pos + 1] < 0x80:  # two bytes: up to 16 KiB
                    length, start = (first & 0x7F) | data[pos + 1] << 7, pos + 2
                else:
                    try:
                        decoded = decode_varint(data, pos)
                    except ValueError:
                        self._violation("length prefix is not a valid varint", None)
                        return
                    if decoded is None:
                        break
                    length, start = decoded
                if length > maxlen:
                    self._violation("frame length exceeds the maximum", length)
                    return
                stop = start + length
                if stop > end:
                    break
                pos = stop
                self.frameReceived(data[start:stop])
                if self._closingForViolation or self.transport is None:
                    return
                if self._framesPaused:
                    break
        finally:
            self._walking = False
            if not self._closingForViolation:
                rest = memoryview(data)[pos:]
                if buf:  # arrived during the walk: after what the walk left
                    buf[:0] = rest
                elif pos < end:
                    buf += rest
        if self._arrived and not self._framesPaused and not self._closingForViolation \
                and self.transport is not None:
            self.dataReceived(b"")  # bytes that arrived during the walk

    def frameReceived(self, payload: bytes) -> None:
        """One complete frame: counted, parsed once, handed to :meth:`envelopeReceived` (or
        :meth:`badFrame`).  A subclass may read some frames itself first (the client's data
        fast path) and call this for the rest."""
        counters = self.counters
        counters.frames += 1
        counters.bytes += len(payload)
        if not payload:
            counters.empty += 1
            self.badFrame(payload, "empty frame")
            return
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError as e:
            counters.unparseable += 1
            self.badFrame(payload, f"unparseable Envelope: {e}")
            return
        self.envelopeReceived(env, payload)

    def _violation(self, what: str, length: int | None) -> None:
        self.counters.oversized += 1
        self._closingForViolation = True
        self._buffer = bytearray()
        self.frameTooLong(what, length)

    # -- hooks -----------------------------------------------------------------------------

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        """Called once per well-formed frame with the parsed Envelope and its raw bytes."""
        raise NotImplementedError

    def badFrame(self, payload: bytes, reason: str) -> None:
        """An empty or unparseable frame: counted, skipped; the connection survives.

        Logged for the first few and then every 1000th on a connection, so that a peer sending
        garbage cannot flood the log (a 262 KB segment can hold thousands of tiny frames).
        """
        bad = self.counters.empty + self.counters.unparseable
        if worth_logging(bad):
            self.log.warn(
                "dropped bad frame from {peer}: {reason} ({length} bytes; {bad} bad frames "
                "on this connection so far)",
                peer=_peer(self.transport),
                reason=reason,
                length=len(payload),
                bad=bad,
            )

    def frameTooLong(self, what: str, length: int | None) -> None:
        """A framing violation: log it and close the connection."""
        self.log.error(
            "closing connection to {peer}: {what} (declared {length} bytes, maximum {maximum})",
            peer=_peer(self.transport),
            what=what,
            length=length,
            maximum=self.maxFrameLength,
        )
        if self.transport is not None:
            self.transport.loseConnection()

    # -- sending ---------------------------------------------------------------------------

    def sendEnvelope(self, envelope: pb.Envelope) -> None:
        self.sendPayload(envelope.SerializeToString())

    def sendPayload(self, payload: bytes) -> None:
        """Send an already serialized Envelope (dropped if the connection is already gone)."""
        if self.transport is not None:
            self.transport.write(frame(payload))


def _peer(transport) -> str:  # type: ignore[no-untyped-def]
    if transport is None:
        return "?"
    try:
        p = transport.getPeer()
        return f"{p.host}:{p.port}"
    except Exception:
        return str(transport)

"""The monitor datagram format: a fixed 24-byte header, then the Envelope a backend sent.

Design note
-----------
A tap sits on the proxy's hot path, so a monitor datagram is built from bytes already in hand:
one ``struct.pack`` of a fixed header followed by the backend's serialized ``Envelope``,
unchanged (no protobuf work in the proxy).  All header fields are big-endian (network order)::

    offset size field
    0      4    magic          b"PBM1"
    4      1    version        1
    5      1    flags          bit 0 = FLAG_TCP_LANE; bit 1 = FLAG_RUN_RECORD; other bits
                               reserved (senders send 0, listeners ignore them)
    6      2    lane index     u16, the proxy's index of the lane (backend): ``lane``
    8      8    tap sequence   u64, +1 per datagram the tap was asked to emit (dropped ones too)
    16     8    timestamp      u64 nanoseconds on the proxy's clock when the tap emitted it
    24     n    Envelope       the serialized Envelope as the client got it (the client's
                               run id); with FLAG_RUN_RECORD a UTF-8 JSON run record instead

A run record (lane index :data:`RUN_WIDE`) names a run when it starts and ends:
``{"event": "run-start", "run_id": <the client's id>, "proxy_run_id": …, "carriers": […],
"run": n, "sample_rate": Hz, "channels": n}`` (the last two where the client said) and
``{"event": "run-end", "run_id": …, "state": "DONE"|"ERROR"|"", "chunks": n, "lost": n}``.
Listeners that predate the flag count it as an unparseable Envelope and go on.

The whole datagram must fit one UDP datagram (65 507 bytes), so the largest Envelope a tap can
carry is :data:`MAX_ENVELOPE` = 65 483 bytes.  See ``docs/monitors.md``.
"""

from __future__ import annotations

import struct

import attrs

#: First four bytes of every monitor datagram.
MAGIC = b"PBM1"
#: Header version this module writes and reads.
VERSION = 1
#: ``struct`` layout of the header: magic, version, flags, lane index, sequence, timestamp.
HEADER = struct.Struct("!4sBBHQQ")
#: Size of the fixed header in bytes (24).
HEADER_SIZE = HEADER.size
#: Largest UDP payload over IPv4.
MAX_DATAGRAM = 65_507
#: Largest Envelope that fits one monitor datagram.
MAX_ENVELOPE = MAX_DATAGRAM - HEADER_SIZE

#: Flag bit: the backend delivered this Envelope on its TCP control lane (UDP fallback).
FLAG_TCP_LANE = 0x01
#: Flag bit: the body is a JSON run record, not an Envelope (see the module note).
FLAG_RUN_RECORD = 0x02
#: Carrier index of run records (the whole run).
RUN_WIDE = 0xFFFF

_U16 = 0xFFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


class MalformedDatagram(ValueError):
    """A datagram that is not a well-formed monitor datagram; ``reason`` is a short code.

    Reasons: ``short`` (fewer bytes than a header), ``magic``, ``version``, ``empty`` (no
    Envelope after the header), ``envelope`` (protobuf cannot parse it), ``samples`` (run data
    whose ``DaqData`` does not describe its bytes).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FromLane:
    """What came from one lane of the proxy (its index: ``lane``, the header's u16)."""

    lane: int

    @property
    def carrier_index(self) -> int:
        """The old name of :attr:`lane` (it always held the lane index)."""
        return self.lane


@attrs.frozen
class MonitorHeader(FromLane):
    """The decoded fixed header of one monitor datagram."""

    lane: int
    sequence: int
    timestamp_ns: int
    flags: int = 0
    version: int = VERSION

    @property
    def tcp_lane(self) -> bool:
        return bool(self.flags & FLAG_TCP_LANE)


def encode_header(lane: int, sequence: int, timestamp_ns: int, flags: int = 0) -> bytes:
    """The 24 header bytes; raises :class:`ValueError` for a field out of range."""
    if not 0 <= lane <= _U16:
        raise ValueError(f"lane index {lane} is outside 0..65535")
    if not 0 <= sequence <= _U64 or not 0 <= timestamp_ns <= _U64:
        raise ValueError("sequence and timestamp must fit an unsigned 64-bit integer")
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"flags {flags} do not fit one byte")
    return HEADER.pack(MAGIC, VERSION, flags, lane, sequence, timestamp_ns)


def encode_datagram(
    envelope: bytes, lane: int, sequence: int, timestamp_ns: int, flags: int = 0
) -> bytes:
    """Header plus Envelope bytes; raises :class:`ValueError` if it would not fit a datagram."""
    if len(envelope) > MAX_ENVELOPE:
        raise ValueError(f"an Envelope of {len(envelope)} bytes exceeds {MAX_ENVELOPE}")
    return encode_header(lane, sequence, timestamp_ns, flags) + envelope


def decode_header(data: bytes) -> MonitorHeader:
    """Decode the header at the start of ``data``; raises :class:`MalformedDatagram`."""
    if len(data) < HEADER_SIZE:
        raise MalformedDatagram("short", f"{len(data)} bytes, a header needs {HEADER_SIZE}")
    magic, version, flags, carrier, sequence, timestamp = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedDatagram("magic", f"starts with {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise MalformedDatagram("version", f"header version {version}, this reads {VERSION}")
    return MonitorHeader(carrier, sequence, timestamp, flags, version)


def split_datagram(data: bytes) -> tuple[MonitorHeader, bytes]:
    """``(header, envelope_bytes)``; raises :class:`MalformedDatagram`."""
    header = decode_header(data)
    payload = data[HEADER_SIZE:]
    if not payload:
        raise MalformedDatagram("empty", "no Envelope after the header")
    return header, payload

"""The wire layer: varint-delimited Envelope framing (TCP), bare-Envelope datagrams (UDP),
message construction helpers and request/response correlation."""

from pybrid.wire.correlate import RequestTimeout, RequestTracker
from pybrid.wire.framing import (
    MAX_FRAME_LENGTH,
    EnvelopeReceiver,
    FrameCounters,
    decode_varint,
    encode_varint,
    frame,
    parse_datagram,
)

__all__ = [
    "MAX_FRAME_LENGTH",
    "EnvelopeReceiver",
    "FrameCounters",
    "RequestTimeout",
    "RequestTracker",
    "decode_varint",
    "encode_varint",
    "frame",
    "parse_datagram",
]

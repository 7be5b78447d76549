"""Reading what a protocol wrote: varint-delimited frames back into payloads or Envelopes."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from pybrid.proto import pb
from pybrid.wire.framing import decode_varint


def split_payloads(data: bytes) -> list[bytes]:
    """The payloads of a byte stream of whole frames (it must end on a frame boundary)."""
    out = []
    pos = 0
    while pos < len(data):
        decoded = decode_varint(data, pos)
        assert decoded is not None, "truncated length prefix"
        length, start = decoded
        assert start + length <= len(data), "truncated frame"
        out.append(bytes(data[start : start + length]))
        pos = start + length
    return out


def split_frames(data: bytes) -> list[pb.Envelope]:
    """The Envelopes of a byte stream of whole frames."""
    return [pb.Envelope.FromString(payload) for payload in split_payloads(data)]


def read_frames(transport: StringTransport) -> list[pb.Envelope]:
    """Parse and clear everything written to ``transport``."""
    data = transport.value()
    transport.clear()
    return split_frames(data)


__all__ = ["read_frames", "split_frames", "split_payloads"]

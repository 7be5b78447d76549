"""The monitor datagram header: layout, round trip, and rejection of bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybrid.wire import monitor_header as h


def test_layout_is_24_big_endian_bytes() -> None:
    raw = h.encode_header(lane=0x0102, sequence=0x0A0B0C0D0E0F1011, timestamp_ns=7,
                          flags=h.FLAG_TCP_LANE)
    assert h.HEADER_SIZE == 24
    assert raw == (
        b"PBM1"
        + bytes([1, 0x01])
        + bytes([0x01, 0x02])
        + bytes.fromhex("0A0B0C0D0E0F1011")
        + (7).to_bytes(8, "big")
    )


@given(
    carrier=st.integers(0, 0xFFFF),
    sequence=st.integers(0, 2**64 - 1),
    timestamp=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 255),
    payload=st.binary(max_size=64),
)
def test_round_trip(
    carrier: int, sequence: int, timestamp: int, flags: int, payload: bytes
) -> None:
    data = h.encode_datagram(payload, carrier, sequence, timestamp, flags)
    decoded = h.decode_header(data)
    assert decoded == h.MonitorHeader(carrier, sequence, timestamp, flags, h.VERSION)
    assert data[h.HEADER_SIZE :] == payload
    assert decoded.tcp_lane == bool(flags & 1)


def test_split_returns_the_envelope_bytes() -> None:
    data = h.encode_datagram(b"\x01\x02\x03", 3, 9, 10)
    header, payload = h.split_datagram(data)
    assert (header.lane, header.sequence, header.timestamp_ns) == (3, 9, 10)
    assert payload == b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"PBM1\x01", "short"),
        (b"XXXX" + bytes(20), "magic"),
        (b"PBM1\x02" + bytes(19) + b"\x00", "version"),
    ],
)
def test_bad_headers_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(h.MalformedDatagram) as info:
        h.decode_header(data)
    assert info.value.reason == reason


def test_header_without_envelope_is_empty() -> None:
    with pytest.raises(h.MalformedDatagram) as info:
        h.split_datagram(h.encode_header(0, 0, 0))
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lane": 65536, "sequence": 0, "timestamp_ns": 0},
        {"lane": -1, "sequence": 0, "timestamp_ns": 0},
        {"lane": 0, "sequence": 2**64, "timestamp_ns": 0},
        {"lane": 0, "sequence": 0, "timestamp_ns": -1},
        {"lane": 0, "sequence": 0, "timestamp_ns": 0, "flags": 256},
    ],
)
def test_out_of_range_fields_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        h.encode_header(**kwargs)


def test_largest_envelope_fills_exactly_one_udp_datagram() -> None:
    assert len(h.encode_datagram(bytes(h.MAX_ENVELOPE), 0, 0, 0)) == 65_507
    with pytest.raises(ValueError, match="exceeds"):
        h.encode_datagram(bytes(h.MAX_ENVELOPE + 1), 0, 0, 0)


def test_the_u16_is_the_lane_and_its_old_name_still_reads_it() -> None:
    head = h.decode_header(h.encode_header(7, 1, 2))
    assert head.lane == head.carrier_index == 7
    with pytest.raises(ValueError, match="lane index 65536"):
        h.encode_header(65536, 0, 0)

"""The varint-delimited Envelope receiver: split, coalesced, oversized, empty and garbage frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from pybrid.proto import pb
from pybrid.wire import MAX_FRAME_LENGTH, EnvelopeReceiver, decode_varint, encode_varint, frame
from pybrid.wire import messages as m

PING_FRAME = bytes.fromhex("06 a2 06 03 a2 06 00")
PONG_FRAME = bytes.fromhex("06 a2 06 03 aa 06 00")


class Recorder(EnvelopeReceiver):
    def __init__(self) -> None:
        self.received: list[tuple[pb.Envelope, bytes]] = []
        self.bad: list[str] = []
        self.violations: list[tuple[str, int | None]] = []

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        self.received.append((envelope, payload))

    def badFrame(self, payload: bytes, reason: str) -> None:
        self.bad.append(reason)
        super().badFrame(payload, reason)

    def frameTooLong(self, what: str, length: int | None) -> None:
        self.violations.append((what, length))
        super().frameTooLong(what, length)


def connected() -> tuple[Recorder, StringTransport]:
    proto = Recorder()
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_reference_ping_frames_byte_for_byte() -> None:
    assert frame(m.generic_ping().SerializeToString()) == PING_FRAME
    assert frame(m.generic_pong().SerializeToString()) == PONG_FRAME
    proto, _ = connected()
    proto.dataReceived(PING_FRAME)
    [(env, payload)] = proto.received
    assert m.kind_of(env) == "generic.ping_command"
    assert payload == PING_FRAME[1:]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 262_084, 2**63])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))
    assert decode_varint(encoded[:-1]) is None


def test_varint_too_long_is_rejected() -> None:
    with pytest.raises(ValueError):
        decode_varint(b"\xff" * 11)


def _frames(n: int) -> tuple[list[bytes], bytes]:
    payloads = []
    for i in range(n):
        env = m.v1("run_data_message", id=f"id-{i}")
        env.message_v1.run_data_message.data.data = bytes(range(256)) * (i % 5)
        payloads.append(env.SerializeToString())
    return payloads, b"".join(frame(p) for p in payloads)


def test_many_frames_in_one_segment() -> None:
    payloads, stream = _frames(500)
    proto, transport = connected()
    proto.dataReceived(stream)
    assert [p for _, p in proto.received] == payloads
    assert proto.counters.frames == 500
    assert transport.connected
    assert len(proto._buffer) == 0


@given(st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40))
def test_frames_split_across_arbitrary_segments(cuts: list[int]) -> None:
    payloads, stream = _frames(12)
    proto, _ = connected()
    pos = 0
    for cut in cuts:
        proto.dataReceived(stream[pos : pos + cut])
        pos += cut
    proto.dataReceived(stream[pos:])
    assert [p for _, p in proto.received] == payloads


def test_byte_at_a_time_including_multibyte_length() -> None:
    env = m.v1("run_data_message")
    env.message_v1.run_data_message.data.data = b"x" * 70_000  # 3-byte varint length
    payload = env.SerializeToString()
    proto, _ = connected()
    for b in frame(payload):
        proto.dataReceived(bytes((b,)))
    assert [p for _, p in proto.received] == [payload]


def test_largest_allowed_frame_is_accepted() -> None:
    env = m.v1("run_data_message")
    daq = env.message_v1.run_data_message.data
    daq.data = b""
    overhead = len(env.SerializeToString())
    daq.data = b"\0" * (MAX_FRAME_LENGTH - overhead - 4)
    payload = env.SerializeToString()
    daq.data = b"\0" * (len(daq.data) + MAX_FRAME_LENGTH - len(payload))
    payload = env.SerializeToString()
    assert len(payload) == MAX_FRAME_LENGTH
    proto, transport = connected()
    proto.dataReceived(frame(payload))
    assert len(proto.received) == 1
    assert transport.connected


def test_oversized_length_closes_the_connection_with_a_logged_error() -> None:
    proto, transport = connected()
    proto.dataReceived(PING_FRAME)
    proto.dataReceived(encode_varint(MAX_FRAME_LENGTH + 1) + b"\0" * 10 + PING_FRAME)
    assert proto.violations == [("frame length exceeds the maximum", MAX_FRAME_LENGTH + 1)]
    assert transport.disconnecting
    assert proto.counters.oversized == 1
    assert len(proto.received) == 1  # the frame before is delivered, nothing after
    proto.dataReceived(PING_FRAME)
    assert len(proto.received) == 1


def test_overlong_varint_closes_the_connection() -> None:
    proto, transport = connected()
    proto.dataReceived(b"\xff" * 12)
    assert proto.violations and proto.violations[0][0] == "length prefix is not a valid varint"
    assert transport.disconnecting


def test_empty_and_garbage_frames_are_counted_and_the_connection_survives() -> None:
    proto, transport = connected()
    garbage = b"\x0f\xff\xff"  # field 1, wire type 7: invalid
    truncated = m.v1("reset_command", id="abc").SerializeToString()[:-2]
    proto.dataReceived(b"\x00" + frame(garbage) + frame(truncated) + PING_FRAME)
    assert proto.counters.empty == 1
    assert proto.counters.unparseable == 2
    assert proto.bad[0] == "empty frame"
    assert all(r.startswith("unparseable Envelope") for r in proto.bad[1:])
    assert len(proto.received) == 1
    assert transport.connected and not transport.disconnecting


def test_send_envelope_writes_one_frame() -> None:
    proto, transport = connected()
    proto.sendEnvelope(m.generic_pong())
    assert transport.value() == PONG_FRAME


def test_one_two_and_three_byte_lengths_cut_at_every_position() -> None:
    sizes = (5, 127, 128, 3000, 16_383, 16_384, 70_000)  # 1-, 2- and 3-byte length prefixes
    payloads = []
    for n in sizes:
        env = m.v1("run_data_message")
        env.message_v1.run_data_message.data.data = b"y" * n
        payloads.append(env.SerializeToString())
    stream = b"".join(frame(p) for p in payloads)
    for cut in list(range(0, 40)) + list(range(len(stream) - 40, len(stream))) + [
        len(frame(payloads[0])) + 1, len(frame(payloads[0])) + 2,
    ]:
        proto, _ = connected()
        proto.dataReceived(stream[:cut])
        proto.dataReceived(stream[cut:])
        assert [p for _, p in proto.received] == payloads
        assert all(type(p) is bytes for _, p in proto.received)
        assert len(proto._buffer) == 0


class Pausing(Recorder):
    """Pauses its frames after the ``pause_after``-th frame (what the proxy's read gate does)."""

    pause_after = 0
    feed_during: bytes = b""

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        super().envelopeReceived(envelope, payload)
        if self.feed_during:  # bytes arriving while a frame is handled (a re-entrant write)
            data, self.feed_during = self.feed_during, b""
            self.dataReceived(data)
        if len(self.received) == self.pause_after:
            self.pauseFrames()


def numbered(n: int, start: int = 0) -> bytes:
    return b"".join(frame(m.v1("ping_command", id=f"p{i}").SerializeToString())
                    for i in range(start, start + n))


def ids(proto: Recorder) -> list[str]:
    return [env.message_v1.id for env, _ in proto.received]


def test_paused_frames_wait_as_bytes_unparsed_and_resume_in_order() -> None:
    proto = Pausing()
    proto.makeConnection(StringTransport())
    proto.pause_after = 3
    segment = numbered(100)
    proto.dataReceived(segment[:-5])  # the last frame unfinished
    assert ids(proto) == ["p0", "p1", "p2"]
    assert proto.counters.frames == 3  # the other 96 complete frames were not parsed
    proto.dataReceived(segment[-5:])  # more bytes while paused: appended, not walked
    assert proto.counters.frames == 3
    assert proto.bufferedBytes == len(segment) - len(numbered(3))
    proto.pause_after = 50
    proto.resumeFrames()
    assert ids(proto) == [f"p{i}" for i in range(50)]
    proto.pause_after = -1
    proto.resumeFrames()
    proto.resumeFrames()  # idempotent
    assert ids(proto) == [f"p{i}" for i in range(100)] and proto.bufferedBytes == 0


def test_resume_with_only_a_partial_frame_waits_for_the_rest() -> None:
    proto = Pausing()
    proto.makeConnection(StringTransport())
    proto.pause_after = 1
    data = numbered(2)
    proto.dataReceived(data[:-1])
    proto.pause_after = -1
    proto.resumeFrames()
    assert ids(proto) == ["p0"] and proto.bufferedBytes == len(numbered(1, 1)) - 1
    proto.dataReceived(data[-1:])
    assert ids(proto) == ["p0", "p1"] and proto.bufferedBytes == 0


def test_bytes_arriving_during_a_walk_are_delivered_after_it_in_order() -> None:
    proto = Pausing()
    proto.makeConnection(StringTransport())
    proto.pause_after = -1
    proto.feed_during = numbered(3, 10)
    proto.dataReceived(numbered(4))
    assert ids(proto) == ["p0", "p1", "p2", "p3", "p10", "p11", "p12"]
    assert proto.bufferedBytes == 0

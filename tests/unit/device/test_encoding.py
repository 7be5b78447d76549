"""Fast Envelope assembly for data chunks: byte-identical to protobuf's own serialization."""

from __future__ import annotations

import numpy as np
import pytest

from pybrid.device.encoding import (
    ChunkEncoder,
    WireChannel,
    end_message,
    state_message,
    varint_length,
    varint_run_end,
)
from pybrid.device.signals import SAMPLE_DTYPES, ChunkSignal, expected
from pybrid.proto import pb
from pybrid.samples import data_type_for
from pybrid.wire.framing import MAX_DATAGRAM

CHANNELS = tuple(WireChannel(idx=i, gain=1.0, offset=0.25 * i, probe=10 + i) for i in range(3))


def _reference(chunk: int, raw: bytes, count: int, dtype: str = "f32") -> bytes:
    env = pb.Envelope()
    m = env.message_v1.run_data_message
    m.run.id = "3f1c0e7e-0000-4000-8000-000000000001"
    m.run.chunk = chunk
    m.entity.path = "/00-00-00-00-00-01"
    m.data.data = raw
    m.data.type.CopyFrom(data_type_for(dtype))
    for ch in CHANNELS:
        m.data.channels.add(idx=ch.idx, gain=ch.gain, offset=ch.offset, probe=ch.probe)
    m.data.sample_count = count
    m.data.channel_stride = len(CHANNELS)
    return env.SerializeToString()


def _encoder(dtype: str = "f32") -> ChunkEncoder:
    return ChunkEncoder("3f1c0e7e-0000-4000-8000-000000000001", "/00-00-00-00-00-01", CHANNELS,
                        dtype, SAMPLE_DTYPES[dtype].itemsize)


@pytest.mark.parametrize("chunk", [0, 1, 127, 128, 16383, 16384, 2**21, 2**28, 2**32 - 1])
@pytest.mark.parametrize("dtype", sorted(SAMPLE_DTYPES))
def test_encode_is_byte_identical_to_protobuf(chunk: int, dtype: str) -> None:
    raw = expected(0, 3, 0, 100, dtype).tobytes()
    assert _encoder(dtype).encode(chunk, raw, 100) == _reference(chunk, raw, 100, dtype)


def test_short_chunk_uses_its_own_template() -> None:
    enc = _encoder()
    raw = expected(0, 3, 0, 7).tobytes()
    assert enc.encode(5, raw, 7) == _reference(5, raw, 7)
    assert enc.encode(300, expected(0, 3, 0, 100).tobytes(), 100) == _reference(
        300, expected(0, 3, 0, 100).tobytes(), 100)


@pytest.mark.parametrize("first,count", [(0, 1), (1, 127), (128, 50), (16380, 4)])
def test_batch_rows_equal_single_encodes(first: int, count: int) -> None:
    enc = _encoder()
    sig = ChunkSignal(0, 3, 100)
    flat, row = enc.batch(first, count, 100, lambda out: sig.fill(first, count, out))
    assert len(flat) == count * row
    for i in range(count):
        raw = expected(0, 3, (first + i) * 100, 100).tobytes()
        assert bytes(flat[i * row : (i + 1) * row]) == _reference(first + i, raw, 100)


def test_batch_must_not_cross_a_varint_boundary() -> None:
    with pytest.raises(ValueError, match="varint length boundary"):
        _encoder().batch(120, 10, 100, lambda out: None)


def test_varint_helpers() -> None:
    assert [varint_length(v) for v in (0, 1, 127, 128, 16383, 16384)] == [0, 1, 1, 2, 2, 3]
    assert [varint_run_end(v) for v in (0, 1, 127, 128, 20000)] == [1, 128, 128, 16384, 2**21]


def test_fit_samples_respects_the_datagram_limit() -> None:
    many = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(100))
    enc = ChunkEncoder("r", "/00-00-00-00-00-01", many, "f64", 8)
    spc = enc.fit_samples(100, MAX_DATAGRAM)
    assert 0 < spc < 100
    assert enc.encoded_length(spc) <= MAX_DATAGRAM < enc.encoded_length(spc + 1)
    assert _encoder().fit_samples(100, MAX_DATAGRAM) == 100
    assert enc.fit_samples(100, 100) == 0


def test_state_and_end_messages() -> None:
    env = state_message("r1", pb.OP, pb.ERROR, entity="/00-00-00-00-00-02", elapsed_ns=1500,
                        reason="boom")
    m = env.message_v1.run_state_change_message
    assert (m.run.id, m.old, m.new_, m.entity.path, m.reason) == (
        "r1", pb.OP, pb.ERROR, "/00-00-00-00-00-02", "boom")
    assert (m.time.value, m.time.prefix) == (1500, pb.NANO)
    assert not env.message_v1.HasField("id")
    assert not state_message("r1", pb.NEW, pb.TAKE_OFF, entity=None,
                             elapsed_ns=0).message_v1.run_state_change_message.HasField("entity")
    raw = np.array([[0.5, -0.25, 0.125]], dtype="<f4").tobytes()
    end = end_message("r1", "/00-00-00-00-00-01", CHANNELS, "f32", raw).message_v1
    assert end.run_data_end_message.data.sample_count == 1
    assert end.run_data_end_message.data.channels[2].probe == 12

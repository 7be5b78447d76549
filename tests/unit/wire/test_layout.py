"""The one learn/match rule for data datagram layouts (router, client fast path, taps)."""

from __future__ import annotations

import uuid

import pytest

from pybrid.proto import pb
from pybrid.wire.layout import LayoutTable, layout_of, read_chunk

PATH = "/00-00-00-00-00-01"


def data(run_id: str, chunk: int, samples: bytes = b"\x01" * 32) -> bytes:
    env = pb.Envelope()
    body = env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = PATH
    body.data.data = samples
    body.data.sample_count = 1
    return env.SerializeToString()


@pytest.mark.parametrize("chunk", [0, 1, 127, 128, 300, 16383, 16384, 70000, 2**31])
def test_a_learned_layout_matches_and_reads_the_chunk_as_protobuf_does(chunk):
    run_id = str(uuid.uuid4())
    table: LayoutTable[str] = LayoutTable()
    first = data(run_id, chunk)
    lay = layout_of(first)
    assert lay is not None
    table.learn(lay, "entry")
    other = data(str(uuid.uuid4()), chunk, b"\x02" * 32)  # another run, other samples
    found = table.match(other)
    assert found is not None and found[0] is lay and found[1] == "entry"
    assert found[2] == read_chunk(lay, other) == pb.Envelope.FromString(other) \
        .message_v1.run_data_message.run.chunk


def test_a_chunk_varint_protobuf_would_read_otherwise_is_minus_one():
    raw = data(str(uuid.uuid4()), 300)
    lay = layout_of(raw)
    assert lay is not None and lay.chunk_len == 2
    table: LayoutTable[None] = LayoutTable()
    table.learn(lay, None)
    bad = bytearray(raw)
    bad[lay.chunk_at + 1] |= 0x80  # a continuation bit on the last byte
    found = table.match(bytes(bad))
    assert found is not None and found[2] == -1 == read_chunk(lay, bytes(bad))
    assert table.match(raw[:-1]) is None  # another length: nothing learned


def test_the_table_is_bounded_per_length_and_in_lengths():
    table: LayoutTable[int] = LayoutTable(lengths=3, per_length=2)
    for n in range(5):
        lay = layout_of(data(str(uuid.uuid4()), n + 1, b"\x01" * 8))
        assert lay is not None
        table.learn(lay, n)
    assert len(table) == 2  # one length: the two newest
    for size in range(8, 16):
        lay = layout_of(data(str(uuid.uuid4()), 1, b"\x01" * size))
        assert lay is not None
        table.learn(lay, size)
    assert len(table) <= 3 * 2

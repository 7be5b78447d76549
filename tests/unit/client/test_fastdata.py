"""The client's fast path for run data frames: what it reads equals what protobuf parses, and
every damaged, truncated or unusual frame falls back to the full parse."""

import uuid

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from twisted.internet import task
from twisted.internet.testing import StringTransport

from pybrid import samples
from pybrid.client.control import ClientProtocol, ControlChannel
from pybrid.client.fastdata import DataFastPath
from pybrid.client.results import RunSpec
from pybrid.client.run import RunCollector
from pybrid.proto import pb
from pybrid.wire import frame, messages

RUN = str(uuid.uuid4())
A, B = "00-00-5E-00-53-0A", "00-00-5E-00-53-0B"


def envelope(chunk, carrier=A, *, run=RUN, final=False, gains=None, msg_id=True, rows=100,
             dtype="f32", seed=None):
    rng = np.random.default_rng(chunk if seed is None else seed)
    kind = "run_data_end_message" if final else "run_data_message"
    msg = pb.RunDataEndMessage() if final else pb.RunDataMessage()
    msg.run.id, msg.run.chunk, msg.entity.path = run, chunk, "/" + carrier
    raw = (rng.standard_normal((rows, 4)) * 1000).astype(samples.DTYPES[dtype])
    msg.data.CopyFrom(samples.encode(raw, dtype, gains=gains or [0.5, 1.0, 2.0, 1e-3],
                                     offsets=[0.0, 0.25, -1.0, 0.0], probes=[0, 0, 1, 1]))
    return messages.v1(kind, msg, id=messages.new_id() if msg_id else None)


def learned(*envs):
    fp = DataFastPath()
    for env in envs:
        assert fp.learn(env, env.SerializeToString())
    return fp


def parsed(payload):
    env = pb.Envelope()
    env.ParseFromString(payload)
    return env


def assert_same(fast, env):
    """What the fast path read is what protobuf parsed."""
    msg = env.message_v1
    kind = msg.WhichOneof("kind")
    assert kind == ("run_data_end_message" if fast.final else "run_data_message")
    body = getattr(msg, kind)
    assert (fast.run_id, fast.chunk, fast.carrier_path) == (
        body.run.id, body.run.chunk, body.entity.path)
    np.testing.assert_array_equal(fast.format.values(fast.payload, fast.samples_at),
                                  samples.decode(body.data))
    assert fast.format.probes == tuple(c.probe for c in body.data.channels)


@pytest.mark.parametrize("chunk", [0, 1, 127, 128, 300, 16_383, 16_384, 2**21 + 5])
def test_a_frame_of_a_learned_layout_reads_as_protobuf_parses_it(chunk):
    fp = learned(envelope(0, seed=9), envelope(7), envelope(200), envelope(20_000),
                 envelope(2**21))
    env = envelope(chunk)
    fast = fp.match(env.SerializeToString())
    assert fast is not None
    assert_same(fast, env)


@pytest.mark.parametrize("kw", [{"final": True}, {"msg_id": False}, {"carrier": B},
                                {"dtype": "i16"}, {"dtype": "f64"}])
def test_other_kinds_and_layouts_are_learned_separately(kw):
    fp = learned(envelope(3, **kw))
    env = envelope(4, **kw)
    fast = fp.match(env.SerializeToString())
    assert fast is not None
    assert_same(fast, env)
    assert learned(envelope(3)).match(env.SerializeToString()) is None


def test_identity_gains_give_the_values_of_the_full_decode_in_the_storage_type():
    fp = learned(envelope(1, gains=[1.0] * 4))
    env = envelope(2, gains=[1.0] * 4)
    body = env.message_v1.run_data_message
    body.data.channels[1].offset = 0.0  # every offset +0: identity
    body.data.channels[2].offset = 0.0
    raw = np.frombuffer(body.data.data, np.float32).copy()
    raw[:3] = [-0.0, np.inf, np.nan]
    body.data.data = raw.tobytes()
    fp = learned(envelope(1, gains=[1.0] * 4))
    assert fp.match(env.SerializeToString()) is None  # other offsets: another tail
    fp.learn(env, env.SerializeToString())
    fast = fp.match(env.SerializeToString())
    assert fast is not None and fast.format.identity
    values = fast.format.values(fast.payload, fast.samples_at)
    assert values.dtype == np.float32
    full = samples.decode(body.data).astype(np.float32)
    np.testing.assert_array_equal(values, full)
    assert not np.signbit(values.flat[0]) and not np.signbit(full.flat[0])


def test_another_channel_layout_does_not_match():
    fp = learned(envelope(1))
    assert fp.match(envelope(2, gains=[0.5, 1.0, 2.0, 2e-3]).SerializeToString()) is None
    assert fp.match(envelope(2, rows=99).SerializeToString()) is None
    assert fp.match(envelope(2, run=str(uuid.uuid4())).SerializeToString()) is not None


def test_a_later_data_field_in_the_tail_is_not_learned():
    env = envelope(5)
    payload = env.SerializeToString()
    # DaqData.data once more at the end: protobuf keeps the last one, the layout would not
    extra = b"\x0a\x04abcd"
    bumped = parsed_with_tail(payload, extra)
    env2 = parsed(bumped)
    assert env2.message_v1.run_data_message.data.data == b"abcd"
    assert not DataFastPath().learn(env2, bumped)


def parsed_with_tail(payload, extra):
    """``payload`` with ``extra`` appended inside DaqData (every enclosing length fixed)."""
    env = pb.Envelope()
    env.ParseFromString(payload)
    data = env.message_v1.run_data_message.data.SerializeToString() + extra
    body = env.message_v1.run_data_message
    head = pb.RunDataMessage(run=body.run, entity=body.entity).SerializeToString()
    inner = head + b"\x1a" + _varint(len(data)) + data
    v1 = pb.MessageV1(id=env.message_v1.id).SerializeToString()
    v1 += b"\x92\x13" + _varint(len(inner)) + inner
    return b"\xaa\x06" + _varint(len(v1)) + v1


def _varint(n):
    from pybrid.wire.framing import encode_varint
    return encode_varint(n)


def test_every_damaged_byte_either_falls_back_or_reads_as_protobuf_parses_it():
    fp = learned(envelope(1), envelope(2000))
    good = envelope(1300).SerializeToString()
    fast_hits = 0
    for i in range(len(good)):
        if 200 < i < len(good) - 120 and i % 97:  # the samples: any byte is a sample
            continue
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(good)
            bad[i] ^= flip
            bad = bytes(bad)
            fast = fp.match(bad)
            if fast is None:
                continue
            fast_hits += 1
            try:
                env = parsed(bad)
            except DecodeError:
                pytest.fail(f"fast path read byte {i} ^ {flip:#x}, protobuf rejects it")
            assert_same(fast, env)
    assert fast_hits  # ids, chunk and samples may vary: some damage still reads


def test_truncated_and_extended_frames_fall_back():
    fp = learned(envelope(1))
    good = envelope(2).SerializeToString()
    for n in range(len(good)):
        assert fp.match(good[:n]) is None
    assert fp.match(good + b"\x00") is None


def test_non_ascii_ids_fall_back():
    fp = learned(envelope(1))
    good = envelope(2).SerializeToString()
    for target in (RUN.encode(),):
        at = good.index(target)
        bad = good[:at] + b"\xc3\xa9" + good[at + 2:]
        assert fp.match(bad) is None


def test_layouts_are_bounded():
    fp = DataFastPath()
    for rows in range(1, 80):
        env = envelope(1, rows=rows)
        fp.learn(env, env.SerializeToString())
    assert len(fp._table) <= 64


# -- through the client protocol into a run ---------------------------------------------------


def run_through(frames, *, fast):
    clock = task.Clock()
    spec = RunSpec(op_time=0.0009, channels=4, sample_rate=1_000_000)
    collector = RunCollector(clock, RUN, spec, [A, B], 10.0)
    channel = ControlChannel(clock=clock, peer="test")
    channel.on_notification = collector.envelope
    if fast:
        channel.on_fast_data = lambda d: collector.fast_data(d) or True
    proto = ClientProtocol(channel)
    proto.makeConnection(StringTransport())
    blob = b"".join(frames)
    for i in range(0, len(blob), 1000):  # frames split across segments
        proto.dataReceived(blob[i : i + 1000])
    return collector.result(None, "tcp"), channel, proto


def test_a_run_through_the_fast_path_equals_the_full_parse():
    order = [0, 1, 3, 2, 5, 5, 6, 8]  # 4 and 7 lost, 2 late, 5 twice; 9 chunks expected
    envs = [envelope(n, c) for n in order for c in (A, B)]
    envs.append(envelope(9, A, final=True, rows=1))
    envs.append(envelope(9, B, final=True, rows=1))
    frames = [frame(e.SerializeToString()) for e in envs]
    slow, _, _ = run_through(frames, fast=False)
    fast, channel, proto = run_through(frames, fast=True)
    assert channel.fast_path.hits > 10
    assert proto.counters.frames == len(frames)
    assert channel.counters.notifications == len(frames)
    for mac in (A, B):
        s, f = slow[mac], fast[mac]
        assert f.samples.dtype == s.samples.dtype == np.float32
        np.testing.assert_array_equal(f.samples, s.samples)
        assert np.isnan(f.samples[400:500]).all() and np.isnan(f.samples[700:800]).all()
        assert f.missing_chunks == s.missing_chunks == (4, 7)
        assert f.duplicate_chunks == s.duplicate_chunks == 1
        assert f.final.dtype == np.float64
        np.testing.assert_array_equal(f.final, s.final)
        assert f.probes == s.probes == (0, 0, 1, 1)


def test_a_frame_the_channel_does_not_take_is_parsed_and_delivered():
    frames = [frame(envelope(n).SerializeToString()) for n in range(3)]
    got = []
    clock = task.Clock()
    channel = ControlChannel(clock=clock, peer="test")
    channel.on_notification = got.append
    channel.on_fast_data = lambda d: False  # e.g. a run nobody waits for
    proto = ClientProtocol(channel)
    proto.makeConnection(StringTransport())
    proto.dataReceived(b"".join(frames))
    assert [e.message_v1.run_data_message.run.chunk for e in got] == [0, 1, 2]
    assert channel.fast_path.learned >= 1

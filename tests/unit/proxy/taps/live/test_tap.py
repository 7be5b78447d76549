"""The live tap: decodes only while watched, fast path (layout) and parsed path alike."""

from __future__ import annotations

import uuid

import numpy as np
from twisted.internet.task import Clock

from pybrid import samples as S
from pybrid.proto import pb
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.proxy.taps.live.tap import MAX_PENDING, LiveTap
from pybrid.wire.layout import layout_of

PATH = "/00-00-00-00-00-01"
RID = str(uuid.UUID(int=7))


def data_message(chunk: int, raw: np.ndarray, dtype: str = "i16", gains=None,
                 path: str = PATH) -> bytes:
    env = pb.Envelope()
    env.message_v1.id = str(uuid.uuid4())
    body = env.message_v1.run_data_message
    body.run.id = RID
    body.run.chunk = chunk
    body.entity.path = path
    body.data.CopyFrom(S.encode(raw, dtype, gains=gains))
    return env.SerializeToString()


def info() -> RunInfo:
    return RunInfo("client-run", RID, (PATH,), 1, {"sample_rate": 1000, "channels": 2})


def raw(chunk: int) -> np.ndarray:
    return (np.arange(200).reshape(100, 2) + chunk * 1000).astype(np.int16)


def test_nobody_watching_nothing_is_decoded_but_the_run_is_known():
    tap = LiveTap(Clock())
    tap.run_started(info())
    payload = data_message(0, raw(0))
    tap.chunk(info(), 0, layout_of(payload), 0, payload, 0)
    run = tap.store.runs["client-run"]
    assert run.traces == {} and run.sample_rate == 1000


def test_fast_and_parsed_paths_give_the_decoded_values_with_gains_at_their_rows():
    clock = Clock()
    tap = LiveTap(clock)
    tap.watchers = 1
    run = info()
    tap.run_started(run)
    gains = [0.5, 2.0]
    p0, p1, p3 = (data_message(k, raw(k), gains=gains) for k in (0, 1, 3))
    lay = layout_of(p0)
    assert lay is not None
    tap.chunk(run, 0, lay, 0, p0, 0)
    clock.advance(1.5)
    tap.chunk(run, 0, None, 1, p1, 0)  # no layout: parsed
    tap.chunk(run, 0, layout_of(p3), 3, p3, 0)
    assert tap.store.runs["client-run"].traces[PATH].rows == 200  # chunk 3 waits for a frame
    tap.flush()
    trace = tap.store.runs["client-run"].traces[PATH]
    assert trace.rows == 400 and trace.missing == 1
    env = trace.window(0, 400, 400)
    want = np.concatenate([raw(0), raw(1)]) * np.array(gains)
    np.testing.assert_array_equal(env.lo[:200], want)
    assert np.isnan(env.lo[200:300]).all()
    np.testing.assert_array_equal(env.hi[300:], raw(3) * np.array(gains))
    assert tap.store.runs["client-run"].arrived == 1.5
    tap.run_ended(run, RunEnd(pb.RunState.DONE, {}, 4, 1))
    live = tap.store.runs["client-run"]
    assert (live.result, live.chunks, live.missing, live.ended_at) == ("DONE", 4, 1, 1.5)


def test_consecutive_chunks_are_decoded_as_one_block_and_the_pending_stay_bounded():
    tap = LiveTap(Clock())
    tap.watchers = 1
    run = info()
    tap.run_started(run)
    learned = {}  # as the router: one layout object per datagram length
    for k in range(MAX_PENDING + 10):
        if k == 7:
            continue  # lost
        p = data_message(k, raw(k % 30))
        tap.chunk(run, 0, learned.setdefault(len(p), layout_of(p)), k, p, 0)
    assert tap._count < MAX_PENDING and len(tap._pending) == 1  # flushed once, one block
    tap.run_ended(run, RunEnd(pb.RunState.DONE, {}, MAX_PENDING + 10, 1))
    trace = tap.store.runs["client-run"].traces[PATH]
    assert trace.rows == (MAX_PENDING + 10) * 100 and trace.missing == 1
    env = trace.window(600, 900, 300)
    assert np.isnan(env.lo[100:200]).all()
    np.testing.assert_array_equal(env.lo[200:], raw(8))


def test_garbage_is_counted_not_raised():
    tap = LiveTap(Clock())
    tap.watchers = 1
    tap.run_started(info())
    tap.chunk(info(), 0, None, 0, b"\xff\x00garbage", 0)
    good = data_message(0, raw(0))
    lay = layout_of(good)
    assert lay is not None
    tap.chunk(info(), 0, lay, 0, good[:-3] + b"\x00\x00\x00", 0)  # same layout, parses oddly
    assert tap.unusable >= 1


def test_a_short_last_chunk_lands_after_the_whole_ones():
    tap = LiveTap(Clock())
    tap.watchers = 1
    run = info()
    tap.run_started(run)
    for k in range(4):
        p = data_message(k, raw(k)[: 100 if k < 3 else 50])
        tap.chunk(run, 0, layout_of(p), k, p, 0)
    tap.flush()
    trace = tap.store.runs["client-run"].traces[PATH]
    assert trace.rows == 350 and trace.per_chunk == 100 and trace.missing == 0
    env = trace.window(0, 350, 350)
    np.testing.assert_array_equal(env.lo[300:], raw(3)[:50])

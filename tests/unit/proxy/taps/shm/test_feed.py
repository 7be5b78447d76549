"""The router's run events → pybrid-shm frames (the feed), and the frame format itself.

The feed is driven the way the proxy drives it: datagrams through a real RunRouter."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from support.shm import require_shm

require_shm()

from pybrid import samples as S  # noqa: E402
from pybrid.proto import pb  # noqa: E402
from pybrid.proxy.data.router import RunRouter  # noqa: E402
from pybrid.proxy.taps.shm.feed import ShmFeed  # noqa: E402
from pybrid.wire import shm_frames as F  # noqa: E402

PATH = "/00-00-00-00-00-01"


def data_message(run_id: str, chunk: int, raw: np.ndarray, dtype: str = "f32",
                 gains: list[float] | None = None, end: bool = False) -> bytes:
    env = pb.Envelope()
    env.message_v1.id = str(uuid.uuid4())
    body = env.message_v1.run_data_end_message if end else env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = PATH
    body.data.CopyFrom(S.encode(raw, dtype, gains=gains))
    return env.SerializeToString()


def state_message(run_id: str, new: int) -> bytes:
    env = pb.Envelope()
    change = env.message_v1.run_state_change_message
    change.run.id = run_id
    change.old = pb.OP_END
    change.new_ = new
    change.reason = "finished"
    return env.SerializeToString()


class Sink:
    """A tap: what it is handed, as frames (a fast-path ``put`` as the frame it writes)."""

    def __init__(self) -> None:
        self.frames: list[F.Frame] = []
        self.sink = self.frames.append
        self.puts = 0

    def put(self, seq: int, chunk: int, src: bytes, t: F.Template) -> None:
        self.puts += 1
        self.frames.append((t[1], seq, chunk, memoryview(src)[t[4] : t[5]], t[6], t[7]))


class Lane:
    name = "dev"
    carriers = (PATH,)
    index = 0


class Target:
    session_id = "s"

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def deliver(self, payload: bytes) -> None:
        self.got.append(payload)

    def run_ended(self, run_id: str, state: int) -> None:
        pass


class Fed:
    """A feed behind a router that registered the runs ``active`` (proxy id → client id)."""

    def __init__(self, active: dict[str, str], sink: Sink, backlog: Any = None) -> None:
        self.feed = ShmFeed(lambda: [{"index": 0, "lane": 0, "path": PATH}], backlog=backlog)
        self.feed.taps.append(sink)
        self.router = RunRouter(tap=self.feed)
        self.target = Target()
        for run_id, client in active.items():
            self.router.register_run(run_id, self.target, [PATH], client_id=client)

    def emit(self, payload: bytes, lane: int = 0) -> None:
        self.router.route_datagram(Lane(), payload)

    def replay(self) -> list[F.Frame]:
        return self.feed.replay()


def feed_for(active: set[str] | dict[str, str], backlog: Any = None) -> tuple[Fed, Sink]:
    sink = Sink()
    fed = Fed(active if isinstance(active, dict) else {r: r for r in active}, sink, backlog)
    return fed, sink


def whole(frame: F.Frame) -> bytes:
    data = F.frame_bytes(frame)
    assert len(data) == frame[5] and len(data) % 16 == 0
    return data


def test_messages_of_runs_that_are_not_active_make_no_frames():
    feed, sink = feed_for(set())
    feed.emit(data_message(str(uuid.uuid4()), 0, np.ones((100, 8))), 0)
    assert sink.frames == [] and feed.router.counters.foreign_run == 1


def test_a_run_yields_start_layout_chunks_and_end_with_zero_copy_samples():
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    rng = np.random.default_rng(1)
    raws = [rng.standard_normal((100, 8)).astype("<f4") for _ in range(3)]
    payloads = [data_message(run_id, n, raw) for n, raw in enumerate(raws)]
    for payload in payloads:
        feed.emit(payload, 0)
    feed.emit(state_message(run_id, pb.DONE), 0)
    kinds = [F.parse_header(whole(f))[0] for f in sink.frames]
    assert kinds == [F.RUN_START, F.LAYOUT, F.CHUNK, F.CHUNK, F.CHUNK, F.CARRIER_END]
    seqs = [F.parse_header(whole(f))[4] for f in sink.frames]
    assert seqs == list(range(1, 7))
    start = F.json_body(whole(sink.frames[0]))
    assert start["run_id"] == run_id and start["carriers"] == [PATH]
    layout = F.json_body(whole(sink.frames[1]))
    assert layout["path"] == PATH and layout["dtype"] == "<f4" and layout["channels"] == 8
    for n, (frame, raw, payload) in enumerate(zip(sink.frames[2:5], raws, payloads,
                                                   strict=True)):
        head, _, _, body, pad, length = frame
        if n == 2:  # the first datagram of a layout (chunk 0 has no chunk field, so chunk 1
            # is another) is parsed and teaches it; later ones are read in place: the samples
            # are a slice of the datagram, not a copy
            assert isinstance(body, memoryview) and body.obj is payload
        assert len(head) + len(body) + pad == length and length % 16 == 0
        fields = F.parse_header(whole(frame))
        assert fields[5] == n and fields[6] == 100 and fields[7] == 8  # chunk, samples, ch
        view = F.samples_view(whole(frame), 100, 8, fields[8])
        np.testing.assert_array_equal(view, raw)
    end = whole(sink.frames[5])
    assert F.parse_header(end)[1] == pb.DONE
    assert F.json_body(end)["state"] == "DONE" and F.json_body(end)["path"] == PATH
    assert feed.replay() == sink.frames[:2]


def test_the_end_frame_counts_the_chunks_the_proxy_saw_of_its_carrier():
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    for n in (0, 1, 4):  # 2 and 3 never came: the count is the highest + 1
        feed.emit(data_message(run_id, n, np.ones((100, 8))), 0)
    feed.emit(state_message(run_id, pb.DONE), 0)
    end = F.json_body(whole(sink.frames[-1]))
    assert end["path"] == PATH and end["chunks"] == 5


def test_per_channel_gains_set_the_flag_and_the_layout_lists():
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    feed.emit(data_message(run_id, 0, np.ones((10, 2)), "i16", gains=[0.5, 2.0]), 0)
    layout = F.json_body(whole(sink.frames[1]))
    assert layout["gains"] == [0.5, 2.0] and layout["dtype"] == "<i2"
    head = F.parse_header(whole(sink.frames[2]))
    assert head[1] & F.FLAG_PER_CHANNEL


def test_end_messages_are_flagged():
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    feed.emit(data_message(run_id, 5, np.ones((1, 8)), end=True), 0)
    assert F.parse_header(whole(sink.frames[-1]))[1] & F.FLAG_END_MESSAGE


def test_garbage_is_counted_and_ignored():
    feed, sink = feed_for({"x"})
    feed.emit(b"\xff\xff\xff garbage", 0)
    assert len(sink.frames) == 1 and feed.router.counters.unparseable == 1  # RUN_START


def test_samples_view_is_a_view_and_checks_sizes():
    data = bytearray(F.chunk_header(0, 1, 1, 0, 2, 2, 1, 1.0, 0.0) + np.arange(4, dtype="<f4")
                     .tobytes())
    view = F.samples_view(data, 2, 2, 1)
    assert np.shares_memory(view, np.frombuffer(data, dtype=np.uint8))
    with pytest.raises(F.FrameFormatError):
        F.samples_view(data, 3, 2, 1)
    with pytest.raises(F.FrameFormatError):
        F.samples_view(data, 2, 2, 99)


def test_metadata_round_trip_and_foreign_metadata():
    meta = F.metadata([{"index": 0, "path": PATH}], "1.0")
    assert F.parse_metadata(meta)["carriers"][0]["path"] == PATH
    with pytest.raises(F.FrameFormatError, match="not from a pybrid proxy"):
        F.parse_metadata(b'{"format": "other"}')
    with pytest.raises(F.FrameFormatError, match="no metadata"):
        F.parse_metadata(b"")


def test_frames_name_the_run_by_the_clients_id_fast_path_or_parsed():
    run_id, client = str(uuid.uuid4()), str(uuid.uuid4())
    rng = np.random.default_rng(2)
    raws = [rng.standard_normal((100, 8)).astype("<f4") for _ in range(6)]
    payloads = [data_message(run_id, n, raw) for n, raw in enumerate(raws)]
    payloads.append(data_message(run_id, 6, raws[0], end=True))
    payloads.append(state_message(run_id, pb.DONE))
    fed, sink = feed_for({run_id: client})
    for payload in payloads:
        fed.emit(payload)
    assert sink.puts >= 4  # most chunks came through the router's fast path
    start = F.json_body(whole(sink.frames[0]))
    assert start["run_id"] == client and start["proxy_run_id"] == run_id
    chunks = [whole(f) for f in sink.frames if F.parse_header(whole(f))[0] == F.CHUNK]
    assert [F.parse_header(c)[5] for c in chunks] == list(range(7))
    for frame, raw in zip(chunks, raws, strict=False):
        np.testing.assert_array_equal(F.samples_view(frame, 100, 8, 1), raw)
    assert F.parse_header(chunks[-1])[1] & F.FLAG_END_MESSAGE
    assert F.parse_header(whole(sink.frames[-1]))[0] == F.CARRIER_END
    assert len(fed.target.got) == 8 and all(client.encode() in g for g in fed.target.got)


def _documented_end_states() -> dict[str, int]:
    """The CARRIER_END flags values docs/monitors.md's frame table gives (not the code's)."""
    import pathlib
    import re

    docs = pathlib.Path(__file__).parents[5] / "docs" / "monitors.md"
    row = next(line for line in docs.read_text().splitlines()
               if line.startswith("| 1 | u8 | flags") and "CARRIER_END" in line)
    m = re.search(r"\((\d+) DONE, (\d+) ERROR", row)
    assert m is not None, row
    return {"DONE": int(m.group(1)), "ERROR": int(m.group(2))}


@pytest.mark.parametrize("state", ["DONE", "ERROR"])
def test_the_end_frame_says_the_final_state_as_documented(state):
    """Issue 21.3: a reader written from the docs' table decodes the final state right."""
    documented = _documented_end_states()
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    feed.emit(data_message(run_id, 0, np.ones((10, 8))), 0)
    feed.emit(state_message(run_id, pb.RunState.Value(state)), 0)
    end = whole(sink.frames[-1])
    assert end[0] == 4  # CARRIER_END, as documented
    assert end[1] == documented[state]
    assert {v: k for k, v in documented.items()}[end[1]] == state


def test_a_state_change_that_is_not_final_is_a_state_frame():
    run_id = str(uuid.uuid4())
    feed, sink = feed_for({run_id})
    feed.emit(data_message(run_id, 0, np.ones((10, 8))), 0)
    feed.emit(state_message(run_id, pb.OP), 0)
    frame = whole(sink.frames[-1])
    kind, flags = F.parse_header(frame)[:2]
    assert kind == F.STATE == 5 and flags == pb.OP
    assert F.json_body(frame)["state"] == "OP" and F.json_body(frame)["path"] == PATH


class Backlog:
    """The intakes' backlog as the test sets it, and how often the feed asked."""

    def __init__(self) -> None:
        self.fill = 0.0
        self.asked = 0

    def __call__(self) -> float:
        self.asked += 1
        return self.fill


def test_the_feed_yields_while_the_intake_is_behind_and_the_reader_sees_the_gap():
    from pybrid.proxy.taps.shm.feed import GAUGE_EVERY

    run_id = str(uuid.uuid4())
    backlog = Backlog()
    fed, sink = feed_for({run_id}, backlog)
    raw = np.ones((100, 8), "<f4")
    sent = 0

    def send(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            fed.emit(data_message(run_id, sent, raw))
            sent += 1

    def chunks() -> list[tuple[int, int]]:  # (tap sequence, chunk number) of each CHUNK
        out = []
        for f in sink.frames:
            fields = F.parse_header(whole(f))
            if fields[0] == F.CHUNK:
                out.append((fields[4], fields[5]))
        return out

    send(GAUGE_EVERY)
    assert backlog.asked == 1 and len(chunks()) == GAUGE_EVERY and not fed.feed.yielding
    backlog.fill = 0.5  # half the intake's buffer waits: the default yield_at
    send(GAUGE_EVERY)  # the look comes with the last of these: it is skipped already
    assert fed.feed.yielding and fed.feed.yields == 1 and fed.feed.yielded == 1
    assert len(chunks()) == 2 * GAUGE_EVERY - 1
    backlog.fill = 0.3  # lower, not yet below half of it: still yielding
    send(GAUGE_EVERY)
    assert fed.feed.yielding and fed.feed.yielded == 1 + GAUGE_EVERY
    fed.emit(state_message(run_id, pb.DONE))  # what is not a chunk still goes
    assert F.parse_header(whole(sink.frames[-1]))[0] == F.CARRIER_END
    backlog.fill = 0.2  # below half: the next look (the last of these) feeds again
    send(GAUGE_EVERY)
    assert not fed.feed.yielding and fed.feed.yields == 1
    assert fed.feed.yielded == 2 * GAUGE_EVERY
    got = chunks()
    assert len(got) == sent - fed.feed.yielded
    assert {n for _, n in got} == set(range(sent)) - set(range(2 * GAUGE_EVERY - 1,
                                                               4 * GAUGE_EVERY - 1))
    seqs = [F.parse_header(whole(f))[4] for f in sink.frames]
    assert seqs == sorted(seqs)
    assert seqs[-1] == len(sink.frames) + fed.feed.yielded  # each skip is a gap the reader sees


def test_without_a_backlog_or_at_zero_the_feed_never_yields():
    run_id = str(uuid.uuid4())
    for backlog, yield_at in ((None, 0.5), (Backlog(), 0.0)):
        fed, sink = feed_for({run_id})
        fed.feed.backlog = backlog
        fed.feed.yield_at = yield_at
        if backlog is not None:
            backlog.fill = 1.0
        for n in range(300):
            fed.emit(data_message(run_id, n, np.ones((10, 2), "<f4")))
        kinds = [F.parse_header(whole(f))[0] for f in sink.frames]
        assert fed.feed.yielded == 0 and kinds.count(F.CHUNK) == 300
        assert backlog is None or backlog.asked == 0

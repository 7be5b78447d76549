"""Tap frames to NATS messages and the run-end condition (pybrid.proxy.taps.nats.runs), and the
bridge's bounded queue (pybrid.proxy.taps.nats.bridge, no server needed)."""

from __future__ import annotations

import numpy as np

from pybrid.proxy.taps.nats.bridge import Bridge, BridgeOptions
from pybrid.proxy.taps.nats.runs import RunTracker, merge
from pybrid.wire import nats_format as N
from pybrid.wire import shm_frames as F

PATH = "/00-00-00-00-00-01"


class Frames:
    def __init__(self) -> None:
        self.seq = 0

    def _next(self, skip: int = 0) -> int:
        self.seq += 1 + skip
        return self.seq

    def start(self, run: int = 1, run_id: str = "r1", **config: object) -> bytes:
        return F.encode_json(F.RUN_START, F.RUN_WIDE, run, self._next(),
                             {"run_id": run_id, "run": run, "carriers": [PATH], **config})

    def state(self, state: str, run: int = 1) -> bytes:
        return F.encode_json(F.STATE, 0, run, self._next(),
                             {"state": state, "reason": "", "path": PATH, "lane": 0}, flags=6)

    def layout(self, run: int = 1) -> bytes:
        return F.encode_json(F.LAYOUT, 0, run, self._next(),
                             {"carrier": 0, "path": PATH, "dtype": "<f4", "channels": 2,
                              "gains": [1.0, 2.0], "offsets": [0.0, 0.5], "probes": [3, 4],
                              "lane": 0, "samples": 3, "idx": [0, 1]})

    def chunk(self, number: int, run: int = 1, skip: int = 0, end: bool = False) -> bytes:
        raw = np.full((3, 2), number, dtype="<f4")
        flags = F.FLAG_PER_CHANNEL | (F.FLAG_END_MESSAGE if end else 0)
        head = F.chunk_header(0, run, self._next(skip), number, 3, 2, 1, 1.0, 0.0, flags)
        return head + raw.tobytes() + bytes(F.pad_length(len(head) + raw.nbytes))

    def end(self, state: str = "DONE", reason: str = "", run: int = 1, **more: object) -> bytes:
        return F.encode_json(F.CARRIER_END, 0, run, self._next(),
                             {"state": state, "reason": reason, "path": PATH, "lane": 0,
                              **more}, flags=4 if state == "DONE" else 5)


def test_frames_become_messages_of_the_documented_format():
    t, f = RunTracker("pybrid", "lab"), Frames()
    start = t.frame(f.start())
    assert start is not None and start.subject == "pybrid.lab.r1.start"
    assert N.decode_json(start.payload) == {"format": "pybrid-nats", "version": 1,
                                            "run_id": "r1", "proxy": "lab", "carriers": [PATH]}
    layout = t.frame(f.layout())
    assert layout is not None and layout.subject == "pybrid.lab.r1.layout"
    body = N.decode_json(layout.payload)
    assert body["path"] == PATH and body["gains"] == [1.0, 2.0] and body["run_id"] == "r1"
    chunk = t.frame(f.chunk(5))
    assert chunk is not None and chunk.kind == "chunk" and chunk.members == ((0, 5),)
    flags, carrier, number, n, channels, _g, _o, raw, _e = N.parse_chunk(chunk.payload)
    assert (flags, carrier, number, n, channels) == (N.FLAG_PER_CHANNEL, 0, 5, 3, 2)
    assert len(chunk.payload) == N.CHUNK_HEADER_SIZE + raw.nbytes  # the ring's padding is cut
    assert chunk.msg_id == f"pybrid.lab.r1.chunk:{f.seq}"  # the tap sequence: stable


def test_the_end_lists_chunks_not_stored_up_to_the_highest_seen():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.layout())
    outs = [t.frame(f.chunk(n)) for n in (0, 1, 3)]  # 2 lost by the device
    gap = t.frame(f.chunk(4, skip=2))  # two frames the tap could not write
    for out in [*outs[:2], gap]:
        t.stored(out)
    state = t.frame(f.end())
    assert state is not None and state.kind == "state" and t.over(1)
    end = N.decode_json(t.end(1).payload)
    assert end["condition"] == "incomplete"
    assert end["missing"] == {PATH: [2, 3]} and end["chunks"] == {PATH: 3}
    assert end["tap_gaps"] == 2 and end["states"] == {PATH: "DONE"}
    assert not t.over(1)  # the end is made once


def test_an_error_state_is_the_runs_condition_with_its_reason():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.layout())
    t.stored(t.frame(f.chunk(0)))
    t.frame(f.end("ERROR", "overload"))
    end = N.decode_json(t.end(1).payload)
    assert (end["condition"], end["reason"]) == ("error", f"{PATH}: overload")


def test_frames_of_a_run_never_started_are_counted_not_exported():
    t, f = RunTracker("pybrid", "lab"), Frames()
    assert t.frame(f.chunk(0, run=9)) is None and t.unknown == 1


def test_the_bridge_drops_chunks_beyond_its_queue_and_never_a_run_boundary():
    got: list[dict] = []
    b = Bridge(BridgeOptions(servers=("nats://127.0.0.1:1",), shm="x", proxy="lab", queue=2),
               got.append)
    f = Frames()
    for frame in (f.start(), f.layout(), f.chunk(0), f.chunk(1), f.chunk(2), f.chunk(3),
                  f.end()):
        b.take(frame)
    assert b.stats.dropped == 2 and b.stats.queued == 5
    kinds = [x if isinstance(x, int) else x.kind for x in b._queue]
    assert kinds == ["start", "layout", "chunk", "chunk", "state", 1]  # 1: the end marker
    end = N.decode_json(b.tracker.end(1).payload)
    assert end["export_dropped"] == 2 and end["missing"] == {PATH: [0, 1, 2, 3]}


def test_merged_chunks_are_stored_together():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.layout())
    batch = merge([t.frame(f.chunk(n)) for n in range(3)])
    assert batch.members == ((0, 0), (0, 1), (0, 2))
    assert [r[2] for r in N.iter_chunks(batch.payload)] == [0, 1, 2]
    t.stored(batch)
    t.frame(f.end())
    assert N.decode_json(t.end(1).payload)["condition"] == "complete"


def test_the_bridge_batches_fresh_chunks_of_one_run_and_never_a_retried_one():
    b = Bridge(BridgeOptions(servers=("nats://127.0.0.1:1",), shm="x", proxy="lab"),
               lambda s: None)
    f = Frames()
    for frame in (f.start(), f.layout(), f.chunk(0), f.chunk(1), f.chunk(2)):
        b.take(frame)
    b._queue.popleft()
    b._queue.popleft()
    retried = b._queue[1]
    b._first[id(retried)] = 0.0  # chunk 1 was published before
    batch, count, _records = b._batch()
    assert count == 1 and batch.members == ((0, 0),)
    b._queue.popleft()
    b._first.clear()
    batch, count, _records = b._batch()
    assert count == 2 and batch.members == ((0, 1), (0, 2))


CONFIG = {"proxy_run_id": "p1", "sample_rate": 10_000, "channels": 2, "op_time_ns": 1_500_000,
          "ic_time_ns": 100_000, "sample_op": True, "sample_op_end": True}


def test_the_start_carries_the_run_configuration_and_its_expected_samples():
    t, f = RunTracker("pybrid", "lab"), Frames()
    start = t.frame(f.start(**CONFIG, other="not exported"))
    assert start is not None
    body = N.decode_json(start.payload)
    assert {k: body[k] for k in CONFIG} == CONFIG
    assert body["expected_samples"] == 15  # 1.5 ms at 10 kHz
    assert "other" not in body


def test_chunks_lost_after_the_last_one_seen_are_missing_when_the_count_is_known():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start(**CONFIG))  # 15 samples of 3 per chunk: chunks 0 … 4
    t.frame(f.layout())
    for n in (0, 1, 2):  # 3 and 4 never came
        out = t.frame(f.chunk(n))
        assert out is not None
        t.stored(out)
    t.frame(f.end())
    body = N.decode_json(t.end(1).payload)
    assert body["missing"] == {PATH: [3, 4]} and body["condition"] == "incomplete"


def test_without_the_configuration_only_gaps_below_the_highest_chunk_count():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.layout())
    for n in (0, 1, 2):
        out = t.frame(f.chunk(n))
        assert out is not None
        t.stored(out)
    t.frame(f.end())
    assert N.decode_json(t.end(1).payload)["condition"] == "complete"


def test_the_last_chunks_the_tap_lost_are_missing_by_the_count_in_carrier_end():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())  # no OP time: no expected count
    t.frame(f.layout())
    for n in (0, 1, 2):
        out = t.frame(f.chunk(n))
        assert out is not None
        t.stored(out)
    t.frame(f.end(chunks=5))  # the proxy saw chunks 0 … 4; the ring lost 3, 4
    body = N.decode_json(t.end(1).payload)
    assert body["missing"] == {PATH: [3, 4]} and body["condition"] == "incomplete"


def test_a_carrier_whose_every_chunk_the_tap_lost_is_missing_them_all():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.end(chunks=3))
    body = N.decode_json(t.end(1).payload)
    assert body["missing"] == {PATH: [0, 1, 2]} and body["condition"] == "incomplete"


def test_state_frames_become_state_messages_and_do_not_end_the_run():
    t, f = RunTracker("pybrid", "lab"), Frames()
    t.frame(f.start())
    t.frame(f.layout())
    out = t.frame(f.state("OP"))
    assert out is not None and out.subject == "pybrid.lab.r1.state"
    assert N.decode_json(out.payload) == {"run_id": "r1", "carrier": 0, "path": PATH,
                                          "state": "OP", "reason": ""}
    assert not t.over(1)

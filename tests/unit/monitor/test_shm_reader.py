"""``pybrid.monitor.shm.ShmReader``: decode a proxy's frames, detect gaps, report WriterDead."""

from __future__ import annotations

import struct
import subprocess
import uuid

import numpy as np
import pytest
from support.shm import buffer_name, require_shm

require_shm()

import zerobuffer  # noqa: E402

from pybrid.monitor.shm import ShmCarrierEnd, ShmChunk, ShmReader, ShmRunStart  # noqa: E402
from pybrid.monitor.shm_blocks import ShmBlock  # noqa: E402
from pybrid.proxy.taps.shm.ring import Ring  # noqa: E402
from pybrid.wire import shm_frames as F  # noqa: E402


def opening(run_id: str) -> list[F.Frame]:
    return [
        F.whole_frame(F.encode_json(F.RUN_START, F.RUN_WIDE, 1, 1,
                                    {"run_id": run_id, "carriers": ["/m"]})),
        F.whole_frame(F.encode_json(F.LAYOUT, 0, 1, 2, {"path": "/m", "probes": [0, 0],
                                                        "gains": [1, 1], "offsets": [0, 0]})),
    ]


def chunk(seq: int, number: int, raw: np.ndarray) -> F.Frame:
    data = raw.astype("<f4").tobytes()
    head = F.chunk_header(0, 1, 0, 0, raw.shape[0], raw.shape[1], 1, 2.0, 0.5)
    n = len(head) + len(data)
    return (head, seq, number, data, F.pad_length(n), n + F.pad_length(n))


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "library-read_frame"])
def test_events_gaps_and_values(reference):
    name = buffer_name()
    run_id = str(uuid.uuid4())
    with ShmReader(name, payload_size=1 << 16, reference=reference) as reader:
        ring = Ring(name)
        ring.set_metadata(F.metadata([{"index": 0, "path": "/m"}], "x"))
        raws = [np.full((3, 2), i, dtype="<f4") for i in range(4)]
        batch = [*opening(run_id), chunk(3, 0, raws[0]), chunk(4, 1, raws[1]),
                 chunk(7, 3, raws[3])]  # seq 5, 6 and chunk 2 missing
        batch.append(F.whole_frame(F.encode_json(F.CARRIER_END, 0, 1, 8,
                                                 {"state": "DONE", "path": "/m"})))
        assert ring.write_batch(batch)[0] == len(batch)
        assert reader.metadata is not None and reader.metadata["carriers"][0]["path"] == "/m"
        events = []
        for event in reader.events(timeout=0.2):
            if event is None:
                break
            if isinstance(event, ShmChunk):
                events.append((event.chunk, event.values().copy(), event.carrier_path))
            else:
                events.append(event)
        assert isinstance(events[0], ShmRunStart) and events[0].run_id == run_id
        chunks = events[1:4]
        assert [c[0] for c in chunks] == [0, 1, 3]
        np.testing.assert_array_equal(chunks[2][1], raws[3] * 2.0 + 0.5)
        assert chunks[0][2] == "/m"
        end = events[4]
        assert isinstance(end, ShmCarrierEnd) and end.state == "DONE" and end.run_id == run_id
        assert reader.stats.gaps == 2 and reader.stats.chunk_gaps == 1
        assert reader.stats.chunks == 3
        ring.close()


def test_a_killed_writer_is_writer_dead_a_detached_one_is_not():
    name = buffer_name()
    with ShmReader(name, payload_size=1 << 16) as reader:
        ring = Ring(name)
        assert reader.read_frame(0.05) is None  # attached, nothing written: just a timeout
        ring.close()
        assert reader.read_frame(0.05) is None  # detached cleanly (writer PID 0): waits
        ring = Ring(name)
        dead = subprocess.Popen(["true"])
        dead.wait()
        struct.pack_into("<Q", ring._mm, 80, dead.pid)  # as if the proxy was SIGKILLed
        with pytest.raises(zerobuffer.WriterDeadException, match="died"):
            reader.read_frame(0.05)
        ring.close()


def test_a_closed_reader_leaves_nothing_in_dev_shm():
    import os

    name = buffer_name()
    files = [f"/dev/shm/sem.sem-w-{name}", f"/dev/shm/sem.sem-r-{name}", f"/dev/shm/{name}"]
    reader = ShmReader(name, payload_size=1 << 16)
    ring = Ring(name)  # a writer attached: it still holds the semaphores open
    assert all(os.path.exists(f) for f in files)
    reader.close()
    ring.close()
    assert [f for f in files if os.path.exists(f)] == []


def other_carrier_chunk(seq: int, number: int, raw: np.ndarray) -> F.Frame:
    data = raw.astype("<f4").tobytes()
    head = F.chunk_header(1, 1, 0, 0, raw.shape[0], raw.shape[1], 1, 2.0, 0.5)
    n = len(head) + len(data)
    return (head, seq, number, data, F.pad_length(n), n + F.pad_length(n))


STEPS = 400  # 96 bytes a frame: the 4 KiB ring wraps about ten times


def test_blocks_join_what_continues_and_match_the_chunks_one_by_one():
    """Chunks that continue each other come as one block; a lost chunk, a tap gap, another
    carrier, another size or the ring's wrap start a new one — and the rows, numbers and
    counts are those ``events`` gives chunk by chunk."""
    name = buffer_name()
    rng = np.random.default_rng(5)
    with ShmReader(name, payload_size=1 << 12) as reader:  # small: the ring wraps often
        ring = Ring(name)
        ring.set_metadata(F.metadata([{"index": 0, "path": "/m"}], "x"))
        expected: list[tuple[int, int, np.ndarray]] = []  # (carrier, chunk, values)
        frames: list[F.Frame] = list(opening("r"))
        seq, number, other = 3, 0, 0
        for step in range(STEPS):
            rows = 5 if step % 37 == 36 else 4  # now and then another size
            raw = rng.standard_normal((rows, 2)).astype("<f4")
            if step % 29 == 28:
                frames.append(other_carrier_chunk(seq, other, raw))
                expected.append((1, other, raw.astype(float) * 2.0 + 0.5))
                other += 1
            else:
                frames.append(chunk(seq, number, raw))
                expected.append((0, number, raw.astype(float) * 2.0 + 0.5))
                number += 2 if step % 17 == 16 else 1  # now and then a lost chunk
            seq += 2 if step % 23 == 22 else 1  # now and then a tap gap
        got: list[tuple[int, int, np.ndarray]] = []
        blocks = 0
        sent = 0
        events = reader.blocks(timeout=0.05)
        while sent < len(frames) or len(got) < len(expected):
            if sent < len(frames):
                sent += ring.write_batch(frames, sent)[0]
            for event in events:
                if event is None:
                    break
                if isinstance(event, ShmBlock):
                    blocks += 1
                    per = event.raw.shape[0] // event.chunks
                    for i in range(event.chunks):
                        got.append((event.carrier, event.chunk + i,
                                    event.raw[i * per:(i + 1) * per] * event.gain
                                    + event.offset))
                elif isinstance(event, ShmChunk):
                    got.append((event.carrier, event.chunk, event.values()))
        assert [(c, n) for c, n, _v in got] == [(c, n) for c, n, _v in expected]
        for (_c, _n, have), (_c2, _n2, want) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(have, want)
        assert 0 < blocks < len(expected) // 2  # joined, and split where they must be
        assert reader.stats.chunks == len(expected)
        assert reader.stats.gaps == sum(1 for s in range(STEPS) if s % 23 == 22)
        assert reader.stats.chunk_gaps == sum(1 for s in range(STEPS) if s % 17 == 16
                                              and s % 29 != 28)
        ring.close()

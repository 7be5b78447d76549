"""Our batched ZeroBuffer writer against the library's own Reader (same process, real shm)."""

from __future__ import annotations

import os

import pytest
from support.shm import buffer_name, require_shm

require_shm()

import zerobuffer  # noqa: E402

from pybrid.proxy.taps.shm.chunks import VECTOR_MIN, Chunks  # noqa: E402
from pybrid.proxy.taps.shm.ring import (  # noqa: E402
    BufferNotFound,
    FrameTooLargeException,
    ReaderDeadException,
    Ring,
    WriterAlreadyConnectedException,
    remove_orphan,
    segment_reader_pid,
)
from pybrid.wire import shm_frames as F  # noqa: E402


@pytest.fixture
def reader():
    name = buffer_name()
    r = zerobuffer.Reader(name, zerobuffer.BufferConfig(4096, 4096))
    yield name, r
    r.close()


def frames(n: int, size: int = 48) -> list[F.Frame]:
    return [F.whole_frame(bytes([i % 256]) * 16, bytes([i % 7]) * (size - 16))
            for i in range(n)]


def test_frames_wrap_around_and_the_library_reads_them_in_order(reader):
    name, r = reader
    ring = Ring(name)
    ring.set_metadata(b'{"format": "pybrid-shm"}')
    assert bytes(r.get_metadata()) == b'{"format": "pybrid-shm"}'
    sent = frames(300, 112)  # 128 bytes a frame in a 4096-byte ring: many wraps
    sent[5] = (bytes(48), 77, 9, b"x" * 16, 0, 64)  # a header the writer patches
    got = []
    i = 0
    while i < len(sent):
        k, _ = ring.write_batch(sent[i : i + 50])
        assert k > 0 or i - len(got) > 0
        i += k
        while len(got) < i:
            f = r.read_frame(timeout=1)
            assert f is not None
            got.append((f.sequence, bytes(f.data)))
            r.release_frame(f)
    assert [s for s, _ in got] == list(range(1, 301))
    assert [d for _, d in got] == [F.frame_bytes(f) for f in sent]
    ring.close()


def chunk_run(t: F.Template, seq0: int, srcs: list[bytes]) -> Chunks:
    item = Chunks(t, seq0)
    item.srcs.extend(srcs)
    item.chunks.extend(range(1000 + seq0, 1000 + seq0 + len(srcs)))
    return item


@pytest.mark.parametrize("per_run", [3, VECTOR_MIN, 50])  # one by one, and numpy blocks
@pytest.mark.parametrize(("body", "pad"), [(64, 0), (64, 8), (80, 4)])
def test_runs_of_chunks_are_read_by_the_library_in_order_across_wraps(reader, per_run, body,
                                                                      pad):
    """Frames of 128 bytes in the ring fill it exactly; of 144 leave wrap markers."""
    name, r = reader
    ring = Ring(name)
    ring.set_metadata(b"{}")
    head = bytes(range(48))
    n = body - pad  # sample bytes
    t = (None, head, head[:8], head[20:], 3, 3 + n, pad, 48 + n + pad)
    srcs = [bytes([k % 5]) * 3 + bytes((k + j) % 256 for j in range(n)) + bytes(5)
            for k in range(300)]
    got = []
    runs = [chunk_run(t, s, srcs[s - 1 : s - 1 + per_run]) for s in range(1, 301, per_run)]
    for item in runs:
        while item.left:
            k, nbytes = ring.write_chunks(item)
            assert nbytes == k * t[7]
            assert k or len(got) < ring.sequence - 1  # full only while frames are unread
            while len(got) < ring.sequence - 1:
                f = r.read_frame(timeout=1)
                assert f is not None
                got.append((f.sequence, bytes(f.data)))
                r.release_frame(f)
    assert r.read_frame(timeout=0.01) is None
    assert [s for s, _ in got] == list(range(1, 301))
    for k, (_, data) in enumerate(got, start=1):
        frame = (head, k, 1000 + k, srcs[k - 1][3 : 3 + n], pad, 48 + n + pad)
        assert data == F.frame_bytes(frame), k
    ring.close()


@pytest.mark.parametrize("per_run", [3, 50])  # one by one, and numpy blocks
def test_a_run_of_carriers_taking_turns_has_each_frames_own_header(reader, per_run):
    name, r = reader
    ring = Ring(name)
    ring.set_metadata(b"{}")
    heads = [bytes([c]) * 4 + bytes(range(4, 48)) for c in (1, 2, 3)]
    ts = [(None, h, h[:8], h[20:], 3, 67, 0, 112) for h in heads]  # 64 sample bytes
    srcs = [bytes(3) + bytes((k + j) % 256 for j in range(64)) + bytes(5) for k in range(120)]
    got = []
    for s in range(1, 121, per_run):
        item = chunk_run(ts[(s - 1) % 3], s, srcs[s - 1 : s - 1 + per_run])
        item.ts.extend(ts[(s - 1 + k) % 3] for k in range(len(item.srcs)))
        item.mixed = True
        while item.left:
            assert ring.write_chunks(item)[0] or len(got) < ring.sequence - 1
            while len(got) < ring.sequence - 1:
                f = r.read_frame(timeout=1)
                got.append(bytes(f.data))
                r.release_frame(f)
    assert len(got) == 120
    for k, data in enumerate(got, start=1):
        frame = (heads[(k - 1) % 3], k, 1000 + k, srcs[k - 1][3:67], 0, 112)
        assert data == F.frame_bytes(frame), k
    ring.close()


def test_a_run_waits_behind_frames_and_write_batch_stops_at_it(reader):
    name, _ = reader
    ring = Ring(name)
    t = (None, bytes(48), bytes(8), bytes(28), 0, 16, 0, 64)
    queue: list = [*frames(2), chunk_run(t, 3, [bytes(16)] * 3), *frames(1)]
    assert ring.write_batch(queue) == (2, 96)
    assert ring.write_chunks(queue[2]) == (3, 192) and queue[2].left == 0
    assert ring.write_batch(queue, 3) == (1, 48)
    assert ring.sequence == 7
    ring.close()


def test_a_full_ring_writes_nothing_more_until_space_returns(reader):
    name, r = reader
    ring = Ring(name)
    assert ring.write_batch(frames(100, 496)) == (8, 8 * 496)  # 8 x 512 bytes fill 4096
    assert ring.write_batch(frames(1, 496)) == (0, 0)
    assert not ring.wait_space(0.01)
    f = r.read_frame(timeout=1)
    r.release_frame(f)
    assert ring.wait_space(0.5)
    assert ring.write_batch(frames(1, 496))[0] == 1
    ring.close()


def test_errors_name_what_is_wrong(reader):
    name, _ = reader
    with pytest.raises(BufferNotFound):
        Ring(buffer_name())
    ring = Ring(name)
    with pytest.raises(FrameTooLargeException):
        ring.write_batch(frames(1, 8192))
    big = (None, bytes(48), bytes(8), bytes(28), 0, 8144, 0, 8192)
    with pytest.raises(FrameTooLargeException):
        ring.write_chunks(chunk_run(big, 1, [bytes(8144)]))
    ring.close()
    # a live writer of another process: one writer per buffer
    import mmap
    import struct

    import posix_ipc

    shm = posix_ipc.SharedMemory("/" + name)
    with mmap.mmap(shm.fd, 128) as mm:
        struct.pack_into("<Q", mm, 80, os.getppid())
        with pytest.raises(WriterAlreadyConnectedException, match="another writer"):
            Ring(name)
        struct.pack_into("<Q", mm, 80, 0)
    shm.close_fd()


def test_reader_close_is_reader_dead_and_an_orphan_is_removed():
    name = buffer_name()
    r = zerobuffer.Reader(name, zerobuffer.BufferConfig(4096, 4096))
    ring = Ring(name)
    pid = segment_reader_pid(name)
    assert pid == os.getpid() and ring.reader_alive()
    assert not remove_orphan(name, pid)  # its reader is alive: kept
    r.close()
    with pytest.raises(ReaderDeadException):
        ring.write_batch(frames(1))
    assert not ring.reader_alive()
    ring.close()
    assert segment_reader_pid(name) == 0  # the reader removed it on close

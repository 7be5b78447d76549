"""Our batched ZeroBuffer writer against the library's own Reader (same process, real shm)."""

from __future__ import annotations

import os

import pytest
from support.shm import buffer_name, require_shm

require_shm()

import zerobuffer  # noqa: E402

from pybrid.shm import frames as F  # noqa: E402
from pybrid.shm.ring import (  # noqa: E402
    BufferNotFound,
    FrameTooLargeException,
    ReaderDeadException,
    Ring,
    WriterAlreadyConnectedException,
    remove_orphan,
    segment_reader_pid,
)


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


def test_put_frames_are_invisible_until_publish_then_read_in_order_across_wraps(reader):
    name, r = reader
    ring = Ring(name)
    ring.set_metadata(b"{}")
    head = bytes(range(48))
    t = (None, head, head[:8], head[20:], 3, 3 + 64, 0, 112)  # 112 + 16: 128 bytes a frame
    src = bytes(3) + bytes(range(64, 128)) + bytes(5)
    assert ring.put(1, 7, src, t) and ring.pending == 1
    assert r.read_frame(timeout=0.05) is None  # not published: nothing to read
    got = []
    for seq in range(2, 301):
        if not ring.put(seq, seq + 6, src, t):
            assert ring.publish()[0] > 0
            while (f := r.read_frame(timeout=0.05)) is not None:
                got.append((f.sequence, bytes(f.data)))
                r.release_frame(f)
            assert ring.put(seq, seq + 6, src, t)
    n, nbytes = ring.publish()
    assert nbytes == n * 112
    while (f := r.read_frame(timeout=0.05)) is not None:
        got.append((f.sequence, bytes(f.data)))
        r.release_frame(f)
    assert [s for s, _ in got] == list(range(1, 301))
    for k, (_, data) in enumerate(got, start=1):
        frame = (head, k, k + 6, src[3:67], 0, 112)
        assert data == F.frame_bytes(frame)
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

"""The inline writer: non-blocking ring writes on the reactor thread, waits on task.Clock."""

from __future__ import annotations

from typing import Any

from support.shm import require_shm
from twisted.internet import task

require_shm()

from pybrid.proxy.taps.shm.chunks import Chunks  # noqa: E402
from pybrid.proxy.taps.shm.inline import FLUSH_DELAY, RETRY, InlineWriter  # noqa: E402
from pybrid.proxy.taps.shm.ring import BufferFullException, ReaderDeadException  # noqa: E402
from pybrid.wire import shm_frames as F  # noqa: E402


class FakeRing:
    def __init__(self) -> None:
        self.room = 10**9
        self.alive = True
        self.written: list[Any] = []
        self.calls = 0
        self.closed = False
        self.sequence = 1

    def write_chunks(self, item: Chunks) -> tuple[int, int]:
        self.calls += 1
        t = item.t
        k = min(self.room, item.left)
        self.room -= k
        for i in range(item.done, item.done + k):
            if item.mixed:
                t = item.ts[i]
            self.written.append((t[1], item.seq0 + i, item.chunks[i],
                                 item.srcs[i][t[4] : t[5]], t[6], t[7]))
        item.done += k
        self.sequence += k
        return k, k * t[7]

    def write_batch(self, frames: Any, start: int = 0) -> tuple[int, int]:
        self.calls += 1
        end = start
        while end < len(frames) and not isinstance(frames[end], Chunks):
            end += 1
        k = min(self.room, end - start)
        self.room -= k
        chosen = frames[start : start + k]
        self.written.extend(chosen)
        return k, sum(f[5] for f in chosen)

    def reader_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed = True


def rig(**kw: Any) -> tuple[InlineWriter, FakeRing, task.Clock, list[Any]]:
    clock = task.Clock()
    ring = FakeRing()
    reports: list[Any] = []
    kw.setdefault("flush_delay", 0)  # one flush per reactor pass: clock.advance(0)
    writer = InlineWriter(ring, lambda e, n: reports.append((e, n)), clock, **kw)
    return writer, ring, clock, reports


def frame(n: int) -> F.Frame:
    return F.whole_frame(bytes([n]) * 48)


def test_a_burst_is_written_in_one_batch_after_the_reactor_pass():
    writer, ring, clock, _ = rig()
    for n in range(100):
        assert writer.submit(frame(n))
    assert ring.calls == 0 and writer.queued == 100  # nothing written inside the burst
    clock.advance(0)
    assert ring.calls == 1 and len(ring.written) == 100 and writer.queued == 0
    assert writer.frames_written == 100 and writer.bytes_written == 100 * 48


def test_by_default_the_datagrams_of_several_passes_go_in_one_write_a_flush_delay_later():
    writer, ring, clock, _ = rig(flush_delay=FLUSH_DELAY)
    t = template()
    for seq in range(1, 31):  # three reactor passes of ten datagrams
        writer.put(seq, seq, bytes(100), t)
        if seq % 10 == 0:
            clock.advance(0)
    assert ring.calls == 0 and writer.queued == 30
    clock.advance(FLUSH_DELAY)
    assert ring.calls == 1 and [f[1] for f in ring.written] == list(range(1, 31))
    writer.put(31, 31, bytes(100), t)
    clock.advance(FLUSH_DELAY)
    assert ring.calls == 2 and writer.queued == 0 and not clock.getDelayedCalls()


def test_a_full_ring_is_retried_on_the_clock_then_buffer_full():
    writer, ring, clock, reports = rig(write_timeout=1.0)
    ring.room = 3
    for n in range(10):
        writer.submit(frame(n))
    clock.advance(0)
    assert len(ring.written) == 3 and writer.queued == 7 and not reports
    ring.room = 2
    clock.advance(RETRY)
    assert len(ring.written) == 5 and writer.queued == 5
    for _ in range(int(1.2 / RETRY)):
        clock.advance(RETRY)
    assert len(reports) == 1 and isinstance(reports[0][0], BufferFullException)
    assert writer.discard() == 5 and ring.closed  # the tap counts what was still queued
    assert not clock.getDelayedCalls()


def test_a_dead_reader_is_reported_while_waiting_and_when_idle():
    writer, ring, clock, reports = rig()
    ring.room = 0
    writer.submit(frame(1))
    clock.advance(0)
    ring.alive = False
    clock.advance(RETRY)
    assert isinstance(reports[-1][0], ReaderDeadException)
    idle, ring2, _, reports2 = rig()
    idle.check()
    assert not reports2
    ring2.alive = False
    idle.check()
    assert isinstance(reports2[-1][0], ReaderDeadException)


def test_the_bound_refuses_and_counts():
    writer, _, _, _ = rig(max_frames=2)
    assert writer.submit(frame(1)) and writer.submit(frame(2))
    assert not writer.submit(frame(3))
    assert writer.refused == 1


def template(length: int = 64) -> Any:
    return (None, bytes(48), bytes(8), bytes(28), 2, 2 + length - 48, 0, length)


def test_puts_are_two_appends_and_one_flush_writes_them_in_order():
    writer, ring, clock, _ = rig()
    t = template()
    for seq in (1, 2, 3):
        writer.put(seq, seq * 10, bytes(100), t)
    assert ring.written == [] and ring.calls == 0 and writer.queued == 3
    assert writer.queued_bytes == 3 * 64
    assert len(clock.getDelayedCalls()) == 1  # one flush for the burst
    clock.advance(0)
    assert [f[1:3] for f in ring.written] == [(1, 10), (2, 20), (3, 30)]
    assert ring.calls == 1  # one run of chunks, one write
    assert writer.frames_written == 3 and writer.queued == 0


def test_the_carriers_of_a_device_taking_turns_share_one_run_with_their_own_headers():
    writer, ring, clock, _ = rig()
    a = (None, bytes([1]) * 48, bytes([1]) * 8, bytes([1]) * 28, 2, 18, 0, 64)
    b = (None, bytes([2]) * 48, bytes([2]) * 8, bytes([2]) * 28, 2, 18, 0, 64)
    for seq in range(1, 11):
        writer.put(seq, seq, bytes(100), a if seq % 2 else b)
    clock.advance(0)
    assert ring.calls == 1  # one run, one write: not ten
    assert [f[0][0] for f in ring.written] == [1, 2] * 5
    assert [f[1] for f in ring.written] == list(range(1, 11))


def test_other_frames_keep_their_place_among_the_chunks():
    writer, ring, clock, _ = rig()
    t = template()
    writer.put(1, 1, bytes(100), t)
    writer.put(2, 2, bytes(100), t)
    writer.submit((bytes(48), 3, 0, b"", 0, 48))  # a frame in between
    writer.put(4, 4, bytes(100), t)
    writer.put(6, 6, bytes(100), t)  # a jump in the tap sequence: a new run
    writer.put(7, 7, bytes(100), template(80))  # another template: a new run
    clock.advance(0)
    assert [f[1] for f in ring.written] == [1, 2, 3, 4, 6, 7]
    assert [f[5] for f in ring.written] == [64, 64, 48, 64, 64, 80]


def test_a_full_ring_keeps_the_order_and_later_puts_open_a_new_run():
    writer, ring, clock, _ = rig()
    ring.room = 2
    t = template()
    for seq in range(1, 6):
        writer.put(seq, seq, bytes(100), t)
    clock.advance(0)
    assert len(ring.written) == 2 and writer.queued == 3
    writer.put(6, 6, bytes(100), t)  # while the ring is full: behind the rest
    ring.room = 10
    clock.advance(RETRY)
    assert [f[1] for f in ring.written] == [1, 2, 3, 4, 5, 6] and writer.queued == 0
    writer.put(7, 7, bytes(100), t)
    clock.advance(0)
    assert [f[1] for f in ring.written][-1] == 7


def test_what_waits_beyond_the_bound_is_dropped_at_the_next_flush_and_counted():
    writer, ring, clock, _ = rig(max_frames=4)
    ring.room = 1
    t = template()
    for seq in range(1, 9):
        writer.put(seq, seq, bytes(100), t)
    clock.advance(0)  # 1 written, 4 kept, 3 dropped
    assert len(ring.written) == 1 and writer.queued == 4 and writer.refused == 3
    writer.put(9, 9, bytes(100), t)  # its own run: numbered 9, not after the kept ones
    ring.room = 10
    clock.advance(RETRY)
    assert [f[1] for f in ring.written] == [1, 2, 3, 4, 5, 9]
    bytes_bound, ring2, clock2, _ = rig(max_bytes=3 * 64)
    ring2.room = 0
    for seq in range(1, 6):
        bytes_bound.put(seq, seq, bytes(100), t)
    bytes_bound.submit(frame(1))
    clock2.advance(0)
    assert bytes_bound.queued == 3 and bytes_bound.refused == 3


def test_discard_counts_what_was_not_written():
    writer, ring, clock, _ = rig()
    ring.room = 1
    t = template()
    writer.put(1, 1, bytes(100), t)
    writer.put(2, 2, bytes(100), t)
    writer.submit(frame(3))
    clock.advance(0)
    assert writer.discard() == 2
    assert writer.queued == 0 and ring.sequence == 2


def test_stop_writes_what_fits_then_discards():
    writer, ring, clock, _ = rig()
    ring.room = 2
    t = template()
    for seq in (1, 2, 3):
        writer.put(seq, seq, bytes(100), t)
    writer.stop()
    assert [f[1] for f in ring.written] == [1, 2] and ring.closed
    assert writer.queued == 0 and not clock.getDelayedCalls()


def test_a_ring_that_stays_behind_holds_no_more_than_the_bound():
    """Issue 24.5: written runs of chunks kept their datagrams until 4096 of them were cut from
    the queue, so a reader that stayed behind made the proxy hold far beyond ``max_bytes``."""
    writer, ring, clock, _ = rig(max_bytes=50 * 64)
    t = template()
    seq = 0
    peak = 0
    for _ in range(2000):  # each reactor pass reads 10 datagrams, the reader frees room for 9
        for _ in range(10):
            seq += 1
            writer.put(seq, seq, bytes(100), t)
        ring.room = 9
        clock.advance(RETRY)
        peak = max(peak, writer.held_bytes)
    assert writer.refused > 0 and writer.queued_bytes <= 50 * 64
    assert peak <= (50 + 10) * 100  # the bound, and one pass's datagrams before its flush

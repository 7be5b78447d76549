"""Writing the ring from the reactor thread without ever blocking: the ``inline`` writer.

Design note
-----------
:meth:`.ring.Ring.write_batch` and :meth:`.ring.Ring.write_chunks` never
wait: they write the frames that fit and say how many.  :class:`InlineWriter` uses them on the
reactor thread itself.  The feed's fast path calls :meth:`InlineWriter.put` once per chunk:
the datagram, its chunk number and template are appended to the open
:class:`~pybrid.proxy.taps.shm.chunks.Chunks` (three list appends; a template of another shape, a
jump in the tap sequence or another frame in between starts a new run; the templates of a
device's carriers, which take turns, share one run); :meth:`submit` queues
any other frame behind it.  The first frame after a flush schedules the next one
``flush_delay`` (:data:`FLUSH_DELAY`) seconds later, so all the datagrams the reactor read in
that time — over several passes at a high rate — are written at once: a run of chunks as one
numpy block, with one ring bookkeeping update, one atomic operation and one wake-up of the
reader (``flush_delay=0``: once per reactor pass, which at 30 000 datagrams/s meant a few
datagrams per flush).  When the ring is full, the frames stay queued and the flush is
retried every :data:`RETRY` seconds of the injected clock; what waits beyond ``max_frames``
or ``max_bytes`` (:data:`MAX_FRAMES`, :data:`MAX_BYTES`) is dropped at the next flush and
counted (``refused``); a written datagram is let go at once, so what the writer holds stays
within the bound while a reader stays behind.  The reader dead, or
no space for ``write_timeout`` seconds, fails the writer exactly as the writer thread would
(``report(error, lost)``).  No thread, no lock and no GIL hand-off per frame: the cheapest
way from the hot path into shared memory.  The writer thread (:mod:`pybrid.proxy.taps.shm.writer`)
remains for a ring whose writes should not share the reactor's core time
(``--shm-writer thread``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybrid.proxy.taps.shm.chunks import Chunks
from pybrid.proxy.taps.shm.ring import BufferFullException, ReaderDeadException
from pybrid.proxy.taps.shm.writer import RingWriter
from pybrid.wire.shm_frames import Frame, Template

#: Seconds between retries while the ring is full.
RETRY = 0.002
#: Seconds from the first frame after a flush to the next flush (a reader sees frames this late).
FLUSH_DELAY = 0.002
#: What may wait for ring space by default (the ring is the buffer; this only evens out bursts).
MAX_FRAMES = 16384
MAX_BYTES = 16 << 20


class InlineWriter(RingWriter):
    """Writes one :class:`~.ring.Ring` from the reactor thread; see the note."""

    FULL = "frames waiting for ring space exceed the bound"

    def __init__(self, ring: Any, report: Callable[[BaseException, int], None], clock: Any, *,
                 write_timeout: float = 5.0, max_frames: int = MAX_FRAMES,
                 max_bytes: int = MAX_BYTES, name: str = "shm",
                 flush_delay: float = FLUSH_DELAY) -> None:
        super().__init__(ring, report, write_timeout=write_timeout, max_frames=max_frames,
                         max_bytes=max_bytes, name=name)
        self.clock = clock
        self.flush_delay = flush_delay
        #: Frames and runs of chunks not yet (wholly) written are ``_queue[_head:]``.
        self._queue: list[Frame | Chunks] = []
        self._head = 0
        #: The open run of chunks: its template, the next tap sequence, its two lists.
        self._t: Any = None
        self._next = 0
        self._srcs: list[bytes] = []
        self._chunks: list[int] = []
        self._ts: list[Template] = []
        self._item: Chunks | None = None
        self._call: Any = None
        self._full_since: float | None = None
        self._stopped = False

    def start(self) -> None:
        pass

    @property
    def queued(self) -> int:
        """Frames waiting to be written."""
        return sum(item.left if isinstance(item, Chunks) else 1
                   for item in self._queue[self._head :])

    @property
    def queued_bytes(self) -> int:
        return sum(item.left * item.t[7] if isinstance(item, Chunks) else item[5]
                   for item in self._queue[self._head :])

    @property
    def held_bytes(self) -> int:
        """Bytes of the datagrams the writer still references (written ones included)."""
        return sum(sum(map(len, item.srcs)) if isinstance(item, Chunks) else item[5]
                   for item in self._queue)

    def put(self, seq: int, chunk: int, src: bytes, t: Template) -> None:
        """One CHUNK frame from the feed's fast path (the hot path: three appends)."""
        if t is not self._t or seq != self._next:
            self._switch(t, seq)
        self._next = seq + 1
        self._srcs.append(src)
        self._chunks.append(chunk)
        self._ts.append(t)

    def _switch(self, t: Template, seq: int) -> None:
        """Another template, or a jump in the tap sequence: a template of the open run's
        shape joins it (the carriers of a device take turns), anything else opens a run."""
        cur, item = self._t, self._item
        if (cur is not None and item is not None and seq == self._next and t[7] == cur[7]
                and t[4] == cur[4] and t[5] == cur[5]):
            item.mixed = True
            self._t = t
            return
        self._open(t, seq)

    def _open(self, t: Template, seq: int) -> None:
        item = self._item = Chunks(t, seq)
        self._t = t
        self._srcs = item.srcs
        self._chunks = item.chunks
        self._ts = item.ts
        self._queue.append(item)
        if self._call is None:
            self._call = self.clock.callLater(self.flush_delay, self.flush)

    def submit(self, frame: Frame) -> bool:
        """Queue one frame (behind the chunks put so far)."""
        self._t = None  # what is put next comes after this frame
        if len(self._queue) - self._head >= self.max_frames:
            self._refuse(1)
            return False
        self._queue.append(frame)
        if self._call is None:
            self._call = self.clock.callLater(self.flush_delay, self.flush)
        return True

    def flush(self) -> None:
        """Write what fits (a reactor callback: reports failures, never raises)."""
        self._call = None
        if self._stopped:
            return
        try:
            if self._write():
                self._full_since = None
            if self._head == len(self._queue):
                self._queue.clear()
                self._head = 0
                self._t = None
                return
            self._bound()
            self._wait()
        except Exception as e:
            self._fail(e)

    def _write(self) -> int:
        """Write the queue's frames in order until the ring is full; how many were written."""
        queue = self._queue
        ring = self.ring
        written = 0
        while self._head < len(queue):
            item = queue[self._head]
            if isinstance(item, Chunks):
                if item.srcs is self._srcs:
                    self._t = None  # the open run: what is put next starts a new one
                k, nbytes = ring.write_chunks(item)
                done = item.done == len(item.srcs)
                if done:
                    self._head += 1
                if item.done:
                    item.release()  # written datagrams go now, not when the queue is cut
            else:
                k, nbytes = ring.write_batch(queue, self._head)
                self._head += k
                done = k > 0
            if k:
                written += k
                self.frames_written += k
                self.bytes_written += nbytes
                self.batches += 1
            if not done:
                break
        if self._head > 4096:  # drop the written part now and then, not per flush
            del queue[: self._head]
            self._head = 0
        return written

    def _bound(self) -> None:
        """Drop (and count) what waits beyond ``max_frames`` / ``max_bytes``: the newest."""
        queue = self._queue
        frames = self.max_frames
        room = self.max_bytes
        for i in range(self._head, len(queue)):
            item = queue[i]
            if isinstance(item, Chunks):
                size = item.t[7]
                keep = min(item.left, frames, room // size)
                lost = item.truncate(keep)
                frames -= keep
                room -= keep * size
                cut = i + 1  # the run stays (write_chunks passes an empty one)
            elif frames and item[5] <= room:
                frames -= 1
                room -= item[5]
                continue
            else:
                lost = 1
                cut = i
            if lost:
                dropped = queue[cut:]
                del queue[cut:]
                self._refuse(lost + sum(x.left if isinstance(x, Chunks) else 1
                                        for x in dropped))
                self._t = None  # what is put next starts a new run, with its own numbers
                return

    def _wait(self) -> None:
        now = self.clock.seconds()
        if self._full_since is None:
            self._full_since = now
        elif now - self._full_since >= self.write_timeout:
            if not self.ring.reader_alive():
                raise ReaderDeadException("the reader process is gone")
            raise BufferFullException(
                f"the reader returned no space for {self.write_timeout:g} s")
        elif not self.ring.reader_alive():
            raise ReaderDeadException("the reader process is gone")
        self._call = self.clock.callLater(RETRY, self.flush)

    def _fail(self, error: BaseException) -> None:
        self._stopped = True
        try:
            self.ring.close()
        except Exception:
            self.log.failure("closing the shared-memory ring failed")
        self.report(error, 0)  # the tap counts and discards what is queued

    def discard(self) -> int:
        """Forget every frame not written; their count."""
        n = self.queued
        self._queue.clear()
        self._head = 0
        self._t = None
        return n

    def check(self) -> None:
        """Idle liveness check (the tap's poll): a reader that died while nothing was written."""
        if not self._stopped and self._head == len(self._queue) and not self.ring.reader_alive():
            self._fail(ReaderDeadException("the reader process is gone"))

    def stop(self) -> None:
        if self._stopped:
            self.discard()
            return
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        try:  # what fits still goes to the reader
            self._write()
        except Exception:
            pass  # the reader is gone: discard counts them
        self.discard()
        try:
            self.ring.close()
        except Exception:
            self.log.failure("closing the shared-memory ring failed")

"""Writing the ring from the reactor thread without ever blocking: the ``inline`` writer.

Design note
-----------
:meth:`pybrid.shm.ring.Ring.write_batch` never waits: it writes the frames that fit and says
how many.  :class:`InlineWriter` uses that on the reactor thread itself.  ``submit`` appends a
frame to a bounded queue and, for the first frame of a burst, schedules one flush with
``clock.callLater(0, …)`` — so all the datagrams the reactor read in one pass over its
sockets are written in one batch (one ring bookkeeping update, one atomic operation).  When
the ring is full, the frames stay queued and the flush is retried every :data:`RETRY` seconds
of the injected clock; the reader dead, or no space for ``write_timeout`` seconds, fails the
writer exactly as the writer thread would (``report(error, lost)``).  No thread, no lock and
no GIL hand-off per frame: the cheapest way from the hot path into shared memory.  The
writer thread (:mod:`pybrid.shm.writer`) remains for a ring whose writes should not share the
reactor's core time (``--shm-writer thread``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from pybrid.shm.frames import Frame, Template
from pybrid.shm.ring import BufferFullException, ReaderDeadException

#: Seconds between retries while the ring is full.
RETRY = 0.002


class InlineWriter:
    """Writes one :class:`~pybrid.shm.ring.Ring` from the reactor thread; see the note."""

    log = Logger()

    def __init__(self, ring: Any, report: Callable[[BaseException, int], None], clock: Any, *,
                 write_timeout: float = 5.0, max_frames: int = 65536,
                 max_bytes: int = 64 << 20, name: str = "shm") -> None:
        self.ring = ring
        self.report = report
        self.clock = clock
        self.write_timeout = write_timeout
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.name = name
        self.frames_written = 0
        self.bytes_written = 0
        self.batches = 0
        self.refused = 0
        self.queued_bytes = 0
        #: Frames not yet written are ``_queue[_head:]`` (a list consumed by index: the ring
        #: takes the frames in place, without copying a batch out of a queue).
        self._queue: list[Frame] = []
        self._head = 0
        self._call: Any = None
        self._full_since: float | None = None
        self._stopped = False

    def start(self) -> None:
        pass

    @property
    def queued(self) -> int:
        return len(self._queue) - self._head + self.ring.pending

    def put(self, seq: int, chunk: int, src: bytes, t: Template) -> None:
        """One CHUNK frame from the feed's fast path: copied into the ring at once when
        nothing waits and it fits (:meth:`~pybrid.shm.ring.Ring.put`; published by the next
        flush), else queued like any frame."""
        if self._head != len(self._queue) or not self.ring.put(seq, chunk, src, t):
            self.submit((t[1], seq, chunk, memoryview(src)[t[4] : t[5]], t[6], t[7]))
        elif self._call is None:
            self._call = self.clock.callLater(0, self.flush)

    def submit(self, frame: Frame) -> bool:
        size = frame[5]
        if (len(self._queue) - self._head >= self.max_frames
                or self.queued_bytes + size > self.max_bytes):
            self.refused += 1
            if self.refused == 1:
                self.log.warn("shm tap {name}: frames waiting for ring space exceed the bound; "
                              "frames are dropped and counted (logged once)", name=self.name)
            return False
        self.queued_bytes += size
        self._queue.append(frame)
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)
        return True

    def flush(self) -> None:
        """Write what fits (a reactor callback: reports failures, never raises)."""
        self._call = None
        if self._stopped:
            return
        queue = self._queue
        try:
            k, nbytes = self.ring.publish()  # the frames put straight into the ring
            if k:
                self.frames_written += k
                self.bytes_written += nbytes
                self.batches += 1
                self._full_since = None
            if self._head == len(queue):
                queue.clear()
                self._head = 0
                return
            k, nbytes = self.ring.write_batch(queue, self._head)
            if k:
                self._head += k
                self.frames_written += k
                self.bytes_written += nbytes
                self.queued_bytes -= nbytes
                self.batches += 1
                self._full_since = None
            if self._head == len(queue):
                queue.clear()
                self._head = 0
                return
            if self._head > 4096:  # drop the written part now and then, not per flush
                del queue[: self._head]
                self._head = 0
            self._wait()
        except Exception as e:
            self._fail(e)

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
        """Forget every frame not written (queued, or put but unpublished); their count."""
        ring = self.ring
        n = len(self._queue) - self._head + ring.pending
        ring.sequence -= ring.pending  # the reader never saw them: a re-attach continues here
        ring.pending = 0
        self._queue.clear()
        self._head = 0
        self.queued_bytes = 0
        return n

    def check(self) -> None:
        """Idle liveness check (the tap's poll): a reader that died while nothing was written."""
        if not self._stopped and not self.queued and not self.ring.reader_alive():
            self._fail(ReaderDeadException("the reader process is gone"))

    def stop(self) -> None:
        if self._stopped:
            self.discard()
            return
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        try:  # what was put into the ring already goes to the reader
            k, nbytes = self.ring.publish()
            self.frames_written += k
            self.bytes_written += nbytes
        except Exception:
            pass  # the reader is gone: discard counts them
        self.discard()
        try:
            self.ring.close()
        except Exception:
            self.log.failure("closing the shared-memory ring failed")

"""The bounded hand-off from the reactor thread to one ZeroBuffer writer thread.

Design note
-----------
The reactor thread must never wait on a semaphore, so each attached tap owns one
:class:`WriterThread`.  :meth:`WriterThread.submit` (reactor thread) appends a frame to a
``deque`` and wakes the thread only when it is idle, so under load a hand-off is one
``append`` and the thread drains whole batches (up to :data:`BATCH` frames) per pass, which
amortises the ring's bookkeeping and the thread switch.  The deque is bounded by frames and by
bytes; a frame that does not fit is refused (``submit`` returns False) and the tap counts it.

The thread writes with :meth:`pybrid.proxy.taps.shm.ring.Ring.write_batch`; when the ring is full it
waits on the reader's semaphore in short slices (checking that the reader is alive and that
it was not told to stop) for at most ``write_timeout`` seconds of wall time — a semaphore
wait is real time, not reactor time.  It ends on the first failure: ``BufferFullException``
(the reader did not return space in time), ``ReaderDeadException`` (the reader's PID is gone
or it closed the buffer) or any other error.  It then reports the frames of its batch it did
not write, closes the ring and reports ``(error, lost)`` once through ``report``, which the
owner passes in as ``reactor.callFromThread``-wrapped (so the tap's state changes on the
reactor thread, where it also counts and discards (:meth:`WriterThread.discard`) what is still
queued: frames submitted until then are never lost uncounted).  Counters are plain ints
written by one thread and read by the other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

from pybrid.proxy.taps.shm.ring import BufferFullException, ReaderDeadException
from pybrid.wire.shm_frames import Frame

#: Frames per batch handed to the ring.
BATCH = 512
#: Seconds between liveness checks while the ring is full or the thread is idle.
SLICE = 0.05



class RingLike(Protocol):
    sequence: int

    def write_batch(self, frames: Any, start: int = 0) -> tuple[int, int]: ...

    def wait_space(self, timeout: float) -> bool: ...

    def reader_alive(self) -> bool: ...

    def close(self) -> None: ...


class RingWriter:
    """What both writers (this thread's and :class:`~.inline.InlineWriter`) share: the ring,
    the failure report, the bounds of what may wait, the counts the tap folds into its own."""

    log = Logger()
    #: Why a frame is refused (the warning's words).
    FULL = "frames wait beyond the bound"

    def __init__(self, ring: Any, report: Callable[[BaseException, int], None], *,
                 write_timeout: float, max_frames: int, max_bytes: int, name: str) -> None:
        self.ring = ring
        self.report = report
        self.write_timeout = write_timeout
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.name = name
        self.frames_written = 0
        self.bytes_written = 0
        self.batches = 0
        #: Frames refused (waiting beyond the bounds).
        self.refused = 0

    def _refuse(self, n: int) -> None:
        """Count ``n`` refused frames; warn at the first."""
        first = not self.refused
        self.refused += n
        if first:
            self.log.warn("shm tap {name}: {why}; frames are dropped and counted (logged once)",
                          name=self.name, why=self.FULL)


class WriterThread(RingWriter):
    """Owns one :class:`~pybrid.proxy.taps.shm.ring.Ring` on its own thread; see the module note."""

    FULL = "the hand-off to the writer thread is full"

    def __init__(self, ring: RingLike, report: Callable[[BaseException, int], None], *,
                 write_timeout: float = 5.0, max_frames: int = 65536,
                 max_bytes: int = 64 << 20, name: str = "shm", batch: int = BATCH) -> None:
        super().__init__(ring, report, write_timeout=write_timeout, max_frames=max_frames,
                         max_bytes=max_bytes, name=name)
        self.ring: RingLike = ring
        self.batch = batch
        self.queued_bytes = 0
        self._queue: deque[Frame] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"pybrid-shm-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, frame: Frame) -> bool:
        """Hand one frame to the thread (reactor thread); False if the hand-off is full."""
        size = frame[5]
        if len(self._queue) >= self.max_frames or self.queued_bytes + size > self.max_bytes:
            self._refuse(1)
            return False
        self.queued_bytes += size
        self._queue.append(frame)
        if self._idle:
            self._idle = False
            self._wake.set()
        return True

    def stop(self) -> None:
        """Ask the thread to end (it closes the ring and reports nothing more)."""
        self._stop = True
        self._wake.set()

    def discard(self) -> int:
        """Drop the frames still queued (after the thread ended); return how many."""
        n = len(self._queue)
        self._queue.clear()
        self.queued_bytes = 0
        return n

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._loop()
        except BaseException as e:
            error = e
        lost = self._held  # the queue's frames are counted by the tap, on the reactor thread
        try:
            self.ring.close()
        except Exception:
            self.log.failure("closing the shared-memory ring failed")
        if error is not None and not self._stop:
            self.report(error, lost)

    _held = 0

    def _loop(self) -> None:
        queue = self._queue
        ring = self.ring
        idle_since = time.monotonic()
        while not self._stop:
            if not queue:
                self._idle = True
                if queue:  # a submit raced with going idle
                    self._idle = False
                    continue
                self._wake.wait(SLICE)
                self._wake.clear()
                self._idle = False
                now = time.monotonic()
                if now - idle_since > SLICE * 4:
                    idle_since = now
                    if not ring.reader_alive():
                        raise ReaderDeadException("the reader process is gone")
                continue
            n = min(len(queue), self.batch)
            pop = queue.popleft
            batch = [pop() for _ in range(n)]
            self._held = n
            self._write(batch)
            self._held = 0
            self.batches += 1
            idle_since = time.monotonic()

    def _write(self, batch: list[Frame]) -> None:
        ring = self.ring
        done = 0
        deadline = 0.0
        while done < len(batch):
            k, nbytes = ring.write_batch(batch, done)
            if k:
                done += k
                self.frames_written += k
                self.bytes_written += nbytes
                self.queued_bytes -= nbytes
                self._held = len(batch) - done
                deadline = 0.0
                continue
            now = time.monotonic()
            if not deadline:
                deadline = now + self.write_timeout
            elif now >= deadline:
                if not ring.reader_alive():
                    raise ReaderDeadException("the reader process is gone")
                raise BufferFullException(
                    f"the reader returned no space for {self.write_timeout:g} s")
            if self._stop:
                return
            if not ring.wait_space(min(SLICE, deadline - now)) and not ring.reader_alive():
                raise ReaderDeadException("the reader process is gone")

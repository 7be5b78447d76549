"""One ``--shm-tap NAME``: attach to a reader's ZeroBuffer when it exists, detach on trouble.

Design note
-----------
:class:`ShmTap` is a small state machine on the reactor thread, driven by the injected clock:

* **waiting** — every ``poll_interval`` seconds it tries to connect (``connect(name,
  sequence)``, by default :class:`.ring.Ring`): no buffer yet (``BufferNotFound``)
  keeps waiting quietly; a buffer whose reader was killed (``ReaderDeadException`` while
  connecting) is removed (:func:`~.ring.remove_orphan`) so that a new reader can
  create it again; another writer on the name (``WriterAlreadyConnectedException``) is
  logged once as an error and retried.  After a ``BufferFull`` detach the same reader is only
  re-attached once it has returned at least half of the ring (it is reading again); the
  ZeroBuffer sequence then continues where the last connection left off, as the reader
  expects.
* **attached** — it wrote the metadata (once per buffer) and hands every frame to its
  :class:`~pybrid.proxy.taps.shm.writer.WriterThread`; a frame the hand-off refuses is counted
  (``dropped_queue``).  On attach it first hands over the current run's RUN_START and LAYOUT
  frames (:meth:`pybrid.proxy.taps.shm.feed.ShmFeed.replay`) so a reader joining mid-run can decode.
* a failure the writer thread reports (``BufferFull``, ``ReaderDead``, other) detaches it:
  one log line, a counter, the frames it held counted in ``dropped_lost``, back to waiting.

Frames produced while not attached are counted in ``dropped_detached``: nothing is dropped
silently.  Nothing here ever raises into the feed, so the client sessions and the other taps
never notice what one tap does.  :meth:`ShmTap.status` is a frozen record of all of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import task
from twisted.logger import Logger

from pybrid.proxy.taps.shm.inline import InlineWriter
from pybrid.proxy.taps.shm.ring import (
    BufferFullException,
    BufferNotFound,
    BufferNotReady,
    ReaderDeadException,
    Ring,
    WriterAlreadyConnectedException,
    remove_orphan,
    segment_reader_pid,
)
from pybrid.proxy.taps.shm.writer import WriterThread
from pybrid.wire import shm_frames as F

DEFAULT_POLL = 0.25
DEFAULT_WRITE_TIMEOUT = 5.0
#: Seconds a reader may take to set up its buffer before the tap warns (it retries quietly).
NOT_READY_WARN = 5.0


@attrs.frozen
class ShmTapStatus:
    """Counters of one shared-memory tap (status page and /metrics)."""

    name: str
    state: str
    reader_pid: int
    attaches: int
    detaches: int
    buffer_full: int
    reader_dead: int
    refused: int
    frames_written: int
    bytes_written: int
    dropped_detached: int
    dropped_queue: int
    dropped_lost: int
    queued: int
    last_error: str
    #: Chunks the feed skipped while the proxy was behind its intake (``--shm-yield``).
    dropped_yielded: int = 0

    @property
    def frames_dropped(self) -> int:
        return (self.dropped_detached + self.dropped_queue + self.dropped_lost
                + self.dropped_yielded)


def _thread_writer(ring: Any, report: Callable[[BaseException, int], None],
                   write_timeout: float, name: str) -> WriterThread:
    writer = WriterThread(ring, report, write_timeout=write_timeout, name=name)
    writer.start()
    return writer


def inline_writer(clock: Any) -> Callable[..., InlineWriter]:
    """A ``make_writer`` for :class:`~pybrid.proxy.taps.shm.inline.InlineWriter` on ``clock``."""

    def make(ring: Any, report: Callable[[BaseException, int], None], write_timeout: float,
             name: str) -> InlineWriter:
        return InlineWriter(ring, report, clock, write_timeout=write_timeout, name=name)

    return make


@attrs.define(eq=False)
class ShmTap:
    """Writes the feed's frames into the ZeroBuffer ``name``; see the module note.

    ``clock`` schedules the polls; ``call_from_thread`` brings the writer thread's report to
    the reactor thread (``reactor.callFromThread``); ``metadata()`` gives the buffer's
    metadata bytes and ``replay()`` the current run's opening frames."""

    name: str
    clock: Any
    call_from_thread: Callable[..., Any]
    metadata: Callable[[], bytes]
    replay: Callable[[], list[F.Frame]] = list
    poll_interval: float = DEFAULT_POLL
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    connect: Callable[..., Any] = Ring
    make_writer: Callable[..., Any] = _thread_writer
    state: str = "stopped"
    _writer: Any = None
    _loop: task.LoopingCall | None = None
    _reader_pid: int = 0
    #: After BufferFull: (reader pid, next ZeroBuffer sequence) of the reader we left.
    _left: tuple[int, int] | None = None
    _sequences: dict[int, int] = attrs.Factory(dict)
    _logged: set[str] = attrs.Factory(set)
    _counts: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(
        ("attaches", "detaches", "buffer_full", "reader_dead", "refused", "dropped_detached",
         "dropped_queue", "dropped_lost"), 0))
    _last_error: str = ""
    #: When the buffer was first seen half set up (None: not now).
    _not_ready_since: float | None = None
    _reactor_thread: int = 0
    #: Where the feed puts frames: the writer thread's ``submit`` while attached (a refused
    #: frame is counted there), else a counter of frames dropped while detached.
    sink: Callable[[F.Frame], Any] = attrs.field(init=False, default=None)
    #: Where the feed's fast path puts CHUNK frames ``(seq, chunk, datagram, template)``: the
    #: inline writer's ``put`` (straight into the ring), else as a frame through :attr:`sink`.
    put: Callable[..., Any] = attrs.field(init=False, default=None)
    #: Frames and bytes written by writer threads that have ended.
    _written_before_total: int = 0
    _bytes_before_total: int = 0

    log = Logger()

    def start(self) -> None:
        if self._loop is not None:
            return
        self.state = "waiting"
        self._reactor_thread = threading.get_ident()
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.clock
        self._loop.start(self.poll_interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        writer, self._writer = self._writer, None
        self.sink = self._drop
        self.put = self._drop_put
        if writer is not None:
            self._fold(writer)
            writer.stop()
        self.state = "stopped"

    # -- the hot path (reactor thread) ------------------------------------------------------

    def submit(self, frame: F.Frame) -> None:
        """Hand one frame on (what the feed calls through :attr:`sink`)."""
        self.sink(frame)

    def _drop(self, frame: F.Frame) -> None:
        self._counts["dropped_detached"] += 1

    def _drop_put(self, *frame: Any) -> None:
        self._counts["dropped_detached"] += 1

    def _put_frame(self, seq: int, chunk: int, src: bytes, t: F.Template) -> None:
        self.sink((t[1], seq, chunk, memoryview(src)[t[4] : t[5]], t[6], t[7]))

    def __attrs_post_init__(self) -> None:
        self.sink = self._drop
        self.put = self._drop_put

    # -- attaching --------------------------------------------------------------------------

    def poll(self) -> None:
        """One look for the buffer (LoopingCall body: logs and survives its exceptions)."""
        if self._writer is not None:
            check = getattr(self._writer, "check", None)
            if check is not None:  # the inline writer: is an idle reader still there?
                try:
                    check()
                except Exception:
                    self.log.failure("shm tap {name}: liveness check failed", name=self.name)
            return
        try:
            self._try_attach()
        except Exception:
            self.log.failure("shm tap {name}: attaching failed", name=self.name)

    def _try_attach(self) -> None:
        left = self._left
        sequence = 1
        try:
            ring = self.connect(self.name)
        except BufferNotFound:
            self._not_ready_since = None
            return
        except BufferNotReady as e:
            self._not_ready(e)
            return
        except WriterAlreadyConnectedException as e:
            self._counts["refused"] += 1
            self._last_error = str(e)
            self._once("refused", "shm tap {name}: cannot attach: {error} (one writer per "
                       "ZeroBuffer; is another pybrid-proxy using this name?)",
                       name=self.name, error=e, level="error")
            return
        except ReaderDeadException as e:
            self._orphan(e)
            return
        self._not_ready_since = None
        pid = ring.reader_pid
        if left is not None and left[0] == pid:
            if ring.free_bytes < ring.payload_size // 2:
                ring.close()  # the reader we left is still behind: not yet
                return
        sequence = self._sequences.get(pid, 1)
        ring.sequence = sequence
        self._left = None
        self._logged.discard("refused")
        self._logged.discard("not-ready")
        try:
            if not ring.metadata_written:
                ring.set_metadata(self.metadata())
        except Exception as e:
            ring.close()
            self._last_error = str(e)
            self._once("metadata", "shm tap {name}: cannot write metadata: {error}",
                       name=self.name, error=e, level="error")
            return
        self._reader_pid = pid
        self._writer = self.make_writer(ring, self._reported_from_thread, self.write_timeout,
                                        self.name)
        self.sink = self._writer.submit
        self.put = getattr(self._writer, "put", None) or self._put_frame
        self.state = "attached"
        self._counts["attaches"] += 1
        self.log.info("shm tap {name}: attached to the reader (pid {pid}, ring {size} bytes)",
                      name=self.name, pid=pid, size=ring.payload_size)
        for frame in self.replay():
            self.submit(frame)

    def _not_ready(self, error: Exception) -> None:
        """The reader is still creating its buffer: an expected race, retried quietly; a
        warning only if it stays half made for :data:`NOT_READY_WARN` seconds."""
        now = self.clock.seconds()
        if self._not_ready_since is None:
            self._not_ready_since = now
        self.log.debug("shm tap {name}: the reader is still setting up its buffer ({error})",
                       name=self.name, error=error)
        if now - self._not_ready_since >= NOT_READY_WARN:
            self._last_error = str(error)
            self._once("not-ready", "shm tap {name}: the buffer is still not set up after "
                       "{seconds:g} s ({error}); still waiting", name=self.name,
                       seconds=NOT_READY_WARN, error=error)

    def _orphan(self, error: Exception) -> None:
        """The buffer's reader is dead: remove its leftovers so a new reader can create it."""
        try:
            pid = segment_reader_pid(self.name)
            if pid and remove_orphan(self.name, pid):
                self.log.info("shm tap {name}: removed the buffer of dead reader pid {pid}",
                              name=self.name, pid=pid)
        except Exception as e:
            self._once("orphan", "shm tap {name}: cannot remove a dead reader's buffer: "
                       "{error}", name=self.name, error=e)

    # -- detaching --------------------------------------------------------------------------

    def _reported_from_thread(self, error: BaseException, lost: int) -> None:
        if threading.get_ident() == self._reactor_thread:  # the inline writer
            self.writer_failed(error, lost)
        else:
            self.call_from_thread(self.writer_failed, error, lost)

    def writer_failed(self, error: BaseException, lost: int) -> None:
        """The writer thread ended with ``error``, holding ``lost`` unwritten frames."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self.sink = self._drop
        self.put = self._drop_put
        lost += writer.discard()
        self._fold(writer)
        self._counts["detaches"] += 1
        self._counts["dropped_lost"] += lost
        self._last_error = f"{type(error).__name__}: {error}"
        pid = self._reader_pid
        self._sequences[pid] = writer.ring.sequence
        if isinstance(error, BufferFullException):
            self._counts["buffer_full"] += 1
            self._left = (pid, writer.ring.sequence)
            what = ("the reader (pid {pid}) did not read for {timeout:g} s (BufferFull): "
                    "detached; re-attaching when it reads again")
        elif isinstance(error, ReaderDeadException):
            self._counts["reader_dead"] += 1
            self._sequences.pop(pid, None)
            what = "the reader (pid {pid}) is gone (ReaderDead): detached; waiting for a reader"
            if remove_orphan(self.name, pid):
                what += "; removed its buffer"
        else:
            what = "writing failed ({error}): detached; retrying"
        self.state = "waiting"
        self.log.warn("shm tap {name}: " + what + " ({lost} frames not written)",
                      name=self.name, pid=pid, timeout=self.write_timeout, error=error,
                      lost=lost)

    def _fold(self, writer: Any) -> None:
        self._written_before_total += writer.frames_written
        self._bytes_before_total += writer.bytes_written
        self._counts["dropped_queue"] += writer.refused


    # -- reporting --------------------------------------------------------------------------

    def status(self) -> ShmTapStatus:
        writer = self._writer
        written = self._written_before_total + (writer.frames_written if writer else 0)
        nbytes = self._bytes_before_total + (writer.bytes_written if writer else 0)
        c = self._counts
        return ShmTapStatus(
            name=self.name, state=self.state,
            reader_pid=self._reader_pid if writer is not None else 0,
            attaches=c["attaches"], detaches=c["detaches"], buffer_full=c["buffer_full"],
            reader_dead=c["reader_dead"], refused=c["refused"], frames_written=written,
            bytes_written=nbytes, dropped_detached=c["dropped_detached"],
            dropped_queue=c["dropped_queue"] + (writer.refused if writer else 0),
            dropped_lost=c["dropped_lost"],
            queued=writer.queued if writer is not None else 0, last_error=self._last_error,
        )

    def _once(self, key: str, text: str, level: str = "warn", **fields: Any) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        getattr(self.log, level)(text + " (logged once)", **fields)

"""Read a proxy's ``--shm-tap`` from shared memory: per-chunk zero-copy numpy views.

Design note
-----------
:class:`ShmReader` creates and owns the ZeroBuffer ``name`` with the real library
(``zerobuffer.Reader``: the segment, its semaphores, its lock file, the reader PID) and then
reads the frames on a second mapping of the same segment with the same protocol, in batches:
wait on ``sem-w`` for each frame, follow wrap markers, check the ZeroBuffer sequence, and
return space to the writer (an atomic add to ``payload_free_bytes`` and a ``sem-r`` post per
frame) lazily, for up to :data:`RELEASE_EVERY` frames at once and always before waiting.  The
library's own ``read_frame`` does an msync of the whole segment per frame and tops out at
about 12 000 frames/s here; this path keeps up with the proxy.  ``reference=True`` reads with
``zerobuffer.Reader.read_frame`` instead (what the interop tests check ours against).

A chunk's ``raw`` array is a view into the ring: **valid until the next item is asked for**
(copy it — ``chunk.values()`` does — to keep it).  Gaps: the proxy numbers every frame it
produced (the tap sequence), so a jump is a frame the proxy could not write (``gaps``), and
``Run.chunk`` numbers per carrier tell lost device chunks (``chunk_gaps``).

The writer connecting, detaching (a proxy that left after BufferFull, or stopped) and
re-attaching are normal; the writer *process* disappearing without detaching (SIGKILL) raises
``zerobuffer.WriterDeadException`` naming it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

import attrs
import numpy as np

from pybrid.monitor.shm_blocks import (
    _READ_COUNT,
    _READ_POS,
    _U64,
    RELEASE_EVERY,
    BlockReads,
)
from pybrid.wire import shm_frames as F

_HEADER = F.HEADER.unpack_from
_FRAME = struct.Struct("<QQ")
_WRITER_PID = 80
_FREE = 40


class ShmChunk(NamedTuple):
    """One data message of the active run, as the proxy wrote it (a NamedTuple, not attrs:
    one is built per chunk on the reader's hot path, three times faster)."""

    run: int
    run_id: str
    carrier: int
    carrier_path: str
    chunk: int
    raw: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    probes: tuple[int, ...]
    end: bool
    seq: int

    def values(self) -> np.ndarray:
        """float64 ``(samples, channels)`` with gain and offset applied (a copy)."""
        return self.raw * self.gain + self.offset


@attrs.frozen
class ShmRunStart:
    run: int
    run_id: str  # the client's id
    carriers: tuple[str, ...]
    seq: int
    #: The whole RUN_START record: ``proxy_run_id``, ``sample_rate``, ``channels`` where known.
    record: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ShmCarrierEnd:
    run: int
    run_id: str
    carrier: int
    carrier_path: str
    state: str
    reason: str
    seq: int


ShmEvent = ShmChunk | ShmRunStart | ShmCarrierEnd


@attrs.define
class ReaderStats:
    frames: int = 0
    chunks: int = 0
    samples: int = 0
    #: Frames the proxy produced but could not write (tap-sequence jumps).
    gaps: int = 0
    #: Device chunks missing per carrier (``Run.chunk`` jumps).
    chunk_gaps: int = 0
    writer_attaches: int = 0


def _libc_trywait(name: str) -> tuple[Any, Any]:
    """``sem_trywait`` on a second handle of the named semaphore, called without releasing
    the GIL (ctypes.PyDLL): about 0.3 µs, where posix_ipc's ``acquire(0)`` takes several."""
    libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.sem_trywait.argtypes = [ctypes.c_void_p]
    libc.sem_trywait.restype = ctypes.c_int
    libc.sem_close.argtypes = [ctypes.c_void_p]
    handle = libc.sem_open(name.encode(), 0)
    if not handle or handle == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), f"sem_open {name} failed")
    return functools.partial(libc.sem_trywait, handle), functools.partial(libc.sem_close,
                                                                          handle)


def _atomic_add() -> Any:
    path = ctypes.util.find_library("atomic") or "libatomic.so.1"
    fn = getattr(ctypes.CDLL(path), "__atomic_fetch_add_8")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
    fn.restype = ctypes.c_uint64
    return fn


class ShmReader(BlockReads):
    """The reader end of a proxy's shared-memory tap; see the module note."""

    _chunk_type = ShmChunk  # what :meth:`blocks` joins

    def __init__(self, name: str, *, payload_size: int = 64 << 20, metadata_size: int = 4096,
                 reference: bool = False) -> None:
        import posix_ipc
        import zerobuffer

        self._zb_mod = zerobuffer
        self.name = name
        self.reference = reference
        self.stats = ReaderStats()
        self._zb = zerobuffer.Reader(name, zerobuffer.BufferConfig(metadata_size, payload_size))
        shm = posix_ipc.SharedMemory("/" + name.lstrip("/"))
        try:
            self._mm = mmap.mmap(shm.fd, shm.size,  # faulted in now, not per frame
                                 flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        finally:
            shm.close_fd()
        head = struct.unpack_from("<I4B11Q", self._mm, 0)
        self._size = head[8]
        self._base = 128 + head[5]
        self._sem_w = posix_ipc.Semaphore(f"/sem-w-{name}")
        self._sem_r = posix_ipc.Semaphore(f"/sem-r-{name}")
        self._busy = posix_ipc.BusyError
        self._interrupted = posix_ipc.SignalError
        self._trywait, self._sem_close = _libc_trywait(f"/sem-w-{name}")
        self._cbuf = (ctypes.c_char * len(self._mm)).from_buffer(self._mm)
        self._free_addr = ctypes.addressof(self._cbuf) + _FREE
        self._add = _atomic_add()
        self._expected = 1
        self._unreleased = 0
        self._unreleased_frames = 0
        self._writer_pid = 0
        self._meta: dict[str, Any] | None = None
        self._last_seq = 0
        self._last_head: tuple[Any, ...] = ()
        self._last_size = 0
        self._runs: dict[int, str] = {}
        self._layouts: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_chunk: dict[tuple[int, int], int] = {}
        self._formats: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._pending: Any = None
        self.closed = False

    # -- metadata and writer ----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The proxy's metadata (format, version, proxy, carriers), once a proxy wrote it."""
        if self._meta is None and _U64.unpack_from(self._mm, 24)[0] > 0:
            self._meta = F.parse_metadata(self._zb.get_metadata())
        return self._meta

    def wait_writer(self, timeout: float) -> bool:
        """Wait (blocking) until a proxy is attached."""
        return bool(self._zb.is_writer_connected(int(timeout * 1000)))

    def _writer_gone(self) -> bool:
        """True if the writer we saw died without detaching (raises nothing)."""
        pid = _U64.unpack_from(self._mm, _WRITER_PID)[0]
        if pid:
            if pid != self._writer_pid:
                self._writer_pid = pid
                self.stats.writer_attaches += 1
            return not F.process_exists(pid)
        return False

    # -- frames -----------------------------------------------------------------------------

    def _release(self) -> None:
        if self._unreleased:
            self._add(self._free_addr, self._unreleased, 3)
            release = self._sem_r.release
            for _ in range(self._unreleased_frames):
                release()
            self._unreleased = self._unreleased_frames = 0

    def read_frame(self, timeout: float) -> memoryview | None:
        """The next frame's payload (valid until the next call), or None after ``timeout``
        or when a signal interrupted the wait."""
        if self.reference:
            return self._read_reference(timeout)
        if self._trywait():  # nothing signalled yet: return space, then wait
            self._release()
            try:
                self._sem_w.acquire(timeout)
            except self._interrupted:  # Ctrl-C / SIGTERM: the caller checks its stop flag
                return None
            except self._busy:
                if self._writer_gone():
                    raise self._zb_mod.WriterDeadException(
                        f"the proxy (writer pid {self._writer_pid}) died without detaching "
                        f"from {self.name!r}") from None
                return None
        return self._next_frame()

    def _next_frame(self) -> memoryview:
        """The frame whose signal was taken (see :meth:`read_frame`)."""
        mm = self._mm
        pos = _U64.unpack_from(mm, _READ_POS)[0]
        size, seq = _FRAME.unpack_from(mm, self._base + pos)
        count = 1
        if size == 0:  # wrap marker: the frame is at the start of the ring
            self._unreleased += self._size - pos
            pos = 0
            count = 2
            size, seq = _FRAME.unpack_from(mm, self._base)
        if seq != self._expected:
            raise self._zb_mod.SequenceError(self._expected, seq)
        self._expected = seq + 1
        self._last_size = size
        total = 16 + size
        at = self._base + pos + 16
        new = pos + total
        _U64.pack_into(mm, _READ_POS, new - self._size if new >= self._size else new)
        _U64.pack_into(mm, _READ_COUNT, _U64.unpack_from(mm, _READ_COUNT)[0] + count)
        self._unreleased += total
        self._unreleased_frames += 1
        if self._unreleased_frames >= RELEASE_EVERY:
            view = bytes(mm[at : at + size])  # released right away: hand out a copy
            self._release()
            return memoryview(view)
        return memoryview(mm)[at : at + size]

    def _read_reference(self, timeout: float) -> memoryview | None:
        if self._pending is not None:
            self._zb.release_frame(self._pending)
            self._pending = None
        try:
            frame = self._zb.read_frame(timeout)
        except self._interrupted:
            return None
        if frame is None:
            return None
        self._pending = frame
        return memoryview(bytes(frame.data))

    def events(self, timeout: float = 1.0) -> Iterator[ShmEvent | None]:
        """Decoded frames; ``None`` when ``timeout`` passed without one (so callers can
        report and stop).  Raises ``WriterDeadException`` when the proxy died."""
        while not self.closed:
            try:
                frame = self.read_frame(timeout)
            except self._zb_mod.WriterDeadException:
                if self.reference and not self._writer_gone():
                    continue  # the library reports a writer that detached cleanly as dead
                raise
            if frame is None:
                yield None
                continue
            event = self.decode(frame)
            if event is not None:
                yield event

    def decode(self, frame: memoryview) -> ShmEvent | None:
        if len(frame) < F.HEADER_SIZE:
            raise F.FrameFormatError(f"frame of {len(frame)} bytes is shorter than the header")
        (kind, flags, carrier, run, seq, chunk, samples, channels, dtype, gain,
         offset) = _HEADER(frame)
        stats = self.stats
        stats.frames += 1
        if seq > self._last_seq + 1 and self._last_seq:
            stats.gaps += seq - self._last_seq - 1
        if seq > self._last_seq:
            self._last_seq = seq
        if kind == F.CHUNK:
            self._last_head = (kind, flags, carrier, run, seq, chunk, samples, channels, dtype,
                               gain, offset)
            key = (run, carrier, flags, channels, dtype, gain, offset)
            known = self._formats.get(key)
            if known is None:
                known = self._format(key)
            dt, g, o, path, probes = known
            n = samples * channels
            if F.HEADER_SIZE + n * dt.itemsize > len(frame):
                raise F.FrameFormatError(f"chunk frame of {len(frame)} bytes is too short")
            raw = np.ndarray((samples, channels), dt, frame, F.HEADER_SIZE)  # a view
            end = bool(flags & F.FLAG_END_MESSAGE)
            if not end:
                ckey = (run, carrier)
                expected = self._next_chunk.get(ckey, 0)
                if chunk > expected:
                    stats.chunk_gaps += chunk - expected
                if chunk >= expected:
                    self._next_chunk[ckey] = chunk + 1
                stats.chunks += 1
                stats.samples += samples
            return ShmChunk(run, self._runs.get(run, ""), carrier, path, chunk, raw, g, o,
                            probes, end, seq)
        body = F.json_body(frame)
        if kind == F.RUN_START:
            self._runs[run] = body["run_id"]
            return ShmRunStart(run, body["run_id"], tuple(body.get("carriers", ())), seq, body)
        if kind == F.LAYOUT:
            self._layouts[(run, carrier)] = body
            self._formats.clear()
            return None
        if kind == F.CARRIER_END:
            return ShmCarrierEnd(run, self._runs.get(run, ""), carrier, body.get("path", ""),
                                 F.END_STATE_NAMES.get(flags, body.get("state", "")),
                                 body.get("reason", ""), seq)
        return None

    def _format(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """dtype, gains, offsets, path and probes of chunks with header fields ``key``."""
        run, carrier, flags, channels, dtype, gain, offset = key
        name = F.DTYPE_CODES.get(dtype)
        if name is None:
            raise F.FrameFormatError(f"unknown dtype code {dtype}")
        layout = self._layouts.get((run, carrier), {})
        if flags & F.FLAG_PER_CHANNEL and layout:
            g = np.asarray(layout["gains"], dtype=float)
            o = np.asarray(layout["offsets"], dtype=float)
        else:
            g = np.full(channels, gain)
            o = np.full(channels, offset)
        g.flags.writeable = o.flags.writeable = False
        known = (np.dtype(name), g, o, layout.get("path", ""), tuple(layout.get("probes", ())))
        if len(self._formats) > 256:
            self._formats.clear()
        self._formats[key] = known
        return known

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pending is not None:
            self._zb.release_frame(self._pending)
            self._pending = None
        self._release()
        for sem in (self._sem_w, self._sem_r):
            sem.close()
        self._sem_close()
        del self._cbuf
        try:
            self._mm.close()
        except BufferError:  # a chunk view is still alive: the mapping goes when it does
            pass
        self._zb.close()
        # zerobuffer's Reader.close closes its semaphores before it unlinks them, so the
        # unlink does nothing and each reader left two files in /dev/shm: the reader owns them
        import posix_ipc

        for sem in (f"/sem-w-{self.name}", f"/sem-r-{self.name}"):
            try:
                posix_ipc.unlink_semaphore(sem)
            except posix_ipc.ExistentialError:
                pass

    def __enter__(self) -> ShmReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


"""A writer of the ZeroBuffer shared-memory layout (v1), built for batches.

Design note
-----------
ZeroBuffer (the ``zerobuffer-ipc`` package, with C++ and C# implementations of the same
layout) is a one-writer/one-reader ring in POSIX shared memory, created and owned by the
reader.  The segment ``/NAME`` holds the OIEB (128 bytes: sizes, free bytes, read/write
positions and counts, writer and reader PIDs), the metadata block (u64 length + bytes,
written once) and the payload ring.  A frame is a 16-byte header (u64 payload size, u64
sequence number from 1) and its payload; a frame never straddles the end of the ring: the
writer leaves a wrap marker (a header of size 0) and continues at 0.  The writer signals the
reader's semaphore ``sem-w-NAME`` once per frame; the reader returns space by atomically
adding to ``payload_free_bytes`` and signalling ``sem-r-NAME``.

The reference Python writer (``zerobuffer.Writer``) does all of this per frame, with an msync
of the whole segment and several struct round trips per field: about 12 000 frames/s here.
:class:`Ring` writes the same bytes, in batches: it reads the positions once, copies as many
frames as fit, subtracts their space with one atomic operation, and then posts the semaphore
once per frame (what the reader expects).  There is no msync: both processes map the same
pages and the semaphore post is a full barrier.  Waiting for space (:meth:`Ring.wait_space`)
blocks on ``sem-r``: only the writer thread (:mod:`.writer`) calls it.  The inline
writer (:mod:`pybrid.proxy.taps.shm.inline`, reactor thread) uses the non-blocking calls, once per
reactor pass: :meth:`Ring.write_chunks` writes a run of the feed's fast-path chunks
(:class:`pybrid.proxy.taps.shm.chunks.Chunks`, with numpy when it is long enough) and
:meth:`Ring.write_batch` any other frames.

Errors are the library's own classes (``zerobuffer.BufferFullException`` …) so readers and
users see one vocabulary; the library has no "buffer not found" class, hence
:class:`BufferNotFound`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import struct
from collections.abc import Sequence

import posix_ipc
from zerobuffer import (
    BufferFullException,
    FrameTooLargeException,
    MetadataAlreadyWrittenException,
    ReaderDeadException,
    WriterAlreadyConnectedException,
    ZeroBufferException,
)

from pybrid.proxy.taps.shm.chunks import Chunks, write_rows
from pybrid.wire.shm_frames import SEQ_CHUNK, Frame, process_exists

__all__ = [
    "BufferFullException",
    "BufferNotFound",
    "BufferNotReady",
    "FrameTooLargeException",
    "ReaderDeadException",
    "Ring",
    "WriterAlreadyConnectedException",
    "ZeroBufferException",
    "process_exists",
    "remove_orphan",
    "segment_reader_pid",
]

OIEB_SIZE = 128
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_ZEROS = bytes(16)
FRAME_HEADER = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_OIEB = struct.Struct("<I4B11Q")
# OIEB field offsets
_META_SIZE, _META_FREE, _META_WRITTEN = 8, 16, 24
_PAYLOAD_SIZE, _FREE, _WRITE_POS, _READ_POS = 32, 40, 48, 56
_WRITTEN_COUNT, _READ_COUNT, _WRITER_PID, _READER_PID = 64, 72, 80, 88


def _fetch_sub() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    path = ctypes.util.find_library("atomic") or "libatomic.so.1"
    fn = getattr(ctypes.CDLL(path), "__atomic_fetch_sub_8")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
    fn.restype = ctypes.c_uint64
    return fn


_ATOMIC_SUB = _fetch_sub()
_RELEASE = 3


class BufferNotFound(ZeroBufferException):
    """No ZeroBuffer of that name exists (no reader has created it)."""


def _segment(name: str) -> str:
    return name if name.startswith("/") else "/" + name


class BufferNotReady(ZeroBufferException):
    """The segment exists but its reader has not finished setting it up (OIEB still zero)."""


class Ring:
    """The writer end of one ZeroBuffer: connect, metadata once, batched frames, close."""

    def __init__(self, name: str, *, sequence: int = 1) -> None:
        """Connect to the buffer ``name``; raises :class:`BufferNotFound`,
        ``WriterAlreadyConnectedException``, ``ReaderDeadException`` or
        ``ZeroBufferException`` (not a ZeroBuffer v1 segment)."""
        self.name = name
        self.closed = True
        try:
            shm = posix_ipc.SharedMemory(_segment(name))
        except posix_ipc.ExistentialError:
            raise BufferNotFound(f"no ZeroBuffer named {name!r} (no reader created it)") from None
        try:
            if shm.size < OIEB_SIZE:
                raise BufferNotReady(f"{name!r} is still being created (no OIEB yet)")
            # MAP_POPULATE: fault the whole ring in now, not one page per frame on the hot path
            self._mm = mmap.mmap(shm.fd, shm.size, flags=mmap.MAP_SHARED | _POPULATE)
        finally:
            shm.close_fd()
        mm = self._mm
        fields = _OIEB.unpack_from(mm, 0)
        if fields[0] == 0:  # the reader has sized the segment but not yet written the OIEB
            mm.close()
            raise BufferNotReady(f"{name!r} is still being created (OIEB not yet written)")
        if fields[0] != OIEB_SIZE or fields[1] != 1:
            mm.close()
            raise ZeroBufferException(f"{name!r} is not a ZeroBuffer v1 segment "
                                      f"(OIEB size {fields[0]}, version {fields[1]})")
        self.metadata_size = fields[5]
        self.payload_size = fields[8]
        self.reader_pid = fields[15]
        writer_pid = fields[14]
        if not process_exists(self.reader_pid):
            mm.close()
            raise ReaderDeadException(f"the reader of {name!r} (pid {self.reader_pid}) is gone")
        if writer_pid and writer_pid != os.getpid() and process_exists(writer_pid):
            mm.close()
            raise WriterAlreadyConnectedException(
                f"another writer (pid {writer_pid}) is connected to {name!r}")
        self.payload_base = OIEB_SIZE + self.metadata_size
        if self.payload_base + self.payload_size > len(mm):
            mm.close()
            raise ZeroBufferException(f"{name!r}: OIEB sizes exceed the segment")
        try:
            self._sem_w = posix_ipc.Semaphore(f"/sem-w-{name}")
            self._sem_r = posix_ipc.Semaphore(f"/sem-r-{name}")
        except posix_ipc.ExistentialError:
            mm.close()
            raise BufferNotFound(f"the semaphores of {name!r} are missing") from None
        _U64.pack_into(mm, _WRITER_PID, os.getpid())
        self._view = memoryview(mm)
        self._cbuf = (ctypes.c_char * len(mm)).from_buffer(mm)
        self._free_addr = ctypes.addressof(self._cbuf) + _FREE
        self.sequence = sequence
        self.closed = False

    # -- state read from the OIEB ---------------------------------------------------------

    def _u64(self, at: int) -> int:
        return int(_U64.unpack_from(self._mm, at)[0])

    @property
    def free_bytes(self) -> int:
        return self._u64(_FREE)

    def reader_alive(self) -> bool:
        """The reader is still attached: its PID is set (0 after a clean close) and alive."""
        pid = self._u64(_READER_PID)
        return pid == self.reader_pid and process_exists(pid)

    @property
    def metadata_written(self) -> bool:
        return self._u64(_META_WRITTEN) > 0

    def set_metadata(self, data: bytes) -> None:
        if self._u64(_META_WRITTEN) > 0:
            raise MetadataAlreadyWrittenException()
        if 8 + len(data) > self.metadata_size:
            raise ZeroBufferException(
                f"metadata of {len(data)} bytes does not fit the buffer's {self.metadata_size}")
        mm = self._mm
        _U64.pack_into(mm, OIEB_SIZE, len(data))
        mm[OIEB_SIZE + 8 : OIEB_SIZE + 8 + len(data)] = data
        _U64.pack_into(mm, _META_FREE, self.metadata_size - 8 - len(data))
        _U64.pack_into(mm, _META_WRITTEN, 8 + len(data))

    # -- frames ---------------------------------------------------------------------------

    def _publish(self, mm: mmap.mmap, pos: int, n: int, markers: int, used: int, seq: int) -> None:
        """Make ``n`` written frames (and ``markers`` wrap markers) visible to the reader."""
        _U64.pack_into(mm, _WRITE_POS, pos)
        _U64.pack_into(mm, _WRITTEN_COUNT, _U64.unpack_from(mm, _WRITTEN_COUNT)[0] + n + markers)
        _ATOMIC_SUB(self._free_addr, used, _RELEASE)
        self.sequence = seq
        release = self._sem_w.release
        for _ in range(n):
            release()

    def write_batch(self, frames: Sequence[Frame | Chunks], start: int = 0) -> tuple[int, int]:
        """Write the frames ``frames[start:]`` that fit now, up to the first
        :class:`~pybrid.proxy.taps.shm.chunks.Chunks`; return ``(count, bytes)``.

        A frame is :data:`pybrid.wire.shm_frames.Frame`.  Raises ``FrameTooLargeException`` for a
        frame the ring can never hold and ``ReaderDeadException`` when the reader closed.
        """
        mm = self._mm
        if _U64.unpack_from(mm, _READER_PID)[0] == 0:
            raise ReaderDeadException("the reader closed the buffer")
        size = self.payload_size
        base = self.payload_base
        free = _U64.unpack_from(mm, _FREE)[0]
        pos = _U64.unpack_from(mm, _WRITE_POS)[0]
        seq0 = seq = self.sequence
        pack = FRAME_HEADER.pack_into
        patch = SEQ_CHUNK.pack_into
        used = markers = nbytes = 0
        for i in range(start, len(frames)):
            frame = frames[i]
            if isinstance(frame, Chunks):  # a run of fast-path chunks: write_chunks
                break
            head, fseq, chunk, body, pad, length = frame
            total = 16 + length
            if total > size:
                raise FrameTooLargeException(f"a frame of {length} bytes exceeds the ring")
            to_end = size - pos
            if to_end < total:  # wrap: the rest of the ring is wasted, the frame goes to 0
                if free - used < to_end + total:
                    break
                if to_end >= 16:  # frames are multiples of 16 bytes: 0 means no marker
                    pack(mm, base + pos, 0, 0)
                    markers += 1
                used += to_end
                pos = 0
            elif free - used < total:
                break
            at = base + pos
            pack(mm, at, length, seq)
            at += 16
            end = at + len(head)
            mm[at:end] = head
            if fseq:
                patch(mm, at + 8, fseq, chunk)
            if body:
                at = end
                end += len(body)
                mm[at:end] = body
            if pad:
                mm[end : end + pad] = _ZEROS[:pad]
            pos += total
            used += total
            nbytes += length
            seq += 1
        n = seq - seq0
        if n == 0:
            return 0, 0
        self._publish(mm, pos, n, markers, used, seq)
        return n, nbytes

    def write_chunks(self, item: Chunks) -> tuple[int, int]:
        """Write the frames of ``item`` not yet written that fit now (advancing
        ``item.done``); return ``(count, bytes)``.  The frames go in blocks between wraps
        (:func:`pybrid.proxy.taps.shm.chunks.write_rows`); the bookkeeping is done once, as in
        :meth:`write_batch`, whose errors it raises."""
        mm = self._mm
        if _U64.unpack_from(mm, _READER_PID)[0] == 0:
            raise ReaderDeadException("the reader closed the buffer")
        length = item.t[7]
        total = 16 + length
        size = self.payload_size
        if total > size:
            raise FrameTooLargeException(f"a frame of {length} bytes exceeds the ring")
        base = self.payload_base
        free = _U64.unpack_from(mm, _FREE)[0]
        pos = _U64.unpack_from(mm, _WRITE_POS)[0]
        seq0 = seq = self.sequence
        done = item.done
        left = len(item.srcs) - done
        used = markers = 0
        while left:
            to_end = size - pos
            if to_end < total:  # wrap (see write_batch)
                if free - used < to_end + total:
                    break
                if to_end >= 16:
                    FRAME_HEADER.pack_into(mm, base + pos, 0, 0)
                    markers += 1
                used += to_end
                pos = 0
                continue
            m = min(left, to_end // total, (free - used) // total)
            if m == 0:
                break
            write_rows(mm, base + pos, item, done, m, seq)
            pos += m * total
            used += m * total
            done += m
            left -= m
            seq += m
        n = seq - seq0
        if n == 0:
            return 0, 0
        item.done = done
        self._publish(mm, pos, n, markers, used, seq)
        return n, n * length

    def wait_space(self, timeout: float) -> bool:
        """Block (writer thread only) until the reader returns space or ``timeout`` passes."""
        try:
            self._sem_r.acquire(timeout)
        except posix_ipc.BusyError:
            return False
        return True

    def close(self) -> None:
        """Detach: clear our writer PID (readers see a clean writer exit) and unmap."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._u64(_WRITER_PID) == os.getpid():
                _U64.pack_into(self._mm, _WRITER_PID, 0)
        except ValueError:
            pass
        for sem in (self._sem_w, self._sem_r):
            sem.close()
        del self._cbuf
        self._view.release()
        self._mm.close()


def remove_orphan(name: str, reader_pid: int) -> bool:
    """Unlink the segment and semaphores of ``name`` if its reader ``reader_pid`` is dead.

    A reader killed by a signal leaves them behind, and a new ``zerobuffer.Reader`` of the same
    name then cannot create its buffer (it only removes leftovers it finds a lock file for).
    Only a segment whose OIEB still names that dead reader is removed."""
    if process_exists(reader_pid):
        return False
    try:
        shm = posix_ipc.SharedMemory(_segment(name))
    except posix_ipc.ExistentialError:
        return False
    try:
        with mmap.mmap(shm.fd, OIEB_SIZE) as mm:
            if _U64.unpack_from(mm, _READER_PID)[0] != reader_pid:
                return False
    finally:
        shm.close_fd()
    shm.unlink()
    for sem in (f"/sem-w-{name}", f"/sem-r-{name}"):
        try:
            posix_ipc.unlink_semaphore(sem)
        except posix_ipc.ExistentialError:
            pass
    return True


def segment_reader_pid(name: str) -> int:
    """The reader PID the OIEB of segment ``name`` names (0: no such segment)."""
    try:
        shm = posix_ipc.SharedMemory(_segment(name))
    except posix_ipc.ExistentialError:
        return 0
    try:
        with mmap.mmap(shm.fd, OIEB_SIZE) as mm:
            return int(_U64.unpack_from(mm, _READER_PID)[0])
    finally:
        shm.close_fd()

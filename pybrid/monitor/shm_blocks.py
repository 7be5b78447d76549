"""Reading a run of chunk frames at once: :meth:`BlockReads.blocks` of
:class:`~pybrid.monitor.shm.ShmReader`.

Chunks that continue each other (same run, carrier and format, the next chunk and tap numbers,
one after another in the ring) are found with numpy on the frames' headers in place and
copied out as one :class:`ShmBlock`: per chunk one ``sem_trywait``, not a Python decode.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from pybrid.wire import shm_frames as F

#: Frames read before their space is returned to the writer (at most; always before waiting).
RELEASE_EVERY = 64
_U64 = struct.Struct("<Q")
_READ_POS, _READ_COUNT = 56, 72


class ShmBlock(NamedTuple):
    """``chunks`` consecutive chunks of one carrier (:meth:`ShmReader.blocks`): their rows
    one after another in ``raw``, a copy; ``chunk`` the first's number, ``seq`` the last's."""

    run: int
    run_id: str
    carrier: int
    carrier_path: str
    chunk: int
    raw: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    probes: tuple[int, ...]
    chunks: int
    seq: int


#: The ZeroBuffer frame header (size, sequence) and our chunk header, as numpy reads them
#: in place for a run of frames (:meth:`ShmReader._block`).
_BLOCK_HEAD = np.dtype({
    "names": ["size", "zseq", "kind", "flags", "carrier", "run", "seq", "chunk", "samples",
              "channels", "dtype", "gain", "offset"],
    "formats": ["<u8", "<u8", "u1", "u1", "<u2", "<u4", "<u8", "<u4", "<u4", "<u2", "u1",
                "<f8", "<f8"],
    "offsets": [0, 8, 16, 17, 18, 20, 24, 32, 36, 40, 42, 48, 56]})



class BlockReads:
    """The block-reading half of :class:`~pybrid.monitor.shm.ShmReader` (its ring state)."""

    _mm: Any
    _size: int
    _base: int
    _expected: int
    _unreleased: int
    _unreleased_frames: int
    _last_seq: int
    _last_head: tuple[Any, ...]
    _last_size: int
    _next_chunk: dict[tuple[int, int], int]
    _trywait: Any
    _zb_mod: Any
    reference: bool
    closed: bool
    stats: Any
    #: ``ShmChunk`` (set by the reader's class: it is defined beside it).
    _chunk_type: Any = None

    if TYPE_CHECKING:  # the reader's own methods
        def read_frame(self, timeout: float) -> memoryview | None: ...
        def _next_frame(self) -> memoryview: ...
        def _writer_gone(self) -> bool: ...
        def _release(self) -> None: ...
        def decode(self, frame: memoryview) -> Any: ...

    def blocks(self, timeout: float = 1.0, most: int = 512) -> Iterator[Any]:
        """Like :meth:`events`, but the chunks already signalled that continue each other
        (same run, carrier and format, the next chunk and tap numbers, one after another in
        the ring) come as one :class:`ShmBlock` (a copy), found with numpy on the frames'
        headers: per chunk one ``sem_trywait``, not a Python decode."""
        while not self.closed:
            try:
                frame = self.read_frame(timeout)
            except self._zb_mod.WriterDeadException:
                if self.reference and not self._writer_gone():
                    continue
                raise
            if frame is None:
                yield None
                continue
            more = 0
            if not self.reference:
                trywait = self._trywait
                while more < most and not trywait():
                    more += 1
            event = self.decode(frame)
            while more:
                block = self._block(event, more)
                if block is not None:
                    more -= block.chunks - 1  # its first chunk is ``event``, read already
                    yield block
                    event = None
                    continue
                if event is not None:
                    yield event
                event = self.decode(self._next_frame())
                more -= 1
            if event is not None:
                yield event

    def _block(self, event: Any, most: int) -> ShmBlock | None:
        """After chunk ``event`` (its frame read last), up to ``most`` signalled frames that
        continue it, as one block with ``event`` first; None if the next does not."""
        if type(event) is not self._chunk_type or event.end:
            return None
        mm = self._mm
        pos = _U64.unpack_from(mm, _READ_POS)[0]
        raw = event.raw
        size = self._last_size  # ``event``'s frame, padding included
        stride = 16 + size
        n = min(most, (self._size - pos) // stride)
        if n < 1:
            return None
        heads = np.ndarray((n,), _BLOCK_HEAD, mm, self._base + pos, (stride,))
        steps = np.arange(1, n + 1, dtype=np.uint64)
        run, carrier, first, seq = event.run, event.carrier, event.chunk, event.seq
        fmt = self._last_head  # the header of ``event``'s frame
        ok = ((heads["size"] == size) & (heads["zseq"] == self._expected - 1 + steps)
              & (heads["kind"] == F.CHUNK) & (heads["flags"] == fmt[1])
              & (heads["carrier"] == carrier) & (heads["run"] == run)
              & (heads["seq"] == seq + steps) & (heads["chunk"] == first + steps)
              & (heads["samples"] == fmt[6]) & (heads["channels"] == fmt[7])
              & (heads["dtype"] == fmt[8]) & (heads["gain"] == fmt[9])
              & (heads["offset"] == fmt[10]))
        k = n if ok.all() else int(ok.argmin())
        if k == 0:
            return None
        rows, channels = raw.shape
        values = np.empty((k + 1, rows, channels), raw.dtype)
        values[0] = raw
        values[1:] = np.ndarray((k, rows, channels), raw.dtype, mm,
                                self._base + pos + 16 + F.HEADER_SIZE,
                                (stride, channels * raw.itemsize, raw.itemsize))
        new = pos + k * stride
        _U64.pack_into(mm, _READ_POS, new - self._size if new >= self._size else new)
        _U64.pack_into(mm, _READ_COUNT, _U64.unpack_from(mm, _READ_COUNT)[0] + k)
        self._expected += k
        self._unreleased += k * stride
        self._unreleased_frames += k
        if self._unreleased_frames >= RELEASE_EVERY:
            self._release()
        stats = self.stats
        stats.frames += k
        stats.chunks += k
        stats.samples += k * rows
        self._last_seq = seq + k
        self._next_chunk[(run, carrier)] = first + k + 1
        return ShmBlock(run, event.run_id, carrier, event.carrier_path, first,
                        values.reshape((k + 1) * rows, channels), event.gain, event.offset,
                        event.probes, k + 1, seq + k)


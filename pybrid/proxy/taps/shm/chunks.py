"""Runs of fast-path CHUNK frames, written into the ring a block at a time.

Design note
-----------
The feed's fast path hands a writer one CHUNK frame at a time as ``(seq, chunk, datagram,
template)`` (:data:`~pybrid.wire.shm_frames.Template`).  Copying each into the ring on arrival costs
a handful of Python operations per frame; instead the inline writer appends the datagram and
the chunk number to a :class:`Chunks` — consecutive frames of one template, tap sequence
numbers ``seq0``, ``seq0 + 1`` … — and writes the whole run once per reactor pass.  For
:data:`VECTOR_MIN` frames or more, :func:`write_rows` does it with numpy: one ``join`` of the
datagrams (they all have the template's layout, hence one length), one structured view of
the ring's free space as ``m`` frame records (the ring's 16-byte frame header, our 48-byte
header, the samples, the padding), and one assignment per field — the ZeroBuffer and tap
sequence numbers as ``arange``, the chunk numbers from their list, the samples as one 2-D
copy.  Fewer frames are written one by one (a ``pack_into`` and a slice each), where the
numpy calls would cost more than they save.  Either way the bytes are exactly those of
:func:`pybrid.wire.shm_frames.frame_bytes`; the tests check the two against each other and
against the real library's reader.
"""

from __future__ import annotations

import operator
import struct
from typing import Any

import numpy as np

from pybrid.wire.shm_frames import Template

#: Frames from which a run is written with numpy rather than one by one.
VECTOR_MIN = 8
#: One CHUNK frame's first 64 bytes as the one-by-one path writes them: the ring's header
#: (size, sequence) and ours (bytes 0-7 of the template, tap sequence, chunk, bytes 20-47).
PUT = struct.Struct("<QQ8sQI28s")
_ZEROS = bytes(16)
_HEAD8 = operator.itemgetter(2)
_HEAD20 = operator.itemgetter(3)
_RECORDS: dict[tuple[bytes, int], tuple[np.dtype, int, np.ndarray]] = {}


class Chunks:
    """Consecutive CHUNK frames of one shape: ``srcs[i]`` is the datagram, ``chunks[i]`` the
    chunk number and ``ts[i]`` the template of the frame with tap sequence ``seq0 + i``;
    ``done`` of them are in the ring.  Unless ``mixed``, every frame has template ``t``;
    ``mixed`` runs (the carriers of a device take turns) have templates of ``t``'s shape:
    the same samples slice and frame length, other header bytes (carrier, gain …)."""

    __slots__ = ("chunks", "done", "mixed", "seq0", "srcs", "t", "ts")

    def __init__(self, t: Template, seq0: int) -> None:
        self.t = t
        self.seq0 = seq0
        self.srcs: list[bytes] = []
        self.chunks: list[int] = []
        self.ts: list[Template] = []
        self.mixed = False
        self.done = 0

    @property
    def left(self) -> int:
        return len(self.srcs) - self.done

    def release(self) -> None:
        """Forget the datagrams of the frames written (``left`` stays as it is)."""
        if self.done == len(self.srcs):
            self.srcs = []
            self.chunks = []
            self.ts = []
        else:
            del self.srcs[: self.done]
            del self.chunks[: self.done]
            del self.ts[: self.done]
        self.seq0 += self.done
        self.done = 0

    def truncate(self, keep: int) -> int:
        """Forget all but the first ``keep`` frames not yet written; how many were forgotten."""
        end = self.done + keep
        n = len(self.srcs) - end
        if n > 0:
            del self.srcs[end:]
            del self.chunks[end:]
            del self.ts[end:]
        return max(0, n)


def _record(t: Template) -> tuple[np.dtype, int, np.ndarray]:
    """The ring-frame record dtype of template ``t``, bytes 16-23 as an int, bytes 36-63."""
    key = (t[1], t[5] - t[4])
    known = _RECORDS.get(key)
    if known is None:
        n = t[5] - t[4]
        names = ["size", "rseq", "h0", "tseq", "chunk", "h1", "data"]
        formats: list[Any] = ["<u8", "<u8", "<u8", "<u8", "<u4", ("u1", 28), ("u1", n)]
        offsets = [0, 8, 16, 24, 32, 36, 64]
        if t[6]:
            names.append("pad")
            formats.append(("u1", t[6]))
            offsets.append(64 + n)
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                          "itemsize": 16 + t[7]})
        known = (dtype, int.from_bytes(t[2], "little"), np.frombuffer(t[3], np.uint8))
        if len(_RECORDS) >= 256:
            _RECORDS.clear()
        _RECORDS[key] = known
    return known


def write_rows(mm: Any, at: int, item: Chunks, i: int, m: int, rseq: int) -> None:
    """Write frames ``i`` … ``i + m - 1`` of ``item`` as ``m`` consecutive ring frames from
    byte ``at`` of ``mm``, the first with ZeroBuffer sequence ``rseq``."""
    t = item.t
    srcs = item.srcs
    start = t[4]
    end = t[5]
    if m >= VECTOR_MIN:
        width = len(srcs[i])
        block = b"".join(srcs[i : i + m])
        if len(block) == width * m:  # one layout, hence one length (else one by one)
            dtype, h0, h1 = _record(t)  # type: Any, Any, Any
            if item.mixed:  # each frame's own header bytes
                block_ts = item.ts[i : i + m]
                h0 = np.frombuffer(b"".join(map(_HEAD8, block_ts)), "<u8")
                h1 = np.frombuffer(b"".join(map(_HEAD20, block_ts)), np.uint8).reshape(m, 28)
            rec = np.ndarray((m,), dtype, mm, at)
            rec["size"] = t[7]
            rec["rseq"] = np.arange(rseq, rseq + m, dtype=np.uint64)
            rec["h0"] = h0
            seq = item.seq0 + i
            rec["tseq"] = np.arange(seq, seq + m, dtype=np.uint64)
            rec["chunk"] = item.chunks[i : i + m]
            rec["h1"] = h1
            rec["data"] = np.frombuffer(block, np.uint8).reshape(m, width)[:, start:end]
            if t[6]:
                rec["pad"] = 0
            return
    length = t[7]
    total = 16 + length
    head8 = t[2]
    head20 = t[3]
    pad = t[6]
    n = end - start
    chunks = item.chunks
    ts: list[Template] | None = item.ts if item.mixed else None
    seq = item.seq0 + i
    pack = PUT.pack_into
    for k in range(i, i + m):
        if ts is not None:
            head8 = ts[k][2]
            head20 = ts[k][3]
        pack(mm, at, length, rseq, head8, seq, chunks[k], head20)
        body = at + 64
        mm[body : body + n] = srcs[k][start:end]
        if pad:
            mm[body + n : body + n + pad] = _ZEROS[:pad]
        at += total
        rseq += 1
        seq += 1

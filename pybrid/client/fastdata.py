"""The client's fast path for run data frames: learned layouts, checked bytes, cached decoders.

Design note
-----------
Through a proxy (TCP data lane) every chunk of a run arrives as one framed Envelope laid out
byte for byte like the one before: only the message id, the chunk number and the samples
differ.  The full path parses each frame with protobuf, walks the message, and rebuilds the
gain/offset arrays from ``DaqData.channels`` — about 40 µs a chunk, too slow for 2 carriers ×
8 channels × 2 MHz.  :class:`DataFastPath` does what the proxy's router does with datagrams
(:mod:`pybrid.wire.layout`, whose :func:`~pybrid.wire.layout.layout_of`,
:class:`~pybrid.wire.layout.LayoutTable` and :func:`~pybrid.wire.layout.read_chunk` it
uses), and in addition caches the decoder:

1. **Learning.**  :meth:`DataFastPath.learn` gets a frame protobuf parsed.  If its head is
   consistent (``layout_of``) *and* the parsed message says the same as the bytes — the run
   id, the chunk number, the carrier path at the layout's places, and ``DaqData.data`` equal
   to the bytes at the layout's sample offset (so no later ``data`` field in the tail
   overrides them) — the layout is kept with the message's :class:`~pybrid.samples.ChunkFormat`
   (dtype, shape, gains, offsets: built once per channel layout, not per chunk).
2. **Matching.**  :meth:`DataFastPath.match` accepts a frame only when every byte except the
   ids, the chunk varint and the samples equals those of the learned frame (same length, same
   head, middle and tail — the tail holds ``type``, ``channels``, ``sample_count`` and
   ``channel_stride``, so the format is the same), the message id is ASCII, the chunk is a
   well-formed varint of the same length and the run id is ASCII.  Then protobuf would parse
   the frame to the same message with those variable parts, so the result is the same.

Anything else — another layout, a damaged or truncated frame, state changes, replies — returns
None and takes the full parse, which remains the reference (unit tests compare both paths on
damaged frames).  Layouts are few (per frame length, a handful each), bounded in number.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs

from pybrid import samples
from pybrid.proto import pb
from pybrid.wire.layout import DATA_TAG, Layout, LayoutTable, layout_of, read_chunk

#: Frame lengths with layouts remembered, and layouts per length (carriers, end messages …).
MAX_LENGTHS = 64
MAX_PER_LENGTH = 16


class FastData(NamedTuple):
    """One run data frame read by the fast path (a tuple: made per chunk, so cheap)."""

    run_id: str
    carrier_path: str
    chunk: int
    final: bool  # run_data_end_message
    format: samples.ChunkFormat
    payload: bytes
    samples_at: int  # byte offset of the samples in ``payload``


@attrs.frozen(eq=False)
class _Learned:
    layout: Layout
    path: str
    format: samples.ChunkFormat
    samples_at: int


@attrs.define(eq=False)
class DataFastPath:
    """Learns data frame layouts from parsed frames and reads matching frames without protobuf;
    see the module note."""

    learned: int = 0
    hits: int = 0
    _table: LayoutTable[_Learned] = attrs.field(
        factory=lambda: LayoutTable(MAX_LENGTHS, MAX_PER_LENGTH))

    def learn(self, env: pb.Envelope, payload: bytes) -> bool:
        """Remember the layout of ``payload`` (which protobuf parsed to ``env``) if it is a
        consistent data frame; True if it was learned."""
        lay = layout_of(payload)
        if lay is None or env.WhichOneof("kind") != "message_v1":
            return False
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        want = "run_data_message" if lay.tag == DATA_TAG else "run_data_end_message"
        if kind != want:
            return False
        body = getattr(msg, kind)
        try:
            fmt = samples.format_of(body.data)
        except samples.SampleFormatError:
            return False
        at = lay.samples_at
        if (
            payload[lay.run_at : lay.run_at + 36] != body.run.id.encode()
            or read_chunk(lay, payload) != body.run.chunk
            or lay.path != body.entity.path.encode()
            or payload[at : at + fmt.nbytes] != body.data.data
            or len(payload) - len(lay.tail) != at + fmt.nbytes
        ):
            return False
        self._table.learn(lay, _Learned(lay, lay.path.decode(), fmt, at))
        self.learned += 1
        return True

    def match(self, payload: bytes) -> FastData | None:
        """The frame read by a learned layout, or None (then the full parse decides)."""
        found = self._table.match(payload)
        if found is None:
            return None
        lay, k, chunk = found
        if chunk < 0:
            return None
        rid = payload[lay.run_at : lay.run_at + 36]
        if not rid.isascii():
            return None
        self.hits += 1
        return FastData(rid.decode("ascii"), k.path, chunk, lay.tag != DATA_TAG, k.format,
                        payload, k.samples_at)

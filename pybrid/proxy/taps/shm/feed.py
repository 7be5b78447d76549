"""Backend run messages → pybrid-shm frames, once for every shared-memory tap.

Design note
-----------
The router (:attr:`pybrid.proxy.data.router.RunRouter.feed`) hands the feed every run
message a backend sent, with the backend lane's index, in one of two ways.  A data datagram
its fast path matched to a registered run comes to :meth:`ShmFeed.chunk` with what the router
already knows — its run track, its :class:`~pybrid.wire.layout.Layout` and the chunk
number — so nothing is recognised twice: the feed looks up the frame template of that layout
in the current run (the 48-byte header with everything but the tap sequence and the chunk
number, and where the samples are) and each tap's ``put`` takes the datagram as it is (the
inline writer appends it to a run of chunks it writes once per reactor pass,
:mod:`pybrid.proxy.taps.shm.chunks`); no frame object is made.  Every other
message (those protobuf parsed: state changes, first datagrams of a layout, the TCP lane)
comes to :meth:`ShmFeed.emit`, as bytes, and is handled as follows.  The feed writes only
the *active* runs — those the router has registered for a session (``lookup`` returns their
carrier paths, None otherwise) — and turns each data message into one
:data:`~pybrid.wire.shm_frames.CHUNK` frame ``(header, samples, pad)`` whose ``samples`` is a
``memoryview`` slice of the datagram: no sample byte is copied before the ring.  The frame
is built once and handed to every tap.

Data datagrams are recognised like the router's fast path (:mod:`pybrid.wire.layout`): a
datagram's :class:`~pybrid.wire.layout.Layout` is learned once, from a datagram protobuf
parsed, together with what the tail of its DaqData says (dtype, channels, samples, gains,
offsets, probes); later datagrams of that layout are matched with ``startswith``/``endswith``
and read at known offsets.  Anything else is parsed with protobuf: state changes (a final
DONE/ERROR becomes a :data:`~pybrid.wire.shm_frames.CARRIER_END` frame for each carrier it applies
to), and data messages of other layouts (the TCP lane, other serializers).

The first message of a run yields a ``RUN_START`` frame, the first chunk of each carrier and
layout a ``LAYOUT`` frame.  The feed keeps those of the current run so that a tap attaching
mid-run can hand them to its reader first (:meth:`replay`).  Every frame carries the feed's
sequence number, so a reader sees every frame a tap could not write as a gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
from google.protobuf.message import DecodeError

from pybrid.proto import pb
from pybrid.wire import shm_frames as F
from pybrid.wire.layout import DATA_TAG, Layout, chunk_number, layout_of

#: Runs remembered (their numbers and layouts); the oldest is forgotten first.
RUNS_KEPT = 4
#: Chunks after which the fast path asks again whether its run is still active.
CHECK_EVERY = 256
#: protobuf final state -> the CARRIER_END flags byte (documented in pybrid.wire.shm_frames).
_FINAL = {pb.DONE: F.END_DONE, pb.ERROR: F.END_ERROR}


class FrameSink(Protocol):
    """A tap as the feed sees it: ``sink(frame)`` hands one frame on, ``put(seq, chunk,
    datagram, template)`` one CHUNK frame of the fast path (:meth:`ShmFeed.chunk`); neither
    raises."""

    sink: Callable[[F.Frame], Any]
    put: Callable[[int, int, bytes, F.Template], Any]


@attrs.frozen
class ChunkFormat:
    """What a data message's DaqData tail says: the chunk header fields and the LAYOUT body."""

    dtype_code: int
    channels: int
    samples: int
    gain: float
    offset: float
    flags: int
    body: dict[str, Any]


@attrs.frozen(eq=False)
class _Fast:
    """A learned data-datagram layout with what the fast path needs, precomputed."""

    head: bytes
    middle: bytes
    middle_at: int
    tail: bytes
    #: The bytes after the message id (the kind tag is among them) and where they start.
    between: bytes
    between_at: int
    run_at: int
    chunk_at: int
    chunk_len: int
    start: int
    end: int
    pad: int
    length: int
    path: str
    fmt: ChunkFormat

    @classmethod
    def of(cls, lay: Layout, fmt: ChunkFormat) -> _Fast:
        start = lay.middle_at + len(lay.middle)
        end = lay.length - len(lay.tail)
        n = F.HEADER_SIZE + end - start
        return cls(lay.head, lay.middle, lay.middle_at, lay.tail, lay.between,
                   max(0, lay.id_at + 36), lay.run_at, lay.chunk_at,
                   lay.chunk_len, start, end, F.pad_length(n), n + F.pad_length(n),
                   lay.path.decode(), fmt)


@attrs.define
class _Run:
    number: int
    run_id: str
    carriers: tuple[str, ...]
    replay: list[F.Frame] = attrs.Factory(list)
    layouts: set[tuple[int, int]] = attrs.Factory(set)


def chunk_format(daq: pb.DaqData, lane: int, path: str, carrier: int) -> ChunkFormat | None:
    """The :class:`ChunkFormat` of a DaqData, or None for a type this format cannot name."""
    from pybrid import samples as S

    try:
        dtype = S.numpy_dtype(daq.type)
    except S.SampleFormatError:
        return None
    code = F.CODE_OF_DTYPE.get(dtype.str)
    stride = daq.channel_stride or len(daq.channels) or 1
    if code is None or len(daq.data) != daq.sample_count * stride * dtype.itemsize:
        return None
    gain, offset = S.gains_offsets(daq, stride)
    uniform = bool((gain == gain[0]).all() and (offset == offset[0]).all())
    body = {"carrier": carrier, "lane": lane, "path": path, "dtype": dtype.str,
            "channels": stride, "samples": daq.sample_count,
            "gains": [float(g) for g in gain], "offsets": [float(o) for o in offset],
            "probes": [c.probe for c in daq.channels[:stride]],
            "idx": [c.idx for c in daq.channels[:stride]]}
    return ChunkFormat(code, stride, daq.sample_count, float(gain[0]), float(offset[0]),
                       0 if uniform else F.FLAG_PER_CHANNEL, body)


@attrs.define(eq=False)
class ShmFeed:
    """Builds pybrid-shm frames from backend run messages for its taps; see the module note.

    ``lookup(run_id)`` returns the carrier paths of an active run or None; ``carriers`` is
    the metadata's carrier list (``index``, ``lane``, ``path`` …), called when needed."""

    lookup: Callable[[str], Iterable[str] | None]
    carriers: Callable[[], list[dict[str, Any]]] = list
    #: The id a run's client named, from the backend-facing id (the proxy maps run ids):
    #: what readers see in run-start frames.
    name_of: Callable[[str], str] = str
    taps: list[FrameSink] = attrs.Factory(list)
    #: Frames built, and messages of runs that are not active (not written).
    frames: int = 0
    inactive: int = 0
    unusable: int = 0
    _seq: int = 0
    _runs: dict[bytes, _Run] = attrs.Factory(dict)
    _current: _Run | None = None
    _run_count: int = 0
    #: datagram length -> fast-path layouts learned from datagrams protobuf parsed.
    _fast: dict[int, list[_Fast]] = attrs.Factory(dict)
    #: CHUNK headers of the current run by (lane, layout).
    _heads: dict[tuple[int, _Fast], bytes] = attrs.Factory(dict)
    _rid: bytes = b""
    _checks: int = 0
    _carrier_index: dict[tuple[int, str], int] = attrs.Factory(dict)
    #: One ChunkFormat object per distinct format (their ids key the runs' LAYOUT frames).
    _formats: dict[str, ChunkFormat] = attrs.Factory(dict)
    #: The ChunkFormat of a data datagram by lane, path and DaqData tail (the slow path
    #: learns them).
    _tails: dict[tuple[int, bytes, bytes], ChunkFormat] = attrs.Factory(dict)
    #: The router's track of the current run (:meth:`chunk`) and, for the current run, per
    #: router layout (by id; the layout itself is kept to check), the frame template.
    _track: object = None
    _templates: dict[int, F.Template] = attrs.Factory(dict)

    def chunk(self, track: Any, lay: Layout, chunk: int, payload: bytes, lane: int) -> None:
        """A data datagram the router's fast path matched to registered run ``track``
        (:attr:`pybrid.proxy.data.router.RunRouter.feed`): it knows the layout ``lay`` and the
        chunk number, so only the header template is looked up and the taps copy the sample
        bytes ``payload[start:end]`` straight into their rings."""
        if track is not self._track:
            if self._switch(track) is None:
                return
        t = self._templates.get(id(lay))
        if t is None or t[0] is not lay:
            t = self._template(lay, payload, lane)
            if t is None:
                return
        self._seq = seq = self._seq + 1
        self.frames += 1
        for tap in self.taps:
            tap.put(seq, chunk, payload, t)

    def _switch(self, track: Any) -> _Run | None:
        run = self._active(track.run_id.encode())
        if run is not None:
            self._track = track
        return run

    def _template(self, lay: Layout, payload: bytes, lane: int) -> F.Template | None:
        """The frame template of ``lay`` in the current run; None (and the datagram handed to
        the slow path, which learns its format) for a format not yet known."""
        fmt = self._tails.get((lane, lay.path, lay.tail))
        run = self._current
        if fmt is None or run is None:
            self._track = None
            self.emit(payload, lane)
            return None
        carrier = self._carrier(lane, lay.path.decode())
        if (carrier, id(fmt)) not in run.layouts:
            self._layout(run, carrier, fmt)
        flags = fmt.flags | (0 if lay.tag == DATA_TAG else F.FLAG_END_MESSAGE)
        head = F.HEADER.pack(F.CHUNK, flags, carrier, run.number, 0, 0, fmt.samples,
                             fmt.channels, fmt.dtype_code, fmt.gain, fmt.offset)
        start = lay.middle_at + len(lay.middle)
        end = lay.length - len(lay.tail)
        n = F.HEADER_SIZE + end - start
        t = (lay, head, head[:8], head[20:], start, end, F.pad_length(n), n + F.pad_length(n))
        self._templates[id(lay)] = t
        return t

    def emit(self, payload: bytes, carrier_index: int, flags: int = 0) -> None:
        """One run message from backend lane ``carrier_index`` (the monitor-tap hook)."""
        for fast in self._fast.get(len(payload), ()):
            if (payload.startswith(fast.middle, fast.middle_at) and payload.endswith(fast.tail)
                    and payload.startswith(fast.head)
                    and payload.startswith(fast.between, fast.between_at)):
                break
        else:
            self._slow(payload, carrier_index)
            return
        at = fast.run_at
        rid = payload[at : at + 36]
        self._checks -= 1
        if rid != self._rid or self._checks < 0:
            if self._resolve(rid) is None:
                return
        k = fast.chunk_len
        at = fast.chunk_at
        if k == 2:  # the common case inline (chunks 128 .. 16383)
            b0 = payload[at]
            b1 = payload[at + 1]
            chunk = (b0 & 0x7F) | b1 << 7 if b0 >= 0x80 > b1 else -1
        else:
            chunk = 0 if k == 0 else payload[at] if k == 1 else chunk_number(payload[at : at + k])
        if chunk < 0 or (k == 1 and chunk >= 0x80):  # not a varint: protobuf decides
            self._slow(payload, carrier_index)
            return
        head = self._heads.get((carrier_index, fast))
        if head is None:
            head = self._head(carrier_index, fast)
        self._seq += 1
        frame = (head, self._seq, chunk, memoryview(payload)[fast.start : fast.end], fast.pad,
                 fast.length)
        self.frames += 1
        for tap in self.taps:
            tap.sink(frame)

    def _resolve(self, rid: bytes) -> _Run | None:
        """The active run of ``rid`` (checked again every :data:`CHECK_EVERY` chunks)."""
        run = self._active(rid)
        self._rid = rid if run is not None else b""
        self._checks = CHECK_EVERY
        return run

    def _head(self, lane: int, fast: _Fast) -> bytes:
        """The CHUNK header of ``fast``'s datagrams from ``lane`` in the current run (and
        its LAYOUT frame, the first time)."""
        run = self._current
        assert run is not None
        fmt = fast.fmt
        carrier = self._carrier(lane, fast.path)
        if (carrier, id(fmt)) not in run.layouts:
            self._layout(run, carrier, fmt)
        head = F.HEADER.pack(F.CHUNK, fmt.flags, carrier, run.number, 0, 0, fmt.samples,
                             fmt.channels, fmt.dtype_code, fmt.gain, fmt.offset)
        self._heads[(lane, fast)] = head
        return head

    def replay(self) -> list[F.Frame]:
        """RUN_START and LAYOUT frames of the current run (for a tap attaching mid-run)."""
        return list(self._current.replay) if self._current is not None else []

    # -- the slow path ----------------------------------------------------------------------

    def _slow(self, payload: bytes, lane: int) -> None:
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError:
            self.unusable += 1
            return
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        if kind == "run_state_change_message":
            self._state(msg.run_state_change_message, lane)
            return
        if kind not in ("run_data_message", "run_data_end_message"):
            return
        data = getattr(msg, kind)
        run = self._active(data.run.id.encode())
        if run is None:
            return
        carrier = self._carrier(lane, data.entity.path)
        fmt = chunk_format(data.data, lane, data.entity.path, carrier)
        if fmt is None:
            self.unusable += 1
            return
        fmt = self._formats.setdefault(json.dumps(fmt.body, sort_keys=True), fmt)
        lay = layout_of(payload)
        if lay is not None:
            self._tails.setdefault((lane, lay.path, lay.tail), fmt)
        if lay is not None and lay.tag == DATA_TAG and kind == "run_data_message":
            same = self._fast.setdefault(len(payload), [])
            if len(same) >= 16:
                del same[0]
            same.append(_Fast.of(lay, fmt))
        if (carrier, id(fmt)) not in run.layouts:
            self._layout(run, carrier, fmt)
        self._seq += 1
        flags = fmt.flags | (F.FLAG_END_MESSAGE if kind == "run_data_end_message" else 0)
        head = F.HEADER.pack(F.CHUNK, flags, carrier, run.number, self._seq, data.run.chunk,
                             fmt.samples, fmt.channels, fmt.dtype_code, fmt.gain, fmt.offset)
        self._send(F.whole_frame(head, data.data.data))

    def _state(self, change: pb.RunStateChangeMessage, lane: int) -> None:
        flags = _FINAL.get(change.new_)
        if flags is None:
            return
        run = self._active(change.run.id.encode())
        if run is None:
            return
        if change.HasField("entity") and change.entity.path:
            paths = [_carrier_path(change.entity.path)]
        else:
            paths = [c["path"] for c in self.carriers() if c.get("lane") == lane]
        for path in paths or [""]:
            carrier = self._carrier(lane, path) if path else F.RUN_WIDE
            self._seq += 1
            frame = _json(F.CARRIER_END, carrier, run.number, self._seq,
                          {"state": F.END_STATE_NAMES[flags], "reason": change.reason,
                           "path": path, "lane": lane}, flags=flags)
            self._send(frame)

    # -- runs, carriers and layouts ---------------------------------------------------------

    def _active(self, rid: bytes) -> _Run | None:
        run = self._runs.get(rid)
        try:
            run_id = rid.decode()
        except UnicodeDecodeError:
            return None
        carriers = self.lookup(run_id)
        if carriers is None:
            self.inactive += 1
            return None
        if run is None:
            self._run_count += 1
            run = _Run(self._run_count, run_id, tuple(sorted(carriers)))
            if len(self._runs) >= RUNS_KEPT:
                del self._runs[next(iter(self._runs))]
            self._runs[rid] = run
            self._seq += 1
            start = _json(F.RUN_START, F.RUN_WIDE, run.number, self._seq,
                          {"run_id": self.name_of(run_id), "run": run.number,
                           "carriers": list(run.carriers)})
            run.replay.append(start)
            self._new_current(run)
            self._send(start)
        if self._current is not run:
            self._new_current(run)
        return run

    def _new_current(self, run: _Run) -> None:
        self._current = run
        self._heads.clear()
        self._templates.clear()
        self._track = None

    def _carrier(self, lane: int, path: str) -> int:
        key = (lane, path)
        index = self._carrier_index.get(key)
        if index is None:
            for c in self.carriers():
                self._carrier_index.setdefault((c["lane"], c["path"]), c["index"])
            index = self._carrier_index.get(key)
            if index is None:
                index = self._carrier_index[key] = 0x8000 + len(self._carrier_index)
        return index

    def _layout(self, run: _Run, carrier: int, fmt: ChunkFormat) -> None:
        run.layouts.add((carrier, id(fmt)))
        self._seq += 1
        body = dict(fmt.body, carrier=carrier, run=run.number)
        frame = _json(F.LAYOUT, carrier, run.number, self._seq, body)
        run.replay.append(frame)
        self._send(frame)

    def _send(self, frame: F.Frame) -> None:
        self.frames += 1
        for tap in self.taps:
            tap.sink(frame)


def _json(kind: int, carrier: int, run: int, seq: int, body: dict[str, Any],
          flags: int = 0) -> F.Frame:
    return F.whole_frame(F.encode_json(kind, carrier, run, seq, body, flags))


def _carrier_path(path: str) -> str:
    stripped = path.strip("/")
    return "/" + stripped.split("/", 1)[0] if stripped else ""

"""The router's run events → pybrid-shm frames, once for every shared-memory tap.

Design note
-----------
:class:`ShmFeed` is a :class:`~pybrid.proxy.taps.base.RunTap`: the run router tells it of
every registered run's start, chunks and state changes (:mod:`pybrid.proxy.taps.base`), and
it writes the run as frames (:mod:`pybrid.wire.shm_frames`) for each of its taps:

* ``run_started`` → a ``RUN_START`` frame naming the run by the client's id (the proxy's id
  and the start command's sample rate and channels with it); the feed keeps it, and each
  carrier's ``LAYOUT`` frame, so that a tap attaching mid-run can hand them to its reader
  first (:meth:`ShmFeed.replay`);
* ``chunk`` with a :class:`~pybrid.wire.layout.Layout` (the router's fast path) → the frame
  template of that layout in the current run (the 48-byte header with everything but the tap
  sequence and the chunk number, and where the samples are) is looked up and each tap's
  ``put`` takes the datagram as it is (the inline writer appends it to a run of chunks it
  writes once per reactor pass, :mod:`.chunks`); no frame object is made, no sample byte
  copied before the ring.  What the samples are (dtype, channels, gains …) is read once per
  layout, by parsing that layout's first datagram;
* ``chunk`` without a layout (a message protobuf parsed) → parsed here, one frame;
* ``state_changed`` to DONE or ERROR → a ``CARRIER_END`` frame for its carrier (flags
  :data:`~pybrid.wire.shm_frames.END_DONE` / ``END_ERROR``; its JSON ``chunks``: the router's
  highest chunk number of the carrier so far + 1, so a reader that lost the last frames knows
  how many there were); to any other state → a ``STATE`` frame (flags: the protobuf
  ``RunState`` number).

Every frame carries the feed's sequence number, so a reader sees every frame a tap could not
write as a gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from pybrid.proto import pb
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.proxy.taps.common import (
    FINAL,
    GAUGE_EVERY,  # noqa: F401 (the feed's constant, tests read it here)
    YIELD_AT,
    CarrierIndex,
    Yielding,
    chunks_seen,
    state_name,
)
from pybrid.wire import shm_frames as F
from pybrid.wire.layout import DATA_TAG, Layout
from pybrid.wire.messages import data_message

#: Runs remembered (their frames to replay); the oldest is forgotten first.
RUNS_KEPT = 4


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

    @property
    def key(self) -> str:
        return json.dumps(self.body, sort_keys=True)


@attrs.define
class _Run:
    info: RunInfo
    replay: list[F.Frame] = attrs.Factory(list)
    #: (carrier, format key) pairs whose LAYOUT frame this run has had.
    layouts: set[tuple[int, str]] = attrs.Factory(set)


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
class LayoutFormats:
    """The :class:`ChunkFormat` of each (lane, layout)'s samples, read once from its first
    datagram (None: samples this format cannot carry).  ``carrier`` indexes carriers."""

    carrier: Callable[[int, str], int]
    _known: dict[tuple[int, Layout], ChunkFormat | None] = attrs.Factory(dict)

    def __call__(self, lane: int, lay: Layout, payload: bytes) -> ChunkFormat | None:
        key = (lane, lay)
        if key not in self._known:
            if len(self._known) >= 1024:  # layouts the router has long forgotten
                self._known.clear()
            body = data_message(payload)
            self._known[key] = None if body is None else chunk_format(
                body.data, lane, body.entity.path, self.carrier(lane, body.entity.path))
        return self._known[key]


@attrs.define(eq=False)
class ShmFeed:
    """Builds pybrid-shm frames from the router's run events for its taps; see the module
    note.  ``carriers`` is the metadata's carrier list (``index``, ``lane``, ``path`` …),
    called when needed."""

    carriers: Callable[[], list[dict[str, Any]]] = list
    taps: list[FrameSink] = attrs.Factory(list)
    #: The intakes' backlog (0 … 1, :meth:`DatagramIntake.backlog`), or None: never yield.
    backlog: Callable[[], float] | None = None
    #: Backlog from which the feed yields, and (half of it) below which it feeds again.
    yield_at: float = YIELD_AT
    #: Frames built; messages whose samples this format cannot carry.
    frames: int = 0
    unusable: int = 0
    #: Data messages not fed to the taps while the proxy was behind its intake.
    yielded: int = 0
    _yield: Yielding = attrs.field(init=False)
    _carrier: CarrierIndex = attrs.field(init=False)
    _seq: int = 0
    _runs: dict[RunInfo, _Run] = attrs.Factory(dict)
    _current: _Run | None = None
    _info: RunInfo | None = None
    #: The format of each layout's samples, read once from its first datagram.
    _formats: LayoutFormats = attrs.field(init=False)
    #: Frame templates of the current run by layout (the router's layouts are per backend,
    #: so a layout names its lane; hashed by identity: the lookup is the hot path's).
    _templates: dict[Layout, F.Template] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        self._yield = Yielding(self.backlog, self.yield_at)
        self._carrier = CarrierIndex(self.carriers)
        self._formats = LayoutFormats(self._carrier)

    @property
    def yielding(self) -> bool:
        return self._yield.yielding

    @property
    def yields(self) -> int:
        return self._yield.yields

    # -- the router's events (pybrid.proxy.taps.base.RunTap) --------------------------------

    def run_started(self, run: RunInfo) -> None:
        state = _Run(run)
        if len(self._runs) >= RUNS_KEPT:
            del self._runs[next(iter(self._runs))]
        self._runs[run] = state
        self._seq += 1
        start = _json(F.RUN_START, F.RUN_WIDE, run.number, self._seq, run.as_record())
        state.replay.append(start)
        self._switch(run)
        self._send(start)

    def chunk(self, run: RunInfo, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int) -> None:
        """One data message; with ``lay`` the taps copy the sample bytes
        ``payload[start:end]`` straight into their rings."""
        if run is not self._info:
            self._switch(run)
        gauge = self._yield
        gauge.countdown -= 1
        if gauge.countdown <= 0:
            gauge.look()
        if gauge.yielding:  # the reader sees a gap in the tap sequence
            self._seq += 1
            self.yielded += 1
            return
        if lay is None:
            self._parsed(payload, lane, number)
            return
        t = self._templates.get(lay)
        if t is None:
            t = self._template(lane, lay, payload)
            if t is None:
                return
        self._seq = seq = self._seq + 1
        self.frames += 1
        for tap in self.taps:
            tap.put(seq, number, payload, t)

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None:
        if run is not self._info:
            self._switch(run)
        carrier = self._carrier(lane, path) if path else F.RUN_WIDE
        self._seq += 1
        end = FINAL.get(state)
        if end is None:
            self._send(_json(F.STATE, carrier, run.number, self._seq,
                             {"state": state_name(state), "reason": reason, "path": path,
                              "lane": lane}, flags=state & 0xFF))
            return
        body = {"state": F.END_STATE_NAMES[end], "reason": reason, "path": path, "lane": lane}
        if path:  # the chunk numbers the proxy saw of this carrier so far: 0 … chunks - 1
            body["chunks"] = chunks_seen(run, path)
        self._send(_json(F.CARRIER_END, carrier, run.number, self._seq, body, flags=end))

    def run_ended(self, run: RunInfo, end: RunEnd) -> None:
        pass  # the CARRIER_END frames said it; the run's frames stay for replay

    def replay(self) -> list[F.Frame]:
        """RUN_START and LAYOUT frames of the current run (for a tap attaching mid-run)."""
        return list(self._current.replay) if self._current is not None else []

    # -- runs, formats, templates -----------------------------------------------------------

    def _switch(self, run: RunInfo) -> _Run:
        state = self._runs.get(run)
        if state is None:  # a run older than the RUNS_KEPT last: start it again
            self.run_started(run)
            state = self._runs[run]
        self._current = state
        self._info = run
        self._templates.clear()
        return state

    def _template(self, lane: int, lay: Layout, payload: bytes) -> F.Template | None:
        """The frame template of ``lay``'s datagrams from ``lane`` in the current run (and its
        LAYOUT frame, the first time); None (counted) for samples this format cannot carry."""
        fmt = self._formats(lane, lay, payload)
        run = self._current
        if fmt is None or run is None:
            self.unusable += 1
            return None
        carrier = self._carrier(lane, lay.path.decode())
        self._announce(run, carrier, fmt)
        flags = fmt.flags | (0 if lay.tag == DATA_TAG else F.FLAG_END_MESSAGE)
        head = F.chunk_header(carrier, run.info.number, 0, 0, fmt.samples, fmt.channels,
                              fmt.dtype_code, fmt.gain, fmt.offset, flags)
        start = lay.samples_at
        end = lay.length - len(lay.tail)
        n = F.HEADER_SIZE + end - start
        t = (lay, head, head[:8], head[20:], start, end, F.pad_length(n), n + F.pad_length(n))
        self._templates[lay] = t
        return t

    def _parsed(self, payload: bytes, lane: int, number: int) -> None:
        """A data message without a layout: parsed, written as one frame."""
        body = data_message(payload)
        run = self._current
        if body is None or run is None:
            self.unusable += 1
            return
        carrier = self._carrier(lane, body.entity.path)
        fmt = chunk_format(body.data, lane, body.entity.path, carrier)
        if fmt is None:
            self.unusable += 1
            return
        self._announce(run, carrier, fmt)
        self._seq += 1
        end = body.DESCRIPTOR.name == "RunDataEndMessage"
        flags = fmt.flags | (F.FLAG_END_MESSAGE if end else 0)
        head = F.chunk_header(carrier, run.info.number, self._seq, number, fmt.samples,
                              fmt.channels, fmt.dtype_code, fmt.gain, fmt.offset, flags)
        self._send(F.whole_frame(head, body.data.data))

    def _announce(self, run: _Run, carrier: int, fmt: ChunkFormat) -> None:
        """The LAYOUT frame of ``fmt`` on ``carrier``, once per run."""
        key = fmt.key
        if (carrier, key) in run.layouts:
            return
        run.layouts.add((carrier, key))
        self._seq += 1
        body = dict(fmt.body, carrier=carrier, run=run.info.number)
        frame = _json(F.LAYOUT, carrier, run.info.number, self._seq, body)
        run.replay.append(frame)
        self._send(frame)

    def _send(self, frame: F.Frame) -> None:
        self.frames += 1
        for tap in self.taps:
            tap.sink(frame)



def _json(kind: int, carrier: int, run: int, seq: int, body: dict[str, Any],
          flags: int = 0) -> F.Frame:
    return F.whole_frame(F.encode_json(kind, carrier, run, seq, body, flags))

"""The live view's tap: the router's run events into a :class:`~.store.LiveStore`.

Design note
-----------
A :class:`LiveTap` is one more :class:`~pybrid.proxy.taps.base.RunTap` in the router's fan.
Runs starting and ending are always recorded (cheap: a few fields); samples are decoded only
while ``watchers`` is above zero (a viewer is connected), so a proxy nobody watches pays one
attribute test per chunk.  A fast-path chunk (``lay`` given) is only kept — the datagram as it
came, no slice — with the :class:`~pybrid.samples.ChunkFormat` learned once per (lane, layout)
from one protobuf parse; a chunk that continues the last one (same run and format — so the
same layout and length —, the next number) joins its block, and :meth:`LiveTap.flush` (before
each frame, at the run's end, or after ``MAX_PENDING`` chunks) cuts the samples out of each
block and decodes them as one numpy array (:func:`sample_rows`), so the numpy calls are paid
per frame, not per datagram (per datagram: a few identity tests, an append).  The
``--live-process`` child gets the blocks' datagrams as they are and cuts them itself.
A chunk without a layout is parsed and decoded by :func:`pybrid.samples.decode`.  Nothing
here raises into the router: what cannot be decoded is counted in ``unusable``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from twisted.internet.interfaces import IReactorTime

from pybrid import samples
from pybrid.live.store import LiveStore
from pybrid.proto import pb
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.wire.layout import Layout
from pybrid.wire.messages import data_message

#: Formats remembered (per lane and layout) before all are forgotten.
MAX_FORMATS = 256
#: Chunks kept undecoded until the next frame at most (then decoded at once).
MAX_PENDING = 4096


def sample_rows(data: Any, cut: tuple[int, int, int], dtype: np.dtype[Any],
                stride: int) -> np.ndarray:
    """The samples of datagrams of one layout laid end to end in ``data``: ``cut`` is where
    the sample bytes start and end in each, and its length; a row per sample time."""
    at, end, length = cut
    raw = np.frombuffer(data, np.uint8).reshape(-1, length)[:, at:end]
    return np.ascontiguousarray(raw).view(dtype).reshape(-1, stride)


def result_name(state: int) -> str:
    """DONE, ERROR or "released" (the run was released unfinished)."""
    if state == 0:
        return "released"
    try:
        return pb.RunState.Name(state)  # type: ignore[arg-type]
    except ValueError:
        return str(state)


@attrs.define(eq=False)
class LiveTap:
    """Feeds a :class:`LiveStore` from the router; see the module note."""

    clock: IReactorTime
    store: LiveStore = attrs.field(factory=LiveStore)
    #: Viewers connected (the WebSocket side counts them); 0: samples are not decoded.
    watchers: int = 0
    #: ``--live-process``: the link to the child (:class:`.link.LiveLink`) and its viewers;
    #: the blocks go to it undecoded while ``remote`` is above zero.
    link: Any = None
    remote: int = 0
    unusable: int = 0
    #: Reactor seconds the newest pending chunk arrived.
    arrived: float = 0.0
    #: Blocks of consecutive chunks: [run, path, format, first number, (where the samples
    #: start and end, the datagrams' length), datagrams, the next chunk's number].
    _pending: list[list[Any]] = attrs.field(factory=list)
    #: The open block of each layout (a layout is one backend's carrier and length): the
    #: carriers of a device take turns, each its own block.
    _open: dict[Layout, list[Any]] = attrs.field(factory=dict)
    _count: int = 0  # chunks in ``_pending``
    _formats: dict[tuple[int, Layout], samples.ChunkFormat | None] = attrs.field(factory=dict)

    def run_started(self, run: RunInfo) -> None:
        rate = run.meta.get("sample_rate", 0)
        for store in (self.store, self.link):
            if store is not None:
                store.start(run.client_id, run.number, int(rate) if rate else 0,
                            self.clock.seconds())

    def chunk(self, run: RunInfo, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int) -> None:
        if not (self.watchers or self.remote):
            return
        # the datagram kept as it came until the next frame: one numpy pass per block
        block = self._open.get(lay)  # type: ignore[arg-type]
        if block is not None and block[6] == number and block[0] is run:
            parts = block[5]  # the next chunk of its carrier's block: most chunks
            parts.append(payload)
            block[6] = number + 1
            self.arrived = self.clock.seconds()
            self._count += 1
            if self._count >= MAX_PENDING:
                self.flush()
            return
        if lay is None:
            self._parsed(run, number, payload)
            return
        fmt = self._format(lane, lay, payload)
        if fmt is None:
            self.unusable += 1
            return
        cut = (lay.samples_at, lay.length - len(lay.tail), lay.length)  # one layout: one length
        block = self._open[lay] = [run, lay.path, fmt, number, cut, [payload], number + 1]
        self._pending.append(block)
        self.arrived = self.clock.seconds()
        self._count += 1
        if self._count >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Decode what came since the last frame: each block of consecutive chunks of one
        carrier and format as one array."""
        pending, self._pending, self._count = self._pending, [], 0
        self._open.clear()
        link = self.link if self.remote else None
        for run, path, fmt, first, cut, parts, _next in pending:
            if link is not None:  # the datagrams as they came: one sendmsg, no join
                link.block(run.client_id, path.decode("ascii"), first, parts, fmt, cut,
                           self.arrived)
            if not self.watchers:
                continue
            values = sample_rows(b"".join(parts), cut, fmt.dtype, fmt.stride)
            if not fmt.identity:
                values = values * fmt.gain + fmt.offset
            self.store.add(run.client_id, path.decode("ascii"), first, values, self.arrived,
                           len(parts))

    def _parsed(self, run: RunInfo, number: int, payload: bytes) -> None:
        body = data_message(payload)
        if body is None:
            self.unusable += 1
            return
        try:
            values = samples.decode(body.data)
        except samples.SampleFormatError:
            self.unusable += 1
            return
        self.flush()  # keep the order
        now = self.clock.seconds()
        if self.remote and self.link is not None:
            self.link.values(run.client_id, body.entity.path, number, values, now)
        if self.watchers:
            self.store.add(run.client_id, body.entity.path, number, values, now)

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None:
        pass  # the end of the run is what the view marks

    def run_ended(self, run: RunInfo, end: RunEnd) -> None:
        self.flush()
        for store in (self.store, self.link):
            if store is not None:
                store.end(run.client_id, result_name(end.state), end.chunks, end.lost,
                          self.clock.seconds())

    def _format(self, lane: int, lay: Layout, payload: bytes) -> samples.ChunkFormat | None:
        key = (lane, lay)
        if key in self._formats:
            return self._formats[key]
        if len(self._formats) >= MAX_FORMATS:
            self._formats.clear()
        fmt: samples.ChunkFormat | None = None
        body = data_message(payload)
        if body is not None:
            try:
                fmt = samples.format_of(body.data)
            except samples.SampleFormatError:
                fmt = None
            if fmt is not None and lay.length - len(lay.tail) - lay.samples_at != fmt.nbytes:
                fmt = None  # the sample bytes are not where the layout says
        self._formats[key] = fmt
        return fmt


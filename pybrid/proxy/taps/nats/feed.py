"""The router's run events → the NATS bridge's link (``--nats``): datagrams as they came.

Design note
-----------
:class:`NatsFeed` is a :class:`~pybrid.proxy.taps.base.RunTap` like the shared-memory feed
(:mod:`pybrid.proxy.taps.shm.feed`), but for one reader, the bridge child, over a
:mod:`~pybrid.proxy.taps.link`: per datagram it appends the datagram, as it came, to the
open block of its layout (a layout names the backend, the carrier and the format), and
:meth:`NatsFeed.flush` — every ``FLUSH_EVERY`` (10 ms), before any event, at ``MAX_PENDING``
chunks — sends each block as one message: the datagrams, where their samples lie and the
chunk header fields (:data:`BLOCK`).  The bridge cuts the samples out with numpy
(:func:`pybrid.proxy.taps.nats.runs.block_records`).  No frame, no ring, no semaphore, no
slice per datagram.  Events — :data:`START` (the run's record), :data:`LAYOUT` (a carrier's
format, once per run), :data:`CHUNK` (a message protobuf parsed), :data:`STATE`,
:data:`CARRIER_END` — are never dropped; a block is not sent while the bridge is behind,
nor while the proxy is ``yield_at`` behind its intake (the client's data first).  Both are
counted, per run too: the run's next message carries them as ``skipped`` (the bridge's tap
gaps); the run's ``end`` message names the chunk numbers the stream lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.proxy.taps.common import (
    FINAL,
    YIELD_AT,
    CarrierIndex,
    Yielding,
    chunks_seen,
    state_name,
)
from pybrid.proxy.taps.link import message
from pybrid.proxy.taps.shm.feed import ChunkFormat, LayoutFormats, chunk_format
from pybrid.wire import shm_frames as F
from pybrid.wire.layout import DATA_TAG, Layout
from pybrid.wire.messages import data_message

START, LAYOUT, BLOCK, CHUNK, STATE, CARRIER_END = 1, 2, 3, 4, 5, 6
#: Seconds between the blocks the feed sends.
FLUSH_EVERY = 0.01
#: Chunks held until the next flush at most (then sent at once).
MAX_PENDING = 4096
#: Runs whose start and layout messages are kept for a bridge that starts mid-run.
RUNS_KEPT = 4


@attrs.define(eq=False)
class _Run:
    info: RunInfo
    replay: list[list[bytes]] = attrs.Factory(list)
    layouts: set[tuple[int, str]] = attrs.Factory(set)
    skipped: int = 0  # chunks not sent since the run's last message


@attrs.define(eq=False)
class NatsFeed:
    """Feeds the bridge's link from the router; see the module note.  ``carriers`` is the
    metadata's carrier list (``index``, ``lane``, ``path``), called when needed."""

    carriers: Callable[[], list[dict[str, Any]]] = list
    #: The intakes' backlog (0 … 1), or None: never yield.
    backlog: Callable[[], float] | None = None
    yield_at: float = YIELD_AT
    #: The link (:class:`~pybrid.proxy.taps.link.LinkWriter`) while the bridge runs.
    link: Any = None
    sent: int = 0  # chunks sent to the bridge
    not_sent: int = 0  # … not sent: the bridge behind or not running, the proxy behind
    yielded: int = 0  # … of those, while the proxy was behind its intake
    unusable: int = 0
    _yield: Yielding = attrs.field(init=False)
    _carrier: CarrierIndex = attrs.field(init=False)
    _runs: dict[RunInfo, _Run] = attrs.Factory(dict)
    #: Per layout its open block: [run, first, next number, datagrams, header].
    _open: dict[Layout, list[Any]] = attrs.Factory(dict)
    _pending: list[list[Any]] = attrs.Factory(list)
    _count: int = 0
    _formats: LayoutFormats = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._yield = Yielding(self.backlog, self.yield_at)
        self._carrier = CarrierIndex(self.carriers)
        self._formats = LayoutFormats(self._carrier)

    @property
    def yields(self) -> int:
        return self._yield.yields

    # -- the router's events ----------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        state = _Run(run)
        if len(self._runs) >= RUNS_KEPT:
            del self._runs[next(iter(self._runs))]
        self._runs[run] = state
        parts = message(START, {"run": run.number, **run.as_record()})
        state.replay.append(parts)
        if self.link is not None:
            self.link.event(parts)

    def chunk(self, run: RunInfo, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int) -> None:
        gauge = self._yield
        gauge.countdown -= 1
        if gauge.countdown <= 0:
            gauge.look()
        if gauge.yielding or self.link is None:
            self._skip(run, 1, gauge.yielding)
            return
        if lay is None:
            self._parsed(run, lane, number, payload)
            return
        block = self._open.get(lay)
        if block is not None and block[2] == number and block[0] is run:
            block[3].append(payload)
            block[2] = number + 1
        else:
            self._block(run, lane, lay, number, payload)
        self._count += 1
        if self._count >= MAX_PENDING:
            self.flush()

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None:
        self.flush()  # the run's chunks before its states
        carrier = self._carrier(lane, path) if path else F.RUN_WIDE
        body: dict[str, Any] = {"carrier": carrier, "path": path, "reason": reason,
                                "lane": lane}
        final = FINAL.get(state)
        if final is None:
            self._event(STATE, run, dict(body, state=state_name(state)))
            return
        body["state"] = F.END_STATE_NAMES[final]
        if path:  # the chunk numbers the proxy saw of this carrier so far: 0 … chunks - 1
            body["chunks"] = chunks_seen(run, path)
        self._event(CARRIER_END, run, body)

    def run_ended(self, run: RunInfo, end: RunEnd) -> None:
        self.flush()

    # -- blocks -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the blocks that came since the last flush (those the link does not take now
        are counted, not kept)."""
        pending, self._pending, self._count = self._pending, [], 0
        self._open.clear()
        for run, first, _next, parts, header in pending:
            header["first"] = first
            self._data(BLOCK, run, header, parts, len(parts) * len(parts[0]))  # one length

    def replay(self) -> list[list[bytes]]:
        """The start and layout messages of the runs kept (for a bridge starting mid-run)."""
        return [parts for state in self._runs.values() for parts in state.replay]

    def _block(self, run: RunInfo, lane: int, lay: Layout, number: int,
               payload: bytes) -> None:
        state = self._state(run)
        fmt = self._formats(lane, lay, payload)
        if fmt is None:
            self.unusable += 1
            self._skip(run, 1, False)
            return
        carrier = self._carrier(lane, lay.path.decode())
        self._announce(state, carrier, fmt)
        header = self._chunk_header(run, carrier, fmt, lay.tag != DATA_TAG)
        header["cut"] = [lay.samples_at, lay.length - len(lay.tail), lay.length]
        block = [run, number, number + 1, [payload], header]
        self._open[lay] = block
        self._pending.append(block)

    def _parsed(self, run: RunInfo, lane: int, number: int, payload: bytes) -> None:
        """A data message without a layout: parsed, sent as one CHUNK message in order."""
        state = self._state(run)
        body = data_message(payload)
        fmt = carrier = None
        if body is not None:
            carrier = self._carrier(lane, body.entity.path)
            fmt = chunk_format(body.data, lane, body.entity.path, carrier)
        if body is None or fmt is None or carrier is None:
            self.unusable += 1
            self._skip(run, 1, False)
            return
        self.flush()
        self._announce(state, carrier, fmt)
        header = self._chunk_header(run, carrier, fmt,
                                    body.DESCRIPTOR.name == "RunDataEndMessage")
        header["first"] = number
        self._data(CHUNK, run, header, [body.data.data])

    def _data(self, kind: int, run: RunInfo, header: dict[str, Any],
              parts: list[bytes], nbytes: int | None = None) -> None:
        """A data message of ``run``'s chunks, one part each (with the chunks skipped since
        its last message); counted as not sent if the link does not take it."""
        state = self._state(run)
        if state.skipped:
            header["skipped"] = state.skipped
        if self.link is not None and self.link.data(message(kind, header, parts, nbytes)):
            self.sent += len(parts)
            state.skipped = 0
        else:
            self._skip(run, len(parts), False)

    @staticmethod
    def _chunk_header(run: RunInfo, carrier: int, fmt: ChunkFormat,
                      end: bool) -> dict[str, Any]:
        return {"run": run.number, "carrier": carrier, "samples": fmt.samples,
                "channels": fmt.channels, "dtype": fmt.dtype_code, "gain": fmt.gain,
                "offset": fmt.offset,
                "flags": fmt.flags | (F.FLAG_END_MESSAGE if end else 0)}

    def _skip(self, run: RunInfo, chunks: int, yielded: bool) -> None:
        self.not_sent += chunks
        if yielded:
            self.yielded += chunks
        state = self._runs.get(run)
        if state is not None:
            state.skipped += chunks

    # -- runs, events, formats --------------------------------------------------------------

    def _state(self, run: RunInfo) -> _Run:
        state = self._runs.get(run)
        if state is None:  # a run older than the RUNS_KEPT last: start it again
            self.run_started(run)
            state = self._runs[run]
        return state

    def _event(self, kind: int, run: RunInfo, body: dict[str, Any]) -> None:
        """An event message of ``run`` (with the chunks skipped since its last message)."""
        state = self._state(run)
        body["run"] = run.number
        if state.skipped:
            body["skipped"] = state.skipped
        if self.link is not None:
            self.link.event(message(kind, body))
            state.skipped = 0

    def _announce(self, run: _Run, carrier: int, fmt: ChunkFormat) -> None:
        """The LAYOUT message of ``fmt`` on ``carrier``, once per run."""
        if (carrier, fmt.key) in run.layouts:
            return
        run.layouts.add((carrier, fmt.key))
        parts = message(LAYOUT, dict(fmt.body, carrier=carrier, run=run.info.number))
        run.replay.append(parts)
        if self.link is not None:
            self.link.event(parts)

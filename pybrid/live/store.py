"""What the live view keeps of recent runs: per carrier a ring of recent rows and an overview.

Design note
-----------
:class:`LiveStore` is fed decoded chunks (``add``: run, carrier path, chunk number, a
``rows × channels`` array) by the proxy's live tap (:mod:`pybrid.proxy.taps.live.tap`) or a
monitor.  A chunk's first row is ``chunk × rows per chunk`` (the device numbers its chunks
from 0 and sends equal chunks, the last one maybe shorter), so a missing chunk leaves rows
that were never written: NaN, a gap, where its samples would have been.

Per carrier (:class:`Trace`) two bounded things are kept:

* a ring of the last ``ring_rows`` rows (float32, NaN where nothing arrived) and a ring of
  their min/max per ``BIN`` rows that reaches ``REACH`` times as far back: a window of the
  last 10 ms … as far back as they reach is drawn from the rows (or, with many rows a column,
  from the bins) by
  :func:`pybrid.recording.envelope.envelope` — the same code ``pybrid-run --plot`` uses;
* the whole run's overview: ``OVERVIEW`` columns of min/max with ``per`` rows each; when the
  run outgrows them, pairs of columns merge and ``per`` doubles (no spike is lost, the memory
  stays fixed); once a column spans whole bins it is folded from the bins just written, not
  from the rows.  A column that no row reached stays NaN: a gap.

The bins are the costly pass over every sample, so only the channels some viewer watches are
binned (:meth:`LiveStore.watch`; the others' bins stay NaN, and so do the overview columns
folded from them); a channel watched later is binned at once from the ring's rows.

The last ``runs_kept`` runs stay: the newest keeps its ring after it ended (its last seconds at
full resolution), older ones only their overviews (rings are freed when the next run starts).
Everything is whole-array numpy.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs
import numpy as np

from pybrid.recording.envelope import Envelope, envelope, groups

#: Columns of a run's overview (per carrier): 2 × 4 bytes × channels each, twice.
OVERVIEW = 4096
#: Bytes of float32 rows a carrier's ring may hold (its row count follows from the channels).
RING_BYTES = 8 << 20
#: Runs whose overviews stay after they ended.
RUNS_KEPT = 8
#: Rows per bin of a ring's min/max level: a window of many rows per column reads bins.
BIN = 16
#: The bins reach this many times as far back as the rows (a window longer than the ring at a
#: high rate, e.g. 100 ms of 8 channels at 3 MHz, stays exact; bins cost ``REACH / 8`` ring).
REACH = 4


@attrs.define(eq=False)
class Trace:
    """One carrier of one run: a ring of recent rows and the whole run's overview."""

    channels: int
    ring_rows: int
    ring: np.ndarray | None = None  # ring_rows × channels, float32; None once the run ended
    rows: int = 0  # rows of the run so far (the next row after the last one received)
    chunks: int = 0
    missing: int = 0  # chunk numbers skipped
    next_chunk: int = 0
    per_chunk: int = 0  # rows of a whole chunk (the largest seen: the last may be short)
    #: The first chunk seen (rows before it were not watched: not counted missing); -1 none.
    first_chunk: int = -1
    per: int = 1  # rows per overview column
    lo: np.ndarray = attrs.field(init=False)
    hi: np.ndarray = attrs.field(init=False)
    #: The min/max level: bin ``b`` (rows ``b*BIN …``) is at ``b % bins``.
    blo: np.ndarray = attrs.field(init=False)
    bhi: np.ndarray = attrs.field(init=False)
    bins: int = attrs.field(init=False)
    #: The channels whose bins are kept (None: all): what nobody watches is not binned.
    binned: list[int] | None = None

    def __attrs_post_init__(self) -> None:
        self.ring_rows = max(BIN, self.ring_rows - self.ring_rows % BIN)
        self.ring = np.full((self.ring_rows, self.channels), np.nan, np.float32)
        self.bins = REACH * self.ring_rows // BIN
        self.blo = np.full((self.bins, self.channels), np.nan, np.float32)
        self.bhi = np.full((self.bins, self.channels), np.nan, np.float32)
        self.lo = np.full((OVERVIEW, self.channels), np.nan, np.float32)
        self.hi = np.full((OVERVIEW, self.channels), np.nan, np.float32)

    def add(self, number: int, values: np.ndarray, chunks: int = 1) -> None:
        """Chunks ``number … number+chunks-1`` (consecutive, equal but the last) as rows."""
        count = values.shape[0]
        if count == 0 or values.shape[1] != self.channels:
            return
        self.per_chunk = max(self.per_chunk, -(-count // chunks))
        first = number * self.per_chunk
        stop = first + count
        if self.first_chunk < 0:  # the first chunk watched: earlier ones are not missing
            self.first_chunk = self.next_chunk = number
        if number > self.next_chunk:
            self.missing += number - self.next_chunk
        self.next_chunk = max(self.next_chunk, number + chunks)
        self.chunks += chunks
        binned = self.ring is not None and self._ring_write(first, stop, values)
        while stop > OVERVIEW * self.per:
            self._merge()
        if binned and self.per % BIN == 0:  # whole bins a column: fold the bins, not the rows
            self._fold_bins(first, stop)
        else:
            self._fold(first, values)
        self.rows = max(self.rows, stop)

    def _ring_write(self, first: int, stop: int, values: np.ndarray) -> bool:
        """Rows ``first … stop-1`` into the ring and its bins; False: not all of them binned."""
        ring, n = self.ring, self.ring_rows
        assert ring is not None
        if stop <= self.rows - n:  # a late chunk older than the ring holds
            return False
        # the first row's whole bin stays in the ring: its bins can be folded into the overview
        whole = first - first % BIN >= stop - n and first >= self.rows - n
        if first > self.rows:  # rows skipped (lost chunks): NaN in the ring, a gap
            gap = np.arange(self.rows, min(first, self.rows + n)) % n
            ring[gap] = np.nan
        # new rows the ring cannot hold (a gap or a block larger than it): NaN bins, not stale
        self._clear_bins(-(-self.rows // BIN), (stop - n) // BIN)
        if first < stop - n:  # a chunk larger than the ring: keep its end
            values, first = values[-n:], stop - n
        low = min(first, self.rows)
        at = first % n
        head = min(n - at, len(values))
        ring[at : at + head] = values[:head]
        ring[: len(values) - head] = values[head:]
        if stop >= self.rows and stop % BIN:  # the last bin's later rows: not yet written
            ring[np.arange(stop, stop + BIN - stop % BIN) % n] = np.nan
        self._rebin(max(low, stop - n), stop)
        return whole

    def _rebin(self, first: int, stop: int, only: list[int] | None = None) -> None:
        """The bins of rows ``first … stop-1`` again from the ring: of the ``binned``
        channels (the others NaN), or only of channels ``only`` (the others left as they are)."""
        assert self.ring is not None
        b0, b1, count = first // BIN, -(-stop // BIN), self.ring_rows // BIN
        if b1 - b0 > count:  # the oldest bin's first rows were overwritten: not kept
            self._clear_bins(b0, b1 - count)
            b0 = b1 - count
        pick = _pick(self.binned if only is None else only)
        while b0 < b1:  # pieces contiguous in both rings (bins is a multiple of count)
            end = min(b1, (b0 // count + 1) * count)
            a, at, k = b0 % count, b0 % self.bins, end - b0
            rows = self.ring[a * BIN : (a + k) * BIN]
            if pick == slice(None):
                self.blo[at : at + k], self.bhi[at : at + k] = _bins(rows)
            else:  # the watched channels' rows, gathered (a view's rows are not contiguous)
                lo, hi = _bins(np.ascontiguousarray(rows[:, pick]))
                if only is None:
                    self.blo[at : at + k] = self.bhi[at : at + k] = np.nan
                self.blo[at : at + k, pick] = lo
                self.bhi[at : at + k, pick] = hi
            b0 = end

    def watch(self, channels: frozenset[int] | None) -> None:
        """Bin only ``channels`` from now on (None: all).  A channel newly watched is binned
        at once as far back as the ring holds its rows; before that its bins stay NaN."""
        binned = None if channels is None else sorted(c for c in channels if c < self.channels)
        if binned == list(range(self.channels)):
            binned = None
        old, self.binned = self.binned, binned
        want = range(self.channels) if binned is None else binned
        new = [] if old is None else sorted(set(want) - set(old))  # those not binned so far
        if new and self.ring is not None and self.rows:
            first = -(-max(0, self.rows - self.ring_rows) // BIN) * BIN  # whole bins only
            if first < self.rows:
                self._rebin(first, self.rows, new)
                if self.per % BIN == 0:  # their columns again (min/max: folding twice is safe)
                    self._fold_bins(first, self.rows)

    def _clear_bins(self, b0: int, b1: int) -> None:
        """Bins ``b0 … b1-1`` (no rows of theirs arrived): NaN, not an older lap's."""
        if b1 > b0:
            for a, b in _pieces(max(b0, b1 - self.bins), b1, self.bins):
                self.blo[a:b] = self.bhi[a:b] = np.nan

    def _merge(self) -> None:
        """Pairs of overview columns become one: ``per`` doubles, the memory stays."""
        for arr, op in ((self.lo, np.fmin), (self.hi, np.fmax)):
            half = op(arr[0::2], arr[1::2])
            arr[: OVERVIEW // 2] = half
            arr[OVERVIEW // 2 :] = np.nan
        self.per *= 2

    def _fold_bins(self, first: int, stop: int) -> None:
        """The bins of rows ``first … stop-1`` into the overview (a bin lies in one column;
        its rows outside ``first … stop`` were folded already or are NaN: min/max repeat)."""
        group = self.per // BIN
        c0 = first // self.per
        b0, b1 = first // BIN, -(-stop // BIN)
        parts = _pieces(b0, b1, self.bins)
        lead = b0 - c0 * group  # the column's bins before: folded already, NaN here
        for arr, bins, op in ((self.lo, self.blo, np.fmin), (self.hi, self.bhi, np.fmax)):
            data = np.concatenate([bins[a:b] for a, b in parts])
            if lead:
                data = np.concatenate([np.full((lead, self.channels), np.nan, np.float32), data])
            cols = groups(op, data, group)
            op(arr[c0 : c0 + len(cols)], cols, out=arr[c0 : c0 + len(cols)])

    def _fold(self, first: int, values: np.ndarray) -> None:
        """The rows ``first …`` into the overview columns they fall in."""
        per = self.per
        c0 = first // per
        c1 = (first + len(values) - 1) // per
        starts = np.arange(c0 + 1, c1 + 1) * per - first
        cuts = np.concatenate([[0], starts]).astype(np.intp)
        data = np.asarray(values, np.float32)  # the ring's precision: no widening copy
        lo = np.fmin.reduceat(data, cuts, axis=0)
        hi = np.fmax.reduceat(data, cuts, axis=0)
        np.fmin(self.lo[c0 : c1 + 1], lo, out=self.lo[c0 : c1 + 1])
        np.fmax(self.hi[c0 : c1 + 1], hi, out=self.hi[c0 : c1 + 1])

    def window(self, first: int, stop: int, columns: int,
               channels: list[int] | None = None) -> Envelope:
        """The envelope of rows ``first … stop-1`` in at most ``columns`` columns (of
        ``channels``, default all): from the ring where it still holds them, else from the
        overview (coarser, never finer than ``per``)."""
        first, stop = max(0, first), max(first, stop)
        pick = _pick(channels)
        ring = self.ring
        n, reach = self.ring_rows, self.bins * BIN
        if ring is not None and first >= stop - reach and first >= self.rows - reach:
            stop = min(stop, max(first, self.rows))
            if stop - first >= 2 * BIN * columns:  # many rows a column: from the bins
                return self._from_bins(first, stop, columns, pick)
        if ring is not None and first >= stop - n and first >= self.rows - n:
            a, b = first % n, (stop - 1) % n + 1
            if stop > first and a < b:  # one piece: a view of the ring, no copy
                data = ring[a:b, pick]
            else:
                data = (np.concatenate([ring[a:, pick], ring[:b, pick]]) if stop > first
                        else ring[:0, pick])
            return envelope(data, columns, first)
        c0, c1 = first // self.per, -(-stop // self.per)
        lo, hi = self.lo[c0:c1, pick], self.hi[c0:c1, pick]
        group = max(1, -(-len(lo) // columns))
        low, high = envelope(lo, columns, 0, group), envelope(hi, columns, 0, group)
        start = c0 * self.per + low.start * self.per
        return Envelope(start, np.minimum(start + group * self.per, stop), low.lo, high.hi,
                        group * self.per)

    def _from_bins(self, first: int, stop: int, columns: int,
                   pick: slice | list[int]) -> Envelope:
        b0 = max(first // BIN, -(-(self.rows - self.bins * BIN) // BIN))
        b1 = -(-stop // BIN)
        parts = _pieces(b0, b1, self.bins)
        lo = np.concatenate([self.blo[a:b, pick] for a, b in parts])
        hi = np.concatenate([self.bhi[a:b, pick] for a, b in parts])
        group = max(1, -(-len(lo) // columns))
        start = b0 * BIN + np.arange(-(-len(lo) // group), dtype=np.int64) * group * BIN
        return Envelope(start, np.minimum(start + group * BIN, stop), groups(np.fmin, lo, group),
                        groups(np.fmax, hi, group), group * BIN)

    def ended(self) -> None:
        self.ring = None
        self.blo = self.bhi = np.empty((0, self.channels), np.float32)


def _bins(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each ``BIN`` rows of ``rows`` (contiguous float32, whole bins): the
    rows moved bin-position-major first (one copy, a row as one item), so each halving step
    is one long elementwise pass, not many short ones (1.6 × faster here)."""
    count, channels = len(rows) // BIN, rows.shape[1]
    items = rows.view(np.dtype((np.void, 4 * channels))).reshape(count, BIN)
    moved = np.ascontiguousarray(items.T).view(np.float32).reshape(BIN, count, channels)
    out = []
    for op in (np.fmin, np.fmax):
        block = moved
        while len(block) > 1:
            half = len(block) // 2
            block = op(block[:half], block[half:])
        out.append(block[0])
    return out[0], out[1]


def _pick(channels: list[int] | None) -> slice | list[int]:
    """An index of ``channels``: a slice (a view, no gather) where they are consecutive."""
    if channels is None:
        return slice(None)
    if channels and channels == list(range(channels[0], channels[0] + len(channels))):
        return slice(channels[0], channels[0] + len(channels))
    return list(channels)


def _pieces(b0: int, b1: int, count: int) -> list[tuple[int, int]]:
    """Positions ``b0 … b1-1`` of a ring of ``count`` as at most two slices."""
    if b1 - b0 >= count:
        return [(b1 % count, count), (0, b1 % count)] if b1 % count else [(0, count)]
    a, b = b0 % count, b1 % count or count
    return [(a, b)] if a < b else [(a, count), (0, b)]


@attrs.define(eq=False)
class LiveRun:
    """A run the live view knows: what the tap said of it, its carriers, how it ended."""

    run_id: str
    number: int
    sample_rate: int
    started: float  # reactor seconds
    traces: dict[str, Trace] = attrs.field(factory=dict)
    ended_at: float | None = None
    result: str = ""
    chunks: int = 0
    missing: int = 0
    arrived: float = 0.0  # reactor seconds of the newest chunk
    version: int = 0  # bumped with every change: a viewer frames only what changed

    def summary(self, now: float) -> dict[str, Any]:
        end = now if self.ended_at is None else self.ended_at
        return {"id": self.run_id, "run": self.number, "sample_rate": self.sample_rate,
                "carriers": {p: t.channels for p, t in self.traces.items()},
                "duration": end - self.started, "active": self.ended_at is None,
                "chunks": self.chunks or sum(t.chunks for t in self.traces.values()),
                "missing": self.missing or sum(t.missing for t in self.traces.values()),
                "result": self.result}


@attrs.define(eq=False)
class LiveStore:
    """The runs the live view shows; see the module note."""

    ring_bytes: int = RING_BYTES
    runs_kept: int = RUNS_KEPT
    runs: OrderedDict[str, LiveRun] = attrs.field(factory=OrderedDict)
    #: Chunks dropped: unknown run, a carrier's channel count changed.
    dropped: int = 0
    #: The channels someone watches (None: all); only they are binned.
    watched: frozenset[int] | None = None

    def watch(self, channels: frozenset[int] | None) -> None:
        """From now on bin only ``channels`` of every carrier (see :meth:`Trace.watch`)."""
        if channels == self.watched:
            return
        self.watched = channels
        for run in self.runs.values():
            for trace in run.traces.values():
                trace.watch(channels)

    def start(self, run_id: str, number: int, sample_rate: int, now: float) -> LiveRun:
        for old in self.runs.values():  # ended runs keep their overviews, not their rings
            if old.ended_at is not None:
                for trace in old.traces.values():
                    trace.ended()
        run = self.runs.pop(run_id, None) or LiveRun(run_id, number, sample_rate, now)
        self.runs[run_id] = run
        while len(self.runs) > self.runs_kept:
            self.runs.popitem(last=False)
        return run

    def add(self, run_id: str, path: str, number: int, values: np.ndarray, now: float,
            chunks: int = 1) -> None:
        """``chunks`` consecutive chunks from ``number`` as one block of rows."""
        run = self.runs.get(run_id)
        if run is None or values.ndim != 2:
            self.dropped += 1
            return
        trace = run.traces.get(path)
        if trace is None:
            channels = values.shape[1]
            rows = max(1024, self.ring_bytes // (4 * max(1, channels)))
            trace = run.traces[path] = Trace(channels, rows)
            trace.watch(self.watched)
        if values.shape[1] != trace.channels:
            self.dropped += 1
            return
        trace.add(number, values, chunks)
        run.arrived = now
        run.version += 1

    def end(self, run_id: str, result: str, chunks: int, missing: int, now: float) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        run.ended_at, run.result, run.chunks, run.missing = now, result, chunks, missing
        run.version += 1

    def current(self) -> LiveRun | None:
        """The newest run still going, else the newest run."""
        for run in reversed(self.runs.values()):
            if run.ended_at is None:
                return run
        return next(reversed(self.runs.values()), None)

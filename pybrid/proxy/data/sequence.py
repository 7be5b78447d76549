"""Chunk-sequence accounting per carrier: which chunks were lost, which merely came late.

Design note
-----------
``Run.chunk`` numbers a carrier's data messages 0, 1, 2 … and is the only sequence number of
the data lane (no acks, no retransmission).  The router's hot path keeps, per run and carrier,
only the next expected number (``RunTrack.next_chunk``); a chunk that does not match it is
handed to :class:`ChunkHoles`, which keeps the numbers skipped so far ("holes") until they are
settled one way or the other:

* **reordered** — a chunk below the next expected number that fills an open hole: it was
  overtaken, not lost.  Its hole is closed and never counted as a gap;
* **gap** (a lost chunk) — a hole still open when ``REORDER_WINDOW`` newer chunk numbers of its
  carrier have been seen, or when the run is over (its track ended, forgotten or released).
  The in-order hot path does not look at holes, so an old hole is counted at the carrier's
  next skip, at the router's once-a-second :meth:`~RunChunks.settle` (``IntakeWatch``), or at
  the end of the run, whichever comes first;
* **late** — a chunk below the next expected number that fills no open hole: a duplicate, or
  a chunk that arrived after its hole had already been counted as a gap (reordering deeper
  than the window; the gap then stays counted, so the proxy's counters only grow).

So ``gaps`` are the chunks never received (within the window), exactly what the client
reports as missing below the highest chunk it got; nothing is counted twice.  Chunks lost
after the last one received are invisible to both.

Open holes are a set (membership) plus a deque in increasing order (ageing them out): a jump
adds at most ``REORDER_WINDOW`` numbers — the older ones of a large jump are counted at once —
and every number leaves the deque once, so the work per out-of-order chunk is bounded and
memory stays under ``REORDER_WINDOW`` numbers per carrier, whatever the chunk numbers.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import attrs
from twisted.logger import Logger

from pybrid.wire.noise import worth_logging

log = Logger()

#: Newer chunk numbers of a carrier after which a chunk still missing is counted as lost.
REORDER_WINDOW = 256


@attrs.define
class ChunkHoles:
    """The chunk numbers one carrier of one run skipped and that are still awaited."""

    window: int = REORDER_WINDOW
    open: set[int] = attrs.field(factory=set)
    _order: deque[int] = attrs.field(factory=deque)

    def skipped(self, expected: int, chunk: int) -> int:
        """Chunk ``chunk`` arrived while ``expected`` (< ``chunk``) was next: open holes for
        the numbers between; return how many chunks are now counted as lost (the numbers
        ``window`` or more below ``chunk``, new or older)."""
        horizon = chunk - self.window  # holes at or below this are lost
        first = max(expected, horizon + 1)
        lost = first - expected
        if first < chunk:
            self.open.update(range(first, chunk))
            self._order.extend(range(first, chunk))
        return lost + self.age(chunk)

    def age(self, highest: int) -> int:
        """The highest chunk number seen is ``highest``: holes ``window`` or more below it are
        lost; return how many."""
        horizon = highest - self.window
        order, open_ = self._order, self.open
        lost = 0
        while order and order[0] <= horizon:
            number = order.popleft()
            if number in open_:
                open_.discard(number)
                lost += 1
        return lost

    def arrived_late(self, chunk: int) -> bool:
        """A chunk below the next expected number: True if it filled an open hole
        (reordered), False if not (a duplicate, or already counted as lost: late)."""
        if chunk in self.open:
            self.open.discard(chunk)
            return True
        return False

    def close(self) -> int:
        """The run is over: every open hole is lost; return how many."""
        lost = len(self.open)
        self.open.clear()
        self._order.clear()
        return lost


class Totals(Protocol):
    """The router's counters this accounting adds to."""

    gaps: int
    reordered: int
    late: int


@attrs.define
class RunChunks:
    """One run's chunk accounting over its carriers, added to the router's totals too; logs
    the run's first skip and every 1000th, and sums the run up when it is closed."""

    run_id: str
    totals: Totals
    #: The router's lost chunks per carrier path since start.
    gaps_by_carrier: dict[str, int]
    #: Skipped chunk numbers still awaited, per carrier path (created on the first skip).
    holes: dict[bytes, ChunkHoles] = attrs.field(factory=dict)
    #: This run's lost chunks per carrier path; its reordered and late chunks; skips seen.
    lost: dict[str, int] = attrs.field(factory=dict)
    reordered: int = 0
    late: int = 0
    skips: int = 0
    #: Summed up once (:meth:`close`) already.
    closed: bool = False

    def out_of_order(self, path: bytes, expected: int, chunk: int) -> bool:
        """Chunk ``chunk`` of carrier ``path`` arrived while ``expected`` was next (the caller
        moves its next expected number past a skip).  True if it skipped chunks."""
        holes = self.holes.get(path)
        if holes is None:
            holes = self.holes[path] = ChunkHoles()
        if chunk > expected:
            self.skips += 1
            self._lost(path, holes.skipped(expected, chunk))
            if worth_logging(self.skips, first=1):
                log.warn(
                    "run {run}: chunks {first}-{last} missing from carrier {carrier} ({skips} "
                    "skip(s) in this run so far; a chunk still missing {window} chunks later "
                    "or at the run's end counts as lost; summed up then)",
                    run=self.run_id, carrier=path.decode("utf-8", "replace"), first=expected,
                    last=chunk - 1, skips=self.skips, window=holes.window,
                )
            return True
        if holes.arrived_late(chunk):
            self.reordered += 1
            self.totals.reordered += 1
        else:
            self.late += 1
            self.totals.late += 1
        return False

    def settle(self, next_chunk: dict[bytes, int]) -> None:
        """Count as lost the holes ``window`` or more below each carrier's highest chunk
        (``next_chunk``: the next expected numbers) — the in-order hot path does not age them.
        """
        for path, holes in self.holes.items():
            if holes.open:
                self._lost(path, holes.age(next_chunk.get(path, 0) - 1))

    def close(self) -> int:
        """The run is over: every chunk still missing is lost; return how many were.  The
        first close logs a summary if anything was out of order, a later one if it found more
        lost chunks (chunks of the run that arrived after its end)."""
        more = 0
        for path, holes in self.holes.items():
            lost = holes.close()
            self._lost(path, lost)
            more += lost
        first, self.closed = not self.closed, True
        if more or (first and (self.lost or self.reordered or self.late)):
            log.warn(
                "run {run}: {lost} data chunk(s) lost ({by_carrier}), {reordered} reordered, "
                "{late} late or duplicated",
                run=self.run_id, lost=sum(self.lost.values()), by_carrier=self.lost or "none",
                reordered=self.reordered, late=self.late,
            )
        return more

    def _lost(self, path: bytes, lost: int) -> None:
        if lost:
            carrier = path.decode("utf-8", "replace")
            self.totals.gaps += lost
            self.gaps_by_carrier[carrier] = self.gaps_by_carrier.get(carrier, 0) + lost
            self.lost[carrier] = self.lost.get(carrier, 0) + lost

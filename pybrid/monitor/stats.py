"""Counters a monitor listener keeps: datagrams, malformed ones, gaps, per-carrier totals.

Two sequence numbers are checked.  The tap sequence (one per sending tap, keyed by the
sender's address) counts datagrams the tap or the network lost; ``Run.chunk`` (per carrier
and run, data messages only) counts chunks the backend→proxy leg or the tap lost.  A number
above the expected one counts the skipped numbers as ``gaps``; one below it (a duplicate or
a datagram overtaken by a later one) counts as ``late`` and is not subtracted from ``gaps``.
A new run on a carrier restarts its chunk numbering.
"""

from __future__ import annotations

import attrs


def advance(expected: int | None, got: int) -> tuple[int, int, int | None]:
    """``(gaps, late, next_expected)`` after seeing sequence number ``got``."""
    if expected is None or got == expected:
        return 0, 0, got + 1
    if got > expected:
        return got - expected, 0, got + 1
    return 0, 1, expected


@attrs.define
class CarrierStats:
    """Totals for one carrier, keyed by ``(lane, carrier_path)``."""

    lane: int
    carrier_path: str
    chunks: int = 0
    samples: int = 0
    end_chunks: int = 0
    gaps: int = 0
    late: int = 0
    state_changes: int = 0
    run_id: str = ""
    last_state: str = ""
    next_chunk: int | None = None

    @property
    def label(self) -> str:
        path = f" {self.carrier_path}" if self.carrier_path else ""
        return f"lane {self.lane}{path}"

    def data(self, run_id: str, chunk: int, sample_count: int) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self.next_chunk = 0
        gaps, late, self.next_chunk = advance(self.next_chunk, chunk)
        self.gaps += gaps
        self.late += late
        self.chunks += 1
        self.samples += sample_count

    def end(self, run_id: str, sample_count: int) -> None:
        self.end_chunks += 1  # final values: not counted as samples


@attrs.define
class ListenerStats:
    """Everything a :class:`~pybrid.monitor.listener.MonitorListener` has counted."""

    datagrams: int = 0
    bytes: int = 0
    malformed: int = 0
    malformed_by_reason: dict[str, int] = attrs.Factory(dict)
    tap_gaps: int = 0
    tap_late: int = 0
    chunks: int = 0
    end_chunks: int = 0
    samples: int = 0
    state_changes: int = 0
    other: int = 0
    #: Run records (a run's start and end, ``FLAG_RUN_RECORD``).
    run_records: int = 0
    callback_errors: int = 0
    carriers: dict[tuple[int, str], CarrierStats] = attrs.Factory(dict)
    _next_sequence: dict[object, int] = attrs.Factory(dict)

    @property
    def chunk_gaps(self) -> int:
        return sum(c.gaps for c in self.carriers.values())

    def carrier(self, lane: int, carrier_path: str) -> CarrierStats:
        """The stats of one carrier, created on first sight.

        State changes often carry no entity path and arrive before any data; they are kept
        under ``(index, "")`` until data names the carrier's path, then merged into it.
        """
        key = (lane, carrier_path)
        stats = self.carriers.get(key)
        if stats is None:
            stats = CarrierStats(lane, carrier_path)
            placeholder = self.carriers.get((lane, "")) if carrier_path else None
            if placeholder is not None and not placeholder.chunks and not placeholder.end_chunks:
                del self.carriers[(lane, "")]
                stats.state_changes = placeholder.state_changes
                stats.last_state = placeholder.last_state
            self.carriers[key] = stats
        return stats

    def state(self, lane: int, carrier_path: str, state: str) -> None:
        """Count a state change; one without a path applies to every carrier of its index."""
        self.state_changes += 1
        if carrier_path:
            targets = [self.carrier(lane, carrier_path)]
        else:
            targets = [c for (i, _), c in self.carriers.items() if i == lane]
            targets = targets or [self.carrier(lane, "")]
        for stats in targets:
            stats.state_changes += 1
            stats.last_state = state

    def bad(self, reason: str) -> None:
        self.malformed += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1

    def sequence(self, sender: object, sequence: int) -> None:
        """Check one tap's sequence number; ``sender`` names the tap (its address)."""
        gaps, late, nxt = advance(self._next_sequence.get(sender), sequence)
        self.tap_gaps += gaps
        self.tap_late += late
        if nxt is not None:
            self._next_sequence[sender] = nxt

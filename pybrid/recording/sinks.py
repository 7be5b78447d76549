"""Sinks: where a run's rows go while it streams.

A sink is any object with the methods of :class:`Sink`.  The collector of a run
(:class:`~pybrid.client.run.RunCollector`) calls :meth:`Sink.begin` once, :meth:`Sink.write`
for every placed chunk (``start`` is the row of its first sample), :meth:`Sink.final` for the
end values and :meth:`Sink.finish` with every carrier's summary.  :class:`MemorySink` keeps the
rows in RAM (the API default); :class:`~pybrid.recording.hdf5.H5Recorder` streams them to disk.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import numpy as np

from pybrid.recording.meta import CarrierSummary, RunMeta


class Sink(Protocol):
    def begin(self, meta: RunMeta) -> None: ...

    def write(self, carrier: str, start: int, values: np.ndarray, dtype: np.dtype) -> None: ...

    def final(self, carrier: str, values: np.ndarray) -> None: ...

    def finish(self, summaries: dict[str, CarrierSummary]) -> None: ...

    def samples(self, carrier: str) -> np.ndarray | None: ...


#: Rows a carrier's array starts with at most (a long run grows as its samples arrive).
INITIAL_ROWS = 1 << 20


@attrs.define(eq=False)
class _Rows:
    data: np.ndarray
    used: int = 0


@attrs.define(eq=False)
class MemorySink:
    """Keeps each carrier's rows in one NaN-initialised array: preallocated for the expected
    sample count (at most ``INITIAL_ROWS`` at first, then grown by doubling up to it, and beyond
    if a device sends more); rows never written stay NaN."""

    meta: RunMeta | None = None
    _rows: dict[str, _Rows] = attrs.field(factory=dict)
    _final: dict[str, np.ndarray] = attrs.field(factory=dict)

    def begin(self, meta: RunMeta) -> None:
        self.meta = meta

    def write(self, carrier: str, start: int, values: np.ndarray, dtype: np.dtype) -> None:
        end = start + values.shape[0]
        r = self._rows.get(carrier)
        if r is None:
            first = max(min(self._want(), INITIAL_ROWS), end)
            r = self._rows[carrier] = _Rows(_nans(first, values.shape[1], dtype))
        elif end > r.data.shape[0]:
            double, want = 2 * r.data.shape[0], self._want()
            self._grow(r, max(end, min(double, want) if want > r.data.shape[0] else double))
        r.data[start:end] = values
        r.used = max(r.used, end)

    def _want(self) -> int:
        return self.meta.expected_samples if self.meta is not None else 0

    @staticmethod
    def _grow(r: _Rows, rows: int) -> None:
        grown = _nans(rows, r.data.shape[1], r.data.dtype)
        grown[: r.used] = r.data[: r.used]
        r.data = grown

    def final(self, carrier: str, values: np.ndarray) -> None:
        self._final[carrier] = values

    def finish(self, summaries: dict[str, CarrierSummary]) -> None:
        pass

    def samples(self, carrier: str) -> np.ndarray | None:
        r = self._rows.get(carrier)
        if r is None:
            return None
        rows = max(self._want(), r.used)
        if r.data.shape[0] < rows:
            self._grow(r, rows)  # lost chunks at the end: NaN rows up to the expected count
        return r.data[:rows]


def _nans(rows: int, columns: int, dtype: np.dtype) -> np.ndarray:
    return np.full((rows, columns), np.nan, dtype=dtype)

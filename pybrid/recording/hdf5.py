"""Streaming a run into an HDF5 file while it runs, in bounded memory.

Design note
-----------
Layout (the same for ``pybrid-run -o FILE.h5``, ``pybrid-monitor --record FILE.h5`` and the
API's ``run(..., sink=H5Recorder(path))``)::

    /                      attributes: RunMeta (run_id, start_time[_utc], sample_rate, …)
    /<MAC>/samples         (rows, channels) float32 (float64 for wide sample types), chunked,
                           growing, fill value NaN: rows never written read as NaN
    /<MAC>/final           (channels,) the end values          — written when they arrive
    /<MAC>/probes          (channels,) int64                   — when the run is over
    /<MAC>/missing_chunks  int64 chunk numbers never received  — when the run is over
    group attributes: carrier, sample_rate, start_index, unit, chunk_size, chunks, …

Rows arrive as placed chunks (:mod:`pybrid.recording.placement`).  Consecutive rows are
gathered in a per-carrier buffer of at most ``buffer_rows`` rows and written as one slab; a
chunk that does not continue the buffer (a late one, after a gap) flushes it first and is
written at its own place.  Every ``flush_interval`` seconds on the injected clock the buffers
are written and the file flushed (``H5Fflush``), so a killed process leaves a file h5py opens
with the samples up to the last flush.  Memory: the buffers, never the run.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from twisted.internet.interfaces import IReactorTime

from pybrid.recording.meta import UNIT, CarrierSummary, RunMeta
from pybrid.version import install_hint

#: Rows per HDF5 chunk of ``samples`` (× 8 channels × 4 B = 256 KiB).
H5_CHUNK_ROWS = 8192


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise RuntimeError(
            "HDF5 recordings need h5py: " + install_hint("hdf5", "h5py")
        ) from None
    return h5py


@attrs.define(eq=False)
class _Track:
    dataset: Any
    group: Any
    pending: list[np.ndarray] = attrs.field(factory=list)
    pending_start: int = 0
    pending_rows: int = 0


@attrs.define(eq=False)
class H5Recorder:
    """Writes one run to ``path`` as it streams; see the module note."""

    path: str
    clock: IReactorTime | None = None
    flush_interval: float = 0.5
    buffer_rows: int = 65536
    meta: RunMeta | None = None
    flushes: int = 0
    _file: Any = None
    _tracks: dict[str, _Track] = attrs.field(factory=dict)
    _last_flush: float = 0.0

    def begin(self, meta: RunMeta) -> None:
        self.meta = meta
        # default (earliest) file format: no "open for write" flag that a killed writer would
        # leave set, so a plain h5py.File(path) opens what was flushed
        self._file = _h5py().File(self.path, "w")
        for k, v in meta.attributes().items():
            self._file.attrs[k] = v
        self._last_flush = self._now()
        self._file.flush()

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else 0.0

    def _track(self, carrier: str, columns: int, dtype: np.dtype) -> _Track:
        t = self._tracks.get(carrier)
        if t is None:
            g = self._file.require_group(carrier)
            ds = g.create_dataset(
                "samples", shape=(0, columns), maxshape=(None, columns), dtype=dtype,
                chunks=(H5_CHUNK_ROWS, max(columns, 1)), fillvalue=np.nan,
            )
            meta = self.meta
            g.attrs.update(carrier=carrier, unit=UNIT, time_unit="s", start_index=0,
                           sample_rate=meta.sample_rate if meta else 0,
                           run_id=meta.run_id if meta else "")
            t = self._tracks[carrier] = _Track(ds, g)
        return t

    def write(self, carrier: str, start: int, values: np.ndarray, dtype: np.dtype) -> None:
        if self._file is None:
            raise RuntimeError("H5Recorder.write before begin")
        t = self._track(carrier, values.shape[1], dtype)
        if t.pending and start != t.pending_start + t.pending_rows:
            self._drain(t)
        if not t.pending:
            t.pending_start = start
        t.pending.append(values)
        t.pending_rows += values.shape[0]
        if t.pending_rows >= self.buffer_rows:
            self._drain(t)
        if self.clock is not None and self._now() - self._last_flush >= self.flush_interval:
            self.flush()

    def _drain(self, t: _Track) -> None:
        if not t.pending:
            return
        block = t.pending[0] if len(t.pending) == 1 else np.concatenate(t.pending)
        start, end = t.pending_start, t.pending_start + t.pending_rows
        ds = t.dataset
        if end > ds.shape[0]:
            ds.resize(end, axis=0)
        ds[start:end] = block
        t.pending, t.pending_rows = [], 0

    def flush(self) -> None:
        """Write every buffer and flush the file (a reader then sees all rows so far)."""
        if self._file is None:
            return
        for t in self._tracks.values():
            self._drain(t)
        self._file.flush()
        self.flushes += 1
        self._last_flush = self._now()

    def final(self, carrier: str, values: np.ndarray) -> None:
        if self._file is None:
            return
        g = self._file.require_group(carrier)
        if "final" in g:
            del g["final"]
        g.create_dataset("final", data=values)

    def finish(self, summaries: dict[str, CarrierSummary]) -> None:
        """Write the summaries, size every ``samples`` to its final row count, close."""
        if self._file is None:
            return
        for track in self._tracks.values():
            self._drain(track)
        self._file.attrs["carriers"] = list(summaries)
        for carrier, s in summaries.items():
            g = self._file.require_group(carrier)
            columns = self.meta.channels if self.meta is not None else 0
            t = self._track(carrier, columns, np.dtype(np.float32))  # no data: all NaN
            if t.dataset.shape[0] < s.rows:
                t.dataset.resize(s.rows, axis=0)
            if "missing_chunks" in g:
                del g["missing_chunks"]
            g.create_dataset("missing_chunks", data=np.asarray(s.missing_chunks, np.int64))
            if "probes" not in g:
                g.create_dataset("probes", data=np.asarray(s.probes, dtype=np.int64))
            g.attrs.update(chunks=s.chunks, duplicate_chunks=s.duplicate_chunks,
                           chunk_size=s.chunk_size, rows=s.rows, carrier=carrier,
                           unit=UNIT, start_index=0)
        self.close()

    def close(self) -> None:
        if self._file is not None:
            for t in self._tracks.values():
                self._drain(t)
            self._file.close()
            self._file = None

    def samples(self, carrier: str) -> np.ndarray | None:
        return None

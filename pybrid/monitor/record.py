"""Recording monitored runs: one file per run, in the layout ``pybrid-run`` writes.

A :class:`Recorder` places each chunk a monitor sees by its chunk number
(:class:`~pybrid.recording.placement.ChunkPlacer`, NaN rows for lost chunks) into one sink per
run: an :class:`~pybrid.recording.hdf5.H5Recorder` for ``.h5``/``.hdf5`` paths (written while
the run streams, flushed every ``flush_interval`` seconds on the injected clock, bounded
memory) or an :class:`~pybrid.recording.npz.NpzRecorder` otherwise (held in RAM, written at
the end).  The first run goes to the path as given, the k-th to ``<stem>-<k><ext>``.  A run's
file is finished when a later run starts after all its carriers reached DONE/ERROR, or by
:meth:`Recorder.close`.  Carriers are named by the MAC of their entity path (``carrier-<index>``
without one).  The sample rate is the one the proxy's run record gave (:meth:`Recorder.run`,
the client's start command), else ``sample_rate`` (what the user said; 0 = unknown); lost
chunks after the last one received cannot be told.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import attrs
import numpy as np
from twisted.internet.interfaces import IReactorTime

from pybrid.monitor.decode import MonitorChunk, MonitorStateChange
from pybrid.recording.hdf5 import H5Recorder
from pybrid.recording.meta import CarrierSummary, RunMeta, storage_dtype
from pybrid.recording.npz import NpzRecorder
from pybrid.recording.placement import ChunkPlacer


def carrier_name(lane: int, carrier_path: str) -> str:
    """The carrier's MAC (first path component), or ``carrier-<index>`` without a path."""
    mac = carrier_path.strip("/").split("/", 1)[0]
    return mac or f"carrier-{lane}"


def is_h5(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".h5", ".hdf5")


@attrs.define(eq=False)
class _Carrier:
    placer: ChunkPlacer
    dtype: np.dtype
    columns: int
    probes: tuple[int, ...]
    received: int = 0
    inconsistent: int = 0
    finished: bool = False


@attrs.define(eq=False)
class _Run:
    run_id: str
    path: str
    sink: Any
    carriers: dict[str, _Carrier] = attrs.field(factory=dict)


@attrs.define(eq=False)
class Recorder:
    """Records every run a monitor sees; see the module note."""

    path: str
    clock: IReactorTime
    sample_rate: int = 0
    flush_interval: float = 0.5
    runs: dict[str, _Run] = attrs.field(factory=dict)
    written: list[tuple[str, dict[str, CarrierSummary]]] = attrs.field(factory=list)
    samples: int = 0  # samples placed (data chunks only, not final values)
    #: Sample rates the proxy's run records named, by run id (the last few).
    rates: dict[str, int] = attrs.field(factory=dict)

    def run(self, run_id: str, record: dict[str, Any]) -> None:
        """A run record from the proxy (:class:`~pybrid.monitor.decode.MonitorRun`)."""
        rate = record.get("sample_rate")
        if isinstance(rate, int) and rate > 0:
            if len(self.rates) >= 256:
                del self.rates[next(iter(self.rates))]
            self.rates[run_id] = rate

    @property
    def empty(self) -> bool:
        return not self.runs and not self.written

    def _path_for(self, k: int) -> str:
        if k == 1:
            return self.path
        stem, ext = os.path.splitext(self.path)
        return f"{stem}-{k}{ext}"

    def _run(self, chunk: MonitorChunk) -> _Run:
        run = self.runs.get(chunk.run_id)
        if run is None:
            for old in [r for r in self.runs.values()
                        if r.carriers and all(c.finished for c in r.carriers.values())]:
                self._finish(old)
            path = self._path_for(len(self.written) + len(self.runs) + 1)
            sink: Any = (H5Recorder(path, clock=self.clock, flush_interval=self.flush_interval)
                         if is_h5(path) else NpzRecorder(path))
            sink.begin(RunMeta(
                run_id=chunk.run_id, start_time=self.clock.seconds(),
                sample_rate=self.sample_rate or self.rates.get(chunk.run_id, 0),
                channels=chunk.samples.shape[1], carriers=(),
                extra={"source": "pybrid-monitor"},
            ))
            run = self.runs[chunk.run_id] = _Run(chunk.run_id, path, sink)
        return run

    def add(self, chunk: MonitorChunk) -> None:
        run = self._run(chunk)
        mac = carrier_name(chunk.lane, chunk.carrier_path)
        c = run.carriers.get(mac)
        if c is None:
            dtype = storage_dtype(np.dtype(chunk.raw_dtype))
            c = run.carriers[mac] = _Carrier(
                ChunkPlacer(partial(run.sink.write, mac, dtype=dtype)), dtype,
                chunk.samples.shape[1], chunk.probes,
            )
        if chunk.end:
            if chunk.samples.shape[0]:
                run.sink.final(mac, chunk.samples[-1].copy())
        elif chunk.samples.shape[1] != c.columns:
            c.inconsistent += 1
        elif c.placer.add(chunk.chunk, chunk.samples):
            c.received += chunk.sample_count
            self.samples += chunk.sample_count

    def state(self, change: MonitorStateChange) -> None:
        """Note carriers whose run is over (their file is finished when the next run starts)."""
        run = self.runs.get(change.run_id)
        if run is None or not change.finished:
            return
        if change.carrier_path:
            c = run.carriers.get(carrier_name(change.lane, change.carrier_path))
            if c is not None:
                c.finished = True
        else:
            for c in run.carriers.values():
                c.finished = True

    def _finish(self, run: _Run) -> None:
        summaries = {
            mac: CarrierSummary(
                probes=c.probes, chunks=c.placer.chunks,
                missing_chunks=tuple(c.placer.missing(0).tolist()),
                duplicate_chunks=c.placer.duplicates, rows=c.placer.rows,
                chunk_size=c.placer.size,
            )
            for mac, c in run.carriers.items()
        }
        self.runs.pop(run.run_id, None)
        run.sink.finish(summaries)
        self.written.append((run.path, summaries))

    def close(self) -> list[tuple[str, dict[str, CarrierSummary]]]:
        """Finish every open run; ``(path, summaries)`` of every file written."""
        for run in list(self.runs.values()):
            self._finish(run)
        return self.written

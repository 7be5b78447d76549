"""Run recordings: where a run's samples go while it streams (memory, HDF5, ``.npz``) and the
layout shared by ``pybrid-run``, ``pybrid-monitor`` and the API; see ``docs/client.md``.

``H5Recorder(path, clock=reactor)`` streams a run to disk in bounded memory:
``await computer.run(20.0, sample_rate=100_000, sink=H5Recorder("run.h5", clock=reactor))``.
"""

from pybrid.recording.hdf5 import H5Recorder
from pybrid.recording.meta import CarrierSummary, RunMeta, time_axis
from pybrid.recording.npz import NpzRecorder
from pybrid.recording.placement import ChunkPlacer
from pybrid.recording.sinks import MemorySink, Sink

__all__ = [
    "CarrierSummary",
    "ChunkPlacer",
    "H5Recorder",
    "MemorySink",
    "NpzRecorder",
    "RunMeta",
    "Sink",
    "time_axis",
]

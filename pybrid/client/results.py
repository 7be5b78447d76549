"""The values of a run: its parameters (:class:`RunSpec`) and what it produced
(:class:`RunResult`, one :class:`CarrierRun` per carrier, :class:`Chunk` for streaming
consumers, :class:`StateChange` for the history).  See :mod:`pybrid.client.run` for how they
are collected.
"""

from __future__ import annotations

import attrs
import numpy as np

from pybrid.proto import pb
from pybrid.recording.meta import RunMeta, time_axis
from pybrid.recording.npz import carrier_arrays

#: Seconds added to ic_time + op_time for the default run deadline (the reference uses 10 s).
RUN_TIMEOUT_HEADROOM = 10.0
#: Default initial-condition time, seconds (RunSpec, Computer.run, the blocking wait).
IC_TIME = 100e-6


def expected_samples(op_time_ns: int, sample_rate: int) -> int:
    """Samples per channel a device sends for ``op_time_ns`` at ``sample_rate`` Hz."""
    if sample_rate <= 0:
        return 0
    # The float expression on purpose: the reference mock and our simulator compute it so.
    return max(1, int(op_time_ns * sample_rate / 1e9))


@attrs.frozen
class RunSpec:
    """The parameters of a run, validated; times in seconds, rate in Hz."""

    op_time: float
    ic_time: float = IC_TIME
    channels: int = 8
    sample_rate: int = 10_000
    sample_op: bool = True
    sample_op_end: bool = True
    halt_on_overload: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.op_time > 0:
            raise ValueError(f"op_time must be positive seconds, not {self.op_time!r}")
        if self.ic_time < 0:
            raise ValueError(f"ic_time must not be negative, not {self.ic_time!r}")
        if self.channels < 0 or self.sample_rate < 0:
            raise ValueError("channels and sample_rate must not be negative")

    @property
    def op_time_ns(self) -> int:
        return round(self.op_time * 1e9)

    @property
    def ic_time_ns(self) -> int:
        return round(self.ic_time * 1e9)

    @property
    def expected_samples(self) -> int:
        if not self.sample_op or self.channels == 0:
            return 0
        return expected_samples(self.op_time_ns, self.sample_rate)

    @property
    def default_timeout(self) -> float:
        return self.ic_time + self.op_time + RUN_TIMEOUT_HEADROOM

    def command(self, run_id: str, sync_master: str | None) -> pb.StartRunCommand:
        """The ``StartRunCommand`` the reference client would send for these parameters."""
        cmd = pb.StartRunCommand()
        cmd.run.id = run_id
        rc = cmd.run_config
        rc.ic_time.value, rc.ic_time.prefix = self.ic_time_ns, pb.NANO
        rc.op_time.value, rc.op_time.prefix = self.op_time_ns, pb.NANO
        rc.halt_on_overload = self.halt_on_overload
        rc.write_run_state_changes = True
        rc.streaming = self.sample_op or self.sample_op_end
        daq = cmd.daq_config
        daq.num_channels = self.channels
        daq.sample_rate = self.sample_rate
        daq.sample_op = self.sample_op
        daq.sample_op_end = self.sample_op_end
        cmd.sync_config.enabled = True
        if sync_master is not None:
            cmd.sync_config.master.path = sync_master
        return cmd


@attrs.frozen
class Chunk:
    """One data message as handed to an ``on_chunk`` callback (in arrival order)."""

    carrier: str
    number: int
    values: np.ndarray  # (samples, channels) float64, gain and offset applied
    final: bool  # True for run_data_end_message (the final values)


@attrs.frozen
class StateChange:
    """One run state change as received; ``carrier`` None = all carriers of the connection."""

    at: float  # seconds since the run was started, on the client's clock
    carrier: str | None
    old: str
    new: str
    reason: str


@attrs.frozen
class CarrierRun:
    """What one carrier delivered in a run.

    Row ``i`` of ``samples`` is sample ``i``, taken ``i / sample_rate`` seconds after OP began:
    rows of chunks that never arrived are NaN, and those chunk numbers are in
    ``missing_chunks`` (lost chunks after the last one received too, up to the expected
    count).  float32 when the device sent float32 or 16-bit samples, else float64.  Empty
    (0 rows) when the run streamed into a recording (``run(..., sink=H5Recorder(path))``).
    """

    carrier: str
    samples: np.ndarray  # (samples, channels)
    final: np.ndarray | None  # (channels,) from run_data_end_message
    probes: tuple[int, ...]
    states: tuple[str, ...]
    chunks: int
    chunk_gaps: int  # chunk numbers missing below the highest one received
    missing_chunks: tuple[int, ...]  # every chunk number not received
    duplicate_chunks: int
    expected_samples: int
    chunk_size: int = 0  # samples per chunk, as learnt from the chunks
    received_samples: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing_chunks and self.received_samples >= self.expected_samples


@attrs.frozen
class RunResult:
    """The outcome of :meth:`Computer.run <pybrid.client.computer.Computer.run>`."""

    run_id: str
    carriers: dict[str, CarrierRun]
    states: tuple[StateChange, ...]
    overload: pb.OverloadStatus | None
    data_lane: str
    elapsed: float
    malformed: int = 0
    meta: RunMeta | None = None

    @property
    def sample_rate(self) -> int:
        return self.meta.sample_rate if self.meta is not None else 0

    @property
    def start_time_utc(self) -> str:
        """When the run was started (UTC, ISO 8601), from the client's clock."""
        return self.meta.start_time_utc if self.meta is not None else ""

    def time(self, carrier: str | None = None) -> np.ndarray:
        """Seconds after OP began of each row of ``samples`` (of ``carrier``, or the only one)."""
        rows = (self.samples if carrier is None else self.carriers[carrier].samples).shape[0]
        return time_axis(rows, self.sample_rate)

    def __getitem__(self, carrier: str) -> CarrierRun:
        return self.carriers[carrier]

    @property
    def samples(self) -> np.ndarray:
        """The samples of the only carrier (ValueError with several: use ``result[mac]``)."""
        if len(self.carriers) != 1:
            raise ValueError(f"{len(self.carriers)} carriers; pick one with result[mac]")
        return next(iter(self.carriers.values())).samples

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.carriers.values())

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for ``numpy.savez`` (``<mac>/samples``, ``<mac>/final`` …, the layout of
        every recording: :mod:`pybrid.recording.npz`)."""
        out: dict[str, np.ndarray] = {}
        for mac, c in self.carriers.items():
            out.update(carrier_arrays(mac, c.samples, c.final, c.probes, c.missing_chunks))
        return out

"""Turning a ``start_run_command`` into a checked, immutable plan for one run.

The sample count follows the reference mock device: ``max(1, int(op_ns × rate / 1e9))``.
Channels per carrier: ``DaqConfig.num_channels`` (when 0: as many as the carrier's kept
``AdcConfig`` has).  Column ``i`` of carrier ``c`` takes idx/gain/offset/probe from entry ``i``
of that carrier's kept ``AdcConfig`` (a gain of 0 — proto3's "unset" — means 1.0); columns
without an entry get idx ``i``, gain 1.0, offset 0.0 and probe ``c × num_channels + i`` (so the
reference client's per-probe lists never mix carriers).  Gains and offsets are then put on the
wire scale of the sample type (see :data:`pybrid.device.signals.WIRE_SCALE`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from pybrid.device.encoding import ChunkEncoder, WireChannel
from pybrid.device.entities import Carrier
from pybrid.device.signals import SAMPLE_DTYPES, WIRE_SCALE
from pybrid.proto import pb

#: Upper bound on DaqConfig.num_channels (a chunk of one sample must still fit a datagram).
MAX_CHANNELS = 4096

_PREFIX_NS = {pb.NONE: 1_000_000_000, pb.MILLI: 1_000_000, pb.MICRO: 1_000, pb.NANO: 1}


class RunRejected(Exception):
    """A start_run_command the device cannot execute; the message goes to the client."""


@attrs.frozen
class KeptChannel:
    """One ``AdcChannel`` from a config command, kept per carrier."""

    idx: int
    gain: float
    offset: float
    probe: int


@attrs.frozen
class CarrierPlan:
    """What one carrier does in a run."""

    carrier: Carrier
    channels: tuple[WireChannel, ...]


@attrs.frozen
class RunPlan:
    """Everything a run needs, decided before it starts."""

    run_id: str
    sample_rate: int
    total_samples: int
    op_seconds: float
    ic_seconds: float
    n_channels: int
    per_chunk: int
    dtype: str
    sample_op: bool
    sample_op_end: bool
    stamp_entity: bool
    carriers: tuple[CarrierPlan, ...]

    @property
    def total_chunks(self) -> int:
        if not self.sample_op or self.n_channels == 0:
            return 0
        return -(-self.total_samples // self.per_chunk)

    def chunk_samples(self, chunk: int) -> int:
        """Samples in chunk ``chunk`` (the last one may be short)."""
        return min(self.per_chunk, self.total_samples - chunk * self.per_chunk)


def time_ns(t: pb.Time) -> int:
    """A ``Time`` message in nanoseconds."""
    factor = _PREFIX_NS.get(t.prefix)
    if factor is None:
        raise RunRejected(f"unknown time prefix {t.prefix}")
    return int(t.value) * factor


def wire_channels(
    carrier: Carrier, n: int, kept: Sequence[KeptChannel], dtype: str
) -> tuple[WireChannel, ...]:
    wg, wo = WIRE_SCALE[dtype]
    out = []
    for i in range(n):
        if i < len(kept):
            k = kept[i]
            idx, gain, offset, probe = k.idx, (k.gain or 1.0), k.offset, k.probe
        else:
            idx, gain, offset, probe = i, 1.0, 0.0, carrier.index * n + i
        out.append(WireChannel(idx=idx, gain=wg * gain, offset=wo * gain + offset, probe=probe))
    return tuple(out)


def plan_run(
    cmd: pb.StartRunCommand,
    carriers: Sequence[Carrier],
    kept: Mapping[int, Sequence[KeptChannel]],
    *,
    dtype: str,
    per_chunk: int,
    stamp_entity: bool,
    lane_limit: int,
) -> RunPlan:
    """Check ``cmd`` and build the plan; raises :class:`RunRejected` with a clear reason."""
    if not cmd.run.id:
        raise RunRejected("start_run_command has no run id")
    op_ns = time_ns(cmd.run_config.op_time)
    ic_ns = time_ns(cmd.run_config.ic_time)
    daq = cmd.daq_config
    rate = int(daq.sample_rate)
    counts = {
        c.index: (int(daq.num_channels) or len(kept.get(c.index, ()))) for c in carriers
    }
    n = max(counts.values()) if counts else 0
    if n > MAX_CHANNELS:
        raise RunRejected(f"num_channels {n} exceeds the simulator's maximum of {MAX_CHANNELS}")
    sampling = daq.sample_op and n > 0
    if sampling and rate <= 0:
        raise RunRejected("daq_config.sample_rate must be positive to sample during OP")
    total = max(1, int(op_ns * rate / 1e9)) if sampling else 0
    plans = []
    spc = per_chunk
    for c in carriers:
        channels = wire_channels(c, n, kept.get(c.index, ()), dtype)
        plans.append(CarrierPlan(carrier=c, channels=channels))
        if n:
            enc = ChunkEncoder(cmd.run.id, c.path, channels, dtype, SAMPLE_DTYPES[dtype].itemsize)
            spc = min(spc, enc.fit_samples(spc, lane_limit))
    if n and spc < 1:
        raise RunRejected(f"{n} channels of {dtype} do not fit one message")
    return RunPlan(
        run_id=cmd.run.id,
        sample_rate=rate,
        total_samples=total,
        op_seconds=op_ns / 1e9,
        ic_seconds=ic_ns / 1e9,
        n_channels=n,
        per_chunk=spc,
        dtype=dtype,
        sample_op=bool(daq.sample_op),
        sample_op_end=bool(daq.sample_op_end),
        stamp_entity=stamp_entity,
        carriers=tuple(plans),
    )


__all__ = [
    "MAX_CHANNELS",
    "CarrierPlan",
    "KeptChannel",
    "RunPlan",
    "RunRejected",
    "plan_run",
    "time_ns",
    "wire_channels",
]

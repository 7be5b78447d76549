"""Collecting one run: the state machine between ``start_run_command`` and the result.

Design note
-----------
A :class:`RunCollector` exists from just before ``start_run_command`` is sent until the run's
result is built.  It is fed every run notification carrying its run id — from TCP or UDP, in
whatever order they arrive (the two lanes are not ordered relative to each other, so states
may even overtake the ``start_run_response``) — and moves through (the table
:data:`pybrid.client.phases.RUN`)::

    running ──all carriers DONE──▶ settling ──complete or settle timer──▶ finished
    running ──all carriers DONE, every one complete──▶ finished
    running, settling ──ERROR / deadline / on_chunk or sink raised / fail()──▶ failed
    running, settling ──cancel()──▶ cancelled

* **Carriers.**  A state change with ``entity`` applies to the carrier named by the first
  component of its path; without ``entity`` it applies to every carrier of the connection
  (docs/protocol.md#reference-client).  Data goes to the carrier named by
  ``RunDataMessage.entity``; data for a carrier the extract reply did not list is kept under
  its own name (with a warning) but is not waited for.
* **Chunks.**  Each ``run_data_message`` is decoded at once (``pybrid.samples.decode``: one
  numpy expression per chunk; frames of a learned layout come read and decoded by the fast
  path, :meth:`RunCollector.fast_data`, values already in the storage dtype) and placed by
  ``Run.chunk`` (a :class:`~pybrid.recording.placement.ChunkPlacer` per carrier): sample
  ``i`` lands in row ``i`` of the run's *sink* — in RAM
  (:class:`~pybrid.recording.sinks.MemorySink`, the default) or on disk
  (:class:`~pybrid.recording.hdf5.H5Recorder`) — so a late chunk lands in its place and a
  lost one leaves NaN rows.  Duplicates are counted and dropped.  Missing numbers below the
  highest one seen are the carrier's *gaps*; ``missing_chunks`` also lists lost chunks after
  it (up to the expected count).  ``run_data_end_message`` holds the final values (its last
  row).  Values are stored as float32 when they arrive as float32 or 16-bit integers.
* **Settling.**  A UDP datagram sent before DONE can arrive after it.  After DONE on every
  carrier the collector finishes at once if every carrier is *complete*, otherwise it waits at
  most ``settle`` seconds for stragglers, finishing early when they complete it.  Complete means:
  no gaps, at least :func:`expected_samples` samples (when ``sample_op``), and the final values
  (when ``sample_op_end``).  The expected count is ``max(1, int(op_time[ns] × sample_rate /
  1e9))`` — how the reference mock device and our simulator count (both send chunks of 100
  samples, the last one shorter).  A device counting differently only costs the settle time;
  the result reports ``expected_samples`` next to what arrived and never fails a run for it.
* **Deadline.**  One timer covers the run from the moment ``start_run_command`` was accepted
  (:meth:`RunCollector.accepted`; time spent waiting for a busy device before that is bounded by
  ``busy_timeout`` instead) until DONE: ``timeout``, default ic + op + 10 s.  It fails the run
  with :class:`RunTimeout` naming the carriers that have not reached DONE.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import numpy as np
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid import samples
from pybrid.client.errors import RunError, RunTimeout
from pybrid.client.fastdata import FastData
from pybrid.client.phases import RUN, RunPhase
from pybrid.client.results import (
    CarrierRun,
    Chunk,
    RunResult,
    RunSpec,
    StateChange,
)
from pybrid.proto import pb
from pybrid.recording.meta import CarrierSummary, RunMeta, storage_dtype
from pybrid.recording.placement import ChunkPlacer
from pybrid.recording.sinks import MemorySink, Sink
from pybrid.wire.paths import mac_of

log = Logger()

#: Default wait after DONE for data that is still in flight.
DEFAULT_SETTLE = 0.25


@attrs.define(eq=False)
class _Carrier:
    mac: str
    tracked: bool
    reached: set[int] = attrs.field(factory=set)
    states: list[str] = attrs.field(factory=list)
    placer: ChunkPlacer | None = None
    samples: int = 0
    probes: tuple[int, ...] = ()
    columns: int | None = None
    dtype: np.dtype = attrs.field(factory=lambda: np.dtype(np.float64))
    final: np.ndarray | None = None

    @property
    def received(self) -> int:
        return self.placer.chunks if self.placer is not None else 0

    @property
    def top(self) -> int:
        return self.placer.top if self.placer is not None else -1


@attrs.define(eq=False)
class RunCollector:
    """Collects one run's notifications and decides when it is over; see the module note."""

    clock: IReactorTime
    run_id: str
    spec: RunSpec
    carriers: list[str]
    timeout: float
    settle: float = DEFAULT_SETTLE
    on_chunk: Callable[[Chunk], Any] | None = None
    sink: Sink = attrs.field(factory=MemorySink)
    done: defer.Deferred[None] = attrs.field(factory=defer.Deferred)
    #: Changed only by :meth:`_to` (the table :data:`~pybrid.client.phases.RUN`).
    phase: RunPhase = RunPhase.RUNNING
    started_at: float = attrs.field(init=False)
    history: list[StateChange] = attrs.field(factory=list)
    malformed: int = 0
    meta: RunMeta = attrs.field(init=False)
    _per: dict[str, _Carrier] = attrs.field(factory=dict)
    _deadline: IDelayedCall | None = None
    _settle_timer: IDelayedCall | None = None
    _sink_closed: dict[str, CarrierSummary] | None = None

    def __attrs_post_init__(self) -> None:
        self.started_at = self.clock.seconds()
        for mac in self.carriers:
            self._per[mac] = _Carrier(mac, tracked=True)
        spec = self.spec
        self.meta = RunMeta(
            run_id=self.run_id, start_time=self.started_at, sample_rate=spec.sample_rate,
            channels=spec.channels, carriers=tuple(self.carriers),
            expected_samples=spec.expected_samples,
            extra={"op_time": spec.op_time, "ic_time": spec.ic_time},
        )
        self.sink.begin(self.meta)

    @property
    def collecting(self) -> bool:
        """Running or settling: notifications still count."""
        return self.phase is RunPhase.RUNNING or self.phase is RunPhase.SETTLING

    def _to(self, event: str) -> None:
        self.phase = RUN.next(self.phase, event)

    def accepted(self) -> None:
        """The device accepted ``start_run_command``: start the run's deadline."""
        if self.collecting and self._deadline is None:
            self._deadline = self.clock.callLater(self.timeout, self._expired)

    # -- input ---------------------------------------------------------------------------------

    def envelope(self, env: pb.Envelope) -> None:
        """A run notification for this run (the caller matched ``run.id``)."""
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        if kind == "run_state_change_message":
            self.state(msg.run_state_change_message)
        elif kind == "run_data_message":
            self.data(msg.run_data_message, final=False)
        elif kind == "run_data_end_message":
            self.data(msg.run_data_end_message, final=True)

    def state(self, change: pb.RunStateChangeMessage) -> None:
        if not self.collecting:
            return
        old, new = pb.RunState.Name(change.old), pb.RunState.Name(change.new_)
        target = mac_of(change.entity.path) if change.HasField("entity") else None
        self.history.append(
            StateChange(self.clock.seconds() - self.started_at, target, old, new, change.reason)
        )
        if target is None:
            affected = [c for c in self._per.values() if c.tracked]
        elif target in self._per and self._per[target].tracked:
            affected = [self._per[target]]
        else:
            log.warn(
                "run {run_id}: state {state} for unknown carrier {carrier}",
                run_id=self.run_id, state=new, carrier=target,
            )
            return
        for c in affected:
            c.reached.add(change.new_)
            c.states.append(new)
        if change.new_ == pb.ERROR:
            who = target if target is not None else ", ".join(c.mac for c in affected)
            self._fail(Failure(RunError(self.run_id, who, change.reason)))
        elif self.phase is RunPhase.RUNNING and all(
            pb.DONE in c.reached for c in self._per.values() if c.tracked
        ):
            self._all_done()

    def data(self, msg: pb.RunDataMessage | pb.RunDataEndMessage, *, final: bool) -> None:
        """A parsed data message (the full path)."""
        if not self.collecting:
            return
        c = self._carrier_for_data(msg.entity.path if msg.HasField("entity") else "")
        try:
            values = samples.decode(msg.data)
        except samples.SampleFormatError as e:
            self.malformed += 1
            log.warn("run {run_id}: dropped malformed chunk: {error}", run_id=self.run_id, error=e)
            return
        self._place(c, msg.run.chunk, values, final, msg.data)

    def fast_data(self, d: FastData) -> None:
        """A data frame read by the fast path (:mod:`pybrid.client.fastdata`): the same as
        :meth:`data` with the format learned once, values already in the storage dtype."""
        if not self.collecting:
            return
        c = self._carrier_for_data(d.carrier_path)
        fmt = d.format
        self._place(c, d.chunk, fmt.values(d.payload, d.samples_at), d.final, fmt)

    def _place(
        self, c: _Carrier, number: int, values: np.ndarray, final: bool,
        source: pb.DaqData | samples.ChunkFormat,
    ) -> None:
        if final:
            if values.shape[0]:
                c.final = np.array(values[-1], dtype=np.float64)
                try:
                    self.sink.final(c.mac, c.final)
                except Exception:
                    self._fail(Failure())
                    return
        else:
            if c.columns is None:
                fmt = source if isinstance(source, samples.ChunkFormat) else None
                c.columns = values.shape[1]
                if fmt is None:
                    assert isinstance(source, pb.DaqData)
                    c.probes = tuple(int(ch.probe) for ch in source.channels[: c.columns])
                    c.dtype = storage_dtype(samples.numpy_dtype(source.type))
                else:
                    c.probes, c.dtype = fmt.probes, fmt.storage
                c.placer = ChunkPlacer(partial(self._write, c))
            if values.shape[1] != c.columns:
                self.malformed += 1
                log.warn(
                    "run {run_id}: chunk {n} of {carrier} has {got} channels, not {want}",
                    run_id=self.run_id, n=number, carrier=c.mac, got=values.shape[1],
                    want=c.columns,
                )
                return
            assert c.placer is not None
            try:
                if not c.placer.add(number, values):
                    return
            except Exception:  # the sink cannot take it (disk full …): the run fails with it
                self._fail(Failure())
                return
            c.samples += values.shape[0]
        if self.on_chunk is not None:
            try:
                self.on_chunk(Chunk(c.mac, number, values.astype(np.float64, copy=False), final))
            except Exception:
                self._fail(Failure())
                return
        if self.phase is RunPhase.SETTLING and self._complete():
            self._finish()

    def _write(self, c: _Carrier, start: int, values: np.ndarray) -> None:
        self.sink.write(c.mac, start, values, c.dtype)

    def _carrier_for_data(self, path: str) -> _Carrier:
        mac = mac_of(path)
        if not mac and len(self.carriers) == 1:
            mac = self.carriers[0]
        c = self._per.get(mac)
        if c is None:
            log.warn(
                "run {run_id}: data for carrier {carrier} that the extract reply did not list",
                run_id=self.run_id, carrier=mac or "<none>",
            )
            c = self._per[mac] = _Carrier(mac, tracked=False)
        return c

    # -- transitions ---------------------------------------------------------------------------

    def _all_done(self) -> None:
        if self._complete():
            self._finish()
            return
        self._to("all_done")
        self._settle_timer = self.clock.callLater(self.settle, self._finish)

    def _complete(self) -> bool:
        want = self.spec.expected_samples
        need_final = self.spec.sample_op_end and self.spec.channels > 0
        for c in self._per.values():
            if not c.tracked:
                continue
            if c.samples < want or c.received <= c.top:
                return False
            if need_final and c.final is None:
                return False
        return True

    def _expired(self) -> None:
        self._deadline = None
        waiting = [c.mac for c in self._per.values() if c.tracked and pb.DONE not in c.reached]
        self._fail(Failure(RunTimeout(self.run_id, "DONE", waiting, self.timeout)))

    def _finish(self) -> None:
        if not self.collecting:
            return
        self._to("finish")
        self._stop_timers()
        self.done.callback(None)

    def _fail(self, failure: Failure) -> None:
        if not self.collecting:
            return
        self._to("fail")
        self._stop_timers()
        self.done.errback(failure)

    def fail(self, exc: Exception) -> None:
        """Fail the run from outside (connection lost, start_run refused)."""
        self._fail(Failure(exc))

    def cancel(self) -> None:
        """Stop collecting without firing ``done`` again (the caller cancelled); the sink is
        told the run is over (a recording keeps what arrived)."""
        if self.collecting:
            self._to("cancel")
        self._stop_timers()
        self.close_sink()

    def _stop_timers(self) -> None:
        for t in (self._deadline, self._settle_timer):
            if t is not None and t.active():
                t.cancel()
        self._deadline = self._settle_timer = None

    # -- output --------------------------------------------------------------------------------

    def summaries(self) -> dict[str, CarrierSummary]:
        """Every carrier's placement summary (what a recording notes at the end)."""
        out: dict[str, CarrierSummary] = {}
        for c in self._per.values():
            want = self.spec.expected_samples if c.tracked else 0
            p = c.placer
            missing = p.missing(want) if p is not None else _no_chunks(want)
            out[c.mac] = CarrierSummary(
                probes=c.probes, chunks=c.received, missing_chunks=tuple(missing.tolist()),
                duplicate_chunks=p.duplicates if p is not None else 0,
                rows=max(want, p.rows if p is not None else 0),
                chunk_size=p.size if p is not None else 0,
            )
        return out

    def close_sink(self) -> dict[str, CarrierSummary]:
        """Tell the sink the run is over (once); the summaries it was given."""
        if self._sink_closed is None:
            self._sink_closed = self.summaries()
            self.sink.finish(self._sink_closed)
        return self._sink_closed

    def result(self, overload: pb.OverloadStatus | None, data_lane: str) -> RunResult:
        summaries = self.close_sink()
        out: dict[str, CarrierRun] = {}
        for c in self._per.values():
            out[c.mac] = self._carrier_result(c, summaries[c.mac])
        return RunResult(
            run_id=self.run_id,
            carriers=out,
            states=tuple(self.history),
            overload=overload,
            data_lane=data_lane,
            elapsed=self.clock.seconds() - self.started_at,
            malformed=self.malformed,
            meta=self.meta,
        )

    def _carrier_result(self, c: _Carrier, s: CarrierSummary) -> CarrierRun:
        values = self.sink.samples(c.mac)
        if values is None:
            columns = c.columns if c.columns is not None else self.spec.channels
            rows = s.rows if isinstance(self.sink, MemorySink) else 0
            values = np.full((rows, columns), np.nan, dtype=c.dtype)
        return CarrierRun(
            carrier=c.mac,
            samples=values,
            final=c.final,
            probes=c.probes,
            states=tuple(c.states),
            chunks=c.received,
            chunk_gaps=c.placer.gaps() if c.placer is not None else 0,
            missing_chunks=s.missing_chunks,
            duplicate_chunks=s.duplicate_chunks,
            expected_samples=self.spec.expected_samples if c.tracked else 0,
            chunk_size=s.chunk_size,
            received_samples=c.samples,
        )


def _no_chunks(expected_samples: int) -> np.ndarray:
    return ChunkPlacer(lambda start, values: None).missing(expected_samples)

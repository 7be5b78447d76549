"""Collecting one run: the state machine between ``start_run_command`` and the result.

Design note
-----------
A :class:`RunCollector` exists from just before ``start_run_command`` is sent until the run's
result is built.  It is fed every run notification carrying its run id — from TCP or UDP, in
whatever order they arrive (the two lanes are not ordered relative to each other, so states
may even overtake the ``start_run_response``) — and moves through::

    running ──all carriers DONE──▶ settling ──complete or settle timer──▶ finished
       │                              │
       └── ERROR on any carrier / deadline / on_chunk raised / fail() / cancel() ──▶ failed

* **Carriers.**  A state change with ``entity`` applies to the carrier named by the first
  component of its path; without ``entity`` it applies to every carrier of the connection
  (PROTOCOL.md §6).  Data goes to the carrier named by ``RunDataMessage.entity``; data for a
  carrier the extract reply did not list is kept under its own name (with a warning) but is not
  waited for.
* **Chunks.**  Each ``run_data_message`` is decoded at once (``pybrid.samples.decode``: one
  numpy expression per chunk) and stored by ``Run.chunk``; duplicates are counted and dropped.
  The result concatenates chunks in chunk order; missing numbers below the highest one seen are
  the carrier's *gaps*.  ``run_data_end_message`` holds the final values (its last row).
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
from typing import Any

import attrs
import numpy as np
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid import samples
from pybrid.client.errors import RunError, RunTimeout
from pybrid.client.results import (
    CarrierRun,
    Chunk,
    RunResult,
    RunSpec,
    StateChange,
)
from pybrid.proto import pb
from pybrid.wire.paths import mac_of

log = Logger()

#: Default wait after DONE for data that is still in flight.
DEFAULT_SETTLE = 0.25
#: At most this many missing chunk numbers are listed in a result (all are counted).
MAX_LISTED_GAPS = 1000


@attrs.define(eq=False)
class _Carrier:
    mac: str
    tracked: bool
    reached: set[int] = attrs.field(factory=set)
    states: list[str] = attrs.field(factory=list)
    chunks: dict[int, np.ndarray] = attrs.field(factory=dict)
    top: int = -1
    samples: int = 0
    duplicates: int = 0
    probes: tuple[int, ...] = ()
    columns: int | None = None
    final: np.ndarray | None = None


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
    done: defer.Deferred[None] = attrs.field(factory=defer.Deferred)
    phase: str = "running"
    started_at: float = attrs.field(init=False)
    history: list[StateChange] = attrs.field(factory=list)
    malformed: int = 0
    _per: dict[str, _Carrier] = attrs.field(factory=dict)
    _deadline: IDelayedCall | None = None
    _settle_timer: IDelayedCall | None = None

    def __attrs_post_init__(self) -> None:
        self.started_at = self.clock.seconds()
        for mac in self.carriers:
            self._per[mac] = _Carrier(mac, tracked=True)

    def accepted(self) -> None:
        """The device accepted ``start_run_command``: start the run's deadline."""
        if self.phase in ("running", "settling") and self._deadline is None:
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
        if self.phase not in ("running", "settling"):
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
        elif self.phase == "running" and all(
            pb.DONE in c.reached for c in self._per.values() if c.tracked
        ):
            self._all_done()

    def data(self, msg: pb.RunDataMessage | pb.RunDataEndMessage, *, final: bool) -> None:
        if self.phase not in ("running", "settling"):
            return
        c = self._carrier_for_data(msg.entity.path if msg.HasField("entity") else "")
        try:
            values = samples.decode(msg.data)
        except samples.SampleFormatError as e:
            self.malformed += 1
            log.warn("run {run_id}: dropped malformed chunk: {error}", run_id=self.run_id, error=e)
            return
        number = msg.run.chunk
        if final:
            if values.shape[0]:
                c.final = values[-1].copy()
        else:
            if c.columns is None:
                c.columns = values.shape[1]
                c.probes = tuple(int(ch.probe) for ch in msg.data.channels[: values.shape[1]])
            if values.shape[1] != c.columns:
                self.malformed += 1
                log.warn(
                    "run {run_id}: chunk {n} of {carrier} has {got} channels, not {want}",
                    run_id=self.run_id, n=number, carrier=c.mac, got=values.shape[1],
                    want=c.columns,
                )
                return
            if number in c.chunks:
                c.duplicates += 1
                return
            c.chunks[number] = values
            c.top = max(c.top, number)
            c.samples += values.shape[0]
        if self.on_chunk is not None:
            try:
                self.on_chunk(Chunk(c.mac, number, values, final))
            except Exception:
                self._fail(Failure())
                return
        if self.phase == "settling" and self._complete():
            self._finish()

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
        self.phase = "settling"
        self._settle_timer = self.clock.callLater(self.settle, self._finish)

    def _complete(self) -> bool:
        want = self.spec.expected_samples
        need_final = self.spec.sample_op_end and self.spec.channels > 0
        for c in self._per.values():
            if not c.tracked:
                continue
            if c.samples < want or len(c.chunks) <= c.top:
                return False
            if need_final and c.final is None:
                return False
        return True

    def _expired(self) -> None:
        self._deadline = None
        waiting = [c.mac for c in self._per.values() if c.tracked and pb.DONE not in c.reached]
        self._fail(Failure(RunTimeout(self.run_id, "DONE", waiting, self.timeout)))

    def _finish(self) -> None:
        if self.phase not in ("running", "settling"):
            return
        self.phase = "finished"
        self._stop_timers()
        self.done.callback(None)

    def _fail(self, failure: Failure) -> None:
        if self.phase not in ("running", "settling"):
            return
        self.phase = "failed"
        self._stop_timers()
        self.done.errback(failure)

    def fail(self, exc: Exception) -> None:
        """Fail the run from outside (connection lost, start_run refused)."""
        self._fail(Failure(exc))

    def cancel(self) -> None:
        """Stop collecting without firing ``done`` again (the caller cancelled)."""
        if self.phase in ("running", "settling"):
            self.phase = "cancelled"
        self._stop_timers()

    def _stop_timers(self) -> None:
        for t in (self._deadline, self._settle_timer):
            if t is not None and t.active():
                t.cancel()
        self._deadline = self._settle_timer = None

    # -- output --------------------------------------------------------------------------------

    def result(self, overload: pb.OverloadStatus | None, data_lane: str) -> RunResult:
        out: dict[str, CarrierRun] = {}
        for c in self._per.values():
            out[c.mac] = self._carrier_result(c)
        return RunResult(
            run_id=self.run_id,
            carriers=out,
            states=tuple(self.history),
            overload=overload,
            data_lane=data_lane,
            elapsed=self.clock.seconds() - self.started_at,
            malformed=self.malformed,
        )

    def _carrier_result(self, c: _Carrier) -> CarrierRun:
        order = sorted(c.chunks)
        gaps = c.top + 1 - len(order)
        missing: list[int] = []
        if order:
            values = np.concatenate([c.chunks[n] for n in order], axis=0)
            expect = 0
            for n in order:
                if len(missing) >= MAX_LISTED_GAPS:
                    break
                missing.extend(range(expect, min(n, expect + MAX_LISTED_GAPS - len(missing))))
                expect = n + 1
        else:
            values = np.zeros((0, c.columns or 0))
        return CarrierRun(
            carrier=c.mac,
            samples=values,
            final=c.final,
            probes=c.probes,
            states=tuple(c.states),
            chunks=len(order),
            chunk_gaps=gaps,
            missing_chunks=tuple(missing),
            duplicate_chunks=c.duplicates,
            expected_samples=self.spec.expected_samples if c.tracked else 0,
        )

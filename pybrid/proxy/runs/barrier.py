"""One run across every backend: who has taken off, who has finished, and a deadline.

Design note
-----------
A run of the active session spans every carrier of every backend.  A :class:`RunBarrier` follows
it through the state changes the router sees — the backends' own, and the ERRORs the proxy
writes for a backend that cannot speak for itself any more (see
:mod:`pybrid.proxy.runs.coordinator`) — and offers two barriers as Deferreds:

* :meth:`RunBarrier.when_took_off` fires once every carrier has left NEW/QUEUED (TAKE_OFF or
  any later state, ERROR included);
* :meth:`RunBarrier.when_finished` fires with ``pb.DONE`` or ``pb.ERROR`` once every carrier
  is DONE or ERROR (ERROR if any carrier failed).  The session may start its next run then.

Each carrier's state only moves forward: a final state (DONE, ERROR) is kept, and "has taken
off" is never taken back.  The first ERROR calls ``on_error(barrier, backend, carrier, reason)``
at once (the coordinator stops the run on the other backends).

One deadline on the injected clock, armed by :meth:`RunBarrier.arm` when the start was accepted:
``take_off_timeout`` until every carrier took off, then ``run_seconds`` (the run's
``ic_time + op_time`` plus grace; ``None`` — a repetitive run — means no limit) until every
carrier finished.  When it passes, ``on_deadline(barrier, missing, what)`` gets the carriers
still waited for, grouped by backend; the coordinator writes ERRORs for them.  Whatever is still
unfinished afterwards is marked ERROR here, so a barrier always finishes.

Nothing is held back or reordered (the router only drops a carrier's states after its final
one): the reference client waits for TAKE_OFF and DONE of each
carrier itself; the barrier decides only what the proxy does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pybrid.machine import Table
from pybrid.proto import pb
from pybrid.wire.messages import FINAL_STATES
from pybrid.wire.observer import OneShotObserver

NOT_STARTED = frozenset((pb.NEW, pb.QUEUED))


class BarrierPhase(enum.Enum):
    #: Created; the start is not yet accepted by every backend (no deadline runs).
    UNARMED = "unarmed"
    #: The take-off deadline runs until every carrier has left NEW/QUEUED.
    TAKE_OFF = "take-off"
    #: The run deadline (``run_seconds``, if any) runs until every carrier finished.
    RUNNING = "running"
    #: Every carrier is DONE or ERROR: ``outcome`` is set, waiters fired.
    FINISHED = "finished"


_UNARMED, _TAKE_OFF, _RUNNING, _FINISHED = BarrierPhase

#: Every run barrier transition (docs/architecture.md lists the machines).
BARRIER: Table[BarrierPhase] = Table("run barrier", {
    (_UNARMED, "arm"): _TAKE_OFF,  # coordinator: every backend accepted the start
    (_TAKE_OFF, "took_off"): _RUNNING,  # every carrier left NEW/QUEUED
    (_UNARMED, "finish"): _FINISHED,  # every carrier DONE/ERROR (or cancelled) before arming
    (_TAKE_OFF, "finish"): _FINISHED,
    (_RUNNING, "finish"): _FINISHED,
})

ErrorHook = Callable[["RunBarrier", str, str, str], None]
DeadlineHook = Callable[["RunBarrier", dict[str, list[str]], str], None]


def _no_error_hook(barrier: RunBarrier, backend: str, carrier: str, reason: str) -> None:
    return None


def _no_deadline_hook(barrier: RunBarrier, missing: dict[str, list[str]], what: str) -> None:
    return None


def run_seconds(command: pb.StartRunCommand, grace: float) -> float | None:
    """How long a started run may take after TAKE_OFF: ic + op time + grace (None: unlimited)."""
    config = command.run_config
    if config.repetitive:
        return None
    total = 0.0
    for time in (config.ic_time, config.op_time):
        scale = {pb.NONE: 1.0, pb.MILLI: 1e-3, pb.MICRO: 1e-6, pb.NANO: 1e-9}.get(time.prefix)
        if scale is None:
            return None
        total += time.value * scale
    return total + grace


@attrs.define(eq=False)
class RunBarrier:
    """Progress of one run on every carrier; see the module note."""

    #: The proxy's id of the run (what the backends and the router know).
    run_id: str
    clock: IReactorTime
    #: carrier path → name of the backend that owns it.
    owners: Mapping[str, str]
    take_off_timeout: float = 10.0
    run_seconds: float | None = None
    on_error: ErrorHook = _no_error_hook
    on_deadline: DeadlineHook = _no_deadline_hook
    #: Latest state per carrier (absent: nothing heard yet).
    states: dict[str, int] = attrs.field(factory=dict)
    #: The first error: (backend, carrier, reason).
    error: tuple[str, str, str] | None = None
    outcome: int | None = None
    ignored: int = 0
    #: The id the client named the run with (in what the client is told; "": ``run_id``).
    client_id: str = ""
    #: Backends sent ``stop_run_command`` for this run (by the coordinator).
    stopped: set[str] = attrs.field(factory=set)
    #: Why the run was cancelled (:meth:`cancel`); None while it was not.
    cancelled: str | None = None
    _took_off: set[str] = attrs.field(factory=set)
    _took_off_seen: OneShotObserver[None] = attrs.field(factory=OneShotObserver)
    _finished_seen: OneShotObserver[int] = attrs.field(factory=OneShotObserver)
    _deadline: IDelayedCall | None = None
    #: Which deadline runs (:data:`BARRIER`).
    phase: BarrierPhase = BarrierPhase.UNARMED

    log = Logger()

    # -- queries ---------------------------------------------------------------------------

    @property
    def took_off(self) -> bool:
        return len(self._took_off) == len(self.owners)

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def unfinished(self, backend: str | None = None) -> list[str]:
        """Carriers (of ``backend``, or all) not yet DONE or ERROR, in owner order."""
        return [c for c, b in self.owners.items()
                if (backend is None or b == backend) and self.states.get(c) not in FINAL_STATES]

    def pending_backends(self) -> list[str]:
        """Backends with a carrier not yet DONE or ERROR, in owner order."""
        return list(dict.fromkeys(self.owners[c] for c in self.unfinished()))

    def when_took_off(self) -> defer.Deferred[None]:
        if self.took_off:
            return defer.succeed(None)
        return self._took_off_seen.when_fired()

    def when_finished(self) -> defer.Deferred[int]:
        """Fires with ``pb.DONE`` or ``pb.ERROR`` once every carrier finished."""
        return self._finished_seen.when_fired()

    def forget_waiter(self, d: defer.Deferred[Any]) -> None:
        """Drop a :meth:`when_finished` Deferred nobody waits for any more (never fired)."""
        self._finished_seen.forget(d)

    # -- events ----------------------------------------------------------------------------

    def arm(self) -> None:
        """The start was accepted by every backend: the take-off deadline runs from now."""
        if self.phase is _UNARMED:
            self._to("arm")
            self._deadline = self.clock.callLater(self.take_off_timeout, self._expired)
            self._progress()

    def state_changed(self, backend: str, carriers: tuple[str, ...], state: int,
                      reason: str) -> None:
        """A state change for ``carriers`` (the router's observer hook)."""
        if self.outcome is not None:
            return
        first_error = self.error is None
        for carrier in carriers:
            if carrier not in self.owners:
                self.ignored += 1
                self.log.debug("run {run}: state for unknown carrier {carrier} ignored",
                               run=self.run_id, carrier=carrier)
                continue
            if self.states.get(carrier) in FINAL_STATES:
                continue
            self.states[carrier] = state
            if state not in NOT_STARTED:
                self._took_off.add(carrier)
            if state == pb.ERROR and self.error is None:
                self.error = (backend, carrier, reason)
        if first_error and self.error is not None:
            self.on_error(self, *self.error)
        self._progress()

    def cancel(self, why: str = "cancelled") -> None:
        """The session is gone: stop the deadline, release waiters (outcome ERROR)."""
        if self.outcome is None and self.cancelled is None:
            self.cancelled = why
        for carrier in self.unfinished():
            self.states[carrier] = pb.ERROR
        self._took_off.update(self.owners)
        self._progress()

    # -- internals -------------------------------------------------------------------------

    def _to(self, event: str) -> None:
        self.phase = BARRIER.next(self.phase, event)

    def _progress(self) -> None:
        if self.outcome is not None:
            return
        if self.took_off:
            if self.phase is _TAKE_OFF:
                self._cancel_deadline()
                self._to("took_off")
                if self.run_seconds is not None:
                    self._deadline = self.clock.callLater(self.run_seconds, self._expired)
            self._took_off_seen.fire_waiting(None)
        if not self.unfinished():
            self._cancel_deadline()
            self._to("finish")
            self.outcome = pb.ERROR if pb.ERROR in self.states.values() else pb.DONE
            self._finished_seen.fire(self.outcome)

    def _cancel_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _expired(self) -> None:
        self._deadline = None
        if self.outcome is not None:
            return
        if self.phase is _RUNNING:
            waiting = self.unfinished()
            what = f"run not finished within {self.run_seconds:g} s after TAKE_OFF"
        else:
            waiting = [c for c in self.owners if c not in self._took_off]
            what = f"no TAKE_OFF within {self.take_off_timeout:g} s"
        missing: dict[str, list[str]] = {}
        for carrier in waiting:
            missing.setdefault(self.owners[carrier], []).append(carrier)
        self.log.warn("run {run}: {what} on {carriers}", run=self.run_id, what=what,
                      carriers=", ".join(waiting))
        try:
            self.on_deadline(self, missing, what)
        except Exception:
            self.log.failure("run {run}: deadline handler failed", run=self.run_id)
        for backend, carriers in missing.items():
            still = [c for c in carriers if self.states.get(c) not in FINAL_STATES]
            if still:
                self.state_changed(backend, tuple(still), pb.ERROR, f"backend {backend}: {what}")
        self._progress()

"""Run coordination across backends: start, first error, lost backends, deadlines, session end.

Design note
-----------
The :class:`~pybrid.proxy.runs.dispatch.Dispatcher` forwards a ``start_run_command`` to every
backend; the :class:`RunCoordinator` looks after the run from then on, with one
:class:`~pybrid.proxy.runs.barrier.RunBarrier` per run (registered with the router as the run's
state observer):

* **Begin.**  Before the start is forwarded, the run is registered with the router for the
  session (data may overtake the reply) together with its barrier — under the proxy's own id
  for it (the dispatcher's, see :mod:`pybrid.proxy.runs.dispatch`), with the id the client
  named.  ``barriers`` are keyed by the proxy's ids; :meth:`RunCoordinator.own_run` finds a
  session's run by the client's id.
* **Refused** by some backend: the run is forgotten and ``stop_run_command`` goes to the
  backends that did start it — they must not run alone.
* **Accepted**: the barrier's deadline is armed.
* **First ERROR** on any carrier (it reaches the client as it is, stamped with its carrier):
  ``stop_run_command`` goes to every other backend that still has the run going, so the run
  ends cleanly everywhere.
* **A backend lost** mid-run, or **past a deadline**: the proxy speaks for it — an ERROR state
  change per unfinished carrier of that backend, with a reason naming the backend, is routed
  as if the backend had sent it.  The reference client fails the run at once with that reason
  (instead of waiting for its own timeout); the barrier and the router count the carrier as
  finished.  A backend past its deadline also gets ``stop_run_command``.
* **Next run.**  :meth:`RunCoordinator.unfinished` lists the session's runs still going on
  some backend; the dispatcher holds a further start until they have finished everywhere (a
  device refuses a second run while one is in progress), for at most ``Timing.start_hold``.
  Repetitive runs have no deadline and are not waited for.  A start reusing the id of a run
  still in progress (:meth:`RunCoordinator.in_progress`) is refused by the dispatcher: its
  bookkeeping is never replaced.
* **The session fails** (its client's queue overflowed, the proxy is shutting down):
  :meth:`RunCoordinator.fail_runs` writes an ERROR per unfinished carrier of each of its runs,
  as for a lost backend, before the session is closed.
* **Session end** with runs in progress: ``stop_run_command`` to every healthy backend, the
  router forgets the session's runs (their remaining data is dropped, never reaching the next
  session), barriers are cancelled.

Every run that ends — finished on every carrier, or cancelled — leaves a
:class:`~pybrid.proxy.runs.history.RunRecord` in ``history`` (the status page's last runs).

Replies to ``stop_run_command`` are only logged; a backend that does not answer within
``Timing.stop_timeout`` is logged too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backend.lane import BackendLane
from pybrid.proxy.clients.session import Session
from pybrid.proxy.config import Timing
from pybrid.proxy.data.model import RunTrack
from pybrid.proxy.data.router import RunRouter
from pybrid.proxy.runs.barrier import RunBarrier, run_seconds
from pybrid.proxy.runs.history import Result, RunHistory, RunRecord
from pybrid.wire import messages


@attrs.define
class DispatchCounters:
    """What the dispatcher and its run coordinator did (one record for both)."""

    forwarded: int = 0
    errors: int = 0
    runs: int = 0
    stop_runs: int = 0
    errors_written: int = 0
    deadlines: int = 0
    held_starts: int = 0
    #: Held starts refused because the previous run did not finish within Timing.start_hold.
    held_starts_refused: int = 0
    #: Starts refused because their run id is that of a run still in progress.
    reused_run_ids: int = 0
    #: Starts with end_repetitive refused for naming another session's run.
    foreign_run_ids: int = 0


@attrs.define(eq=False)
class RunCoordinator:
    """Looks after the active session's runs on every backend; see the module note."""

    lanes: Sequence[BackendLane]
    router: RunRouter
    clock: IReactorTime
    timing: Timing = attrs.field(factory=Timing)
    barriers: dict[str, tuple[Session, RunBarrier]] = attrs.field(factory=dict)
    counters: DispatchCounters = attrs.field(factory=DispatchCounters)
    #: The last runs that ended (the status page's "last runs").
    history: RunHistory = attrs.field(factory=RunHistory)
    #: Per run in ``barriers`` (the proxy's id): when it began, and its router track.
    _begun: dict[str, tuple[float, RunTrack | None]] = attrs.field(factory=dict)

    log = Logger()

    # -- the dispatcher's side ---------------------------------------------------------------

    def begin(self, session: Session, command: pb.StartRunCommand,
              client_id: str | None = None) -> RunBarrier:
        """Register a run about to be forwarded to every backend (``command`` carries the
        proxy's id for it; the client knows it as ``client_id``, default the same)."""
        run_id = command.run.id
        client = run_id if client_id is None else client_id
        replaced = self.barriers.get(run_id)
        if replaced is not None:  # the dispatcher refuses reused ids; never strand a waiter
            replaced[1].cancel("replaced by a start with the same id")
        owners = {c: lane.name for lane in self.lanes for c in lane.carriers}
        barrier = RunBarrier(
            run_id, self.clock, owners, self.timing.take_off_timeout,
            run_seconds(command, self.timing.run_grace), self._first_error, self._deadline,
            client_id=client,
        )
        self.counters.runs += 1
        session.runs.add(client)
        self.barriers[run_id] = (session, barrier)
        self.router.register_run(run_id, session, owners, observer=barrier, client_id=client,
                                 meta=run_meta(command))
        self._begun[run_id] = (self.clock.seconds(), self.router.track_of(run_id))
        barrier.when_finished().addCallback(self._finished, session, barrier)
        self.log.info("session {session} starts run {client} (backends: {run}) on {n} "
                      "backend(s), {c} carrier(s)", session=session.id, client=client,
                      run=run_id, n=len(self.lanes), c=len(owners))
        return barrier

    def accepted(self, run_id: str) -> None:
        entry = self.barriers.get(run_id)
        if entry is not None:
            entry[1].arm()

    def refused(self, run_id: str, started: Iterable[BackendLane], why: str) -> None:
        entry = self.barriers.pop(run_id, None)
        self.router.forget_run(run_id)
        if entry is not None:
            session, barrier = entry
            session.runs.discard(barrier.client_id or run_id)
            barrier.cancel(f"not started: {why}")
            self.log.warn("session {session}: run {run} not started: {why}",
                          session=session.id, run=run_id, why=why)
        self.stop_runs(started)  # the backends that did start it must not run alone

    def in_progress(self, run_id: str) -> RunBarrier | None:
        """The barrier of run ``run_id`` (the proxy's id) if it is still going on some backend."""
        entry = self.barriers.get(run_id)
        if entry is None or entry[1].finished:
            return None
        return entry[1]

    def own_run(self, session: Session, client_id: str) -> RunBarrier | None:
        """The barrier of ``session``'s run the client calls ``client_id``, if still going."""
        for owner, barrier in self.barriers.values():
            if owner is session and barrier.client_id == client_id and not barrier.finished:
                return barrier
        return None

    def named_elsewhere(self, session: Session, client_id: str) -> bool:
        """Another session has a run in progress that its client calls ``client_id``."""
        return any(owner is not session and b.client_id == client_id and not b.finished
                   for owner, b in self.barriers.values())

    def unfinished(self, session: Session) -> list[RunBarrier]:
        """The session's runs still going on some backend (that have a deadline)."""
        return [b for s, b in self.barriers.values()
                if s is session and not b.finished and b.run_seconds is not None]

    def session_ended(self, session: Session) -> None:
        """The active session is over: stop its unfinished runs, forget all of them."""
        unfinished = self.router.release(session)
        session.runs.clear()
        names: set[str] = set()
        for run_id, (owner, barrier) in list(self.barriers.items()):
            if owner is session:
                del self.barriers[run_id]
                names.update(b for b in barrier.pending_backends() if b not in barrier.stopped)
                barrier.cancel("the session ended during the run")
        for run_id in unfinished:
            self.log.info("session {session} ended during run {run}: sending stop_run to the "
                          "backends; the run's remaining data is dropped", session=session.id,
                          run=run_id)
        if unfinished:
            self.stop_runs([lane for lane in self.lanes if lane.name in names])

    # -- the service's side ------------------------------------------------------------------

    def lane_lost(self, lane: BackendLane, why: str) -> bool:
        """``lane`` went away: its carriers fail every run in progress, with ``why``.

        True if a run error was written (the session should get a moment to take it in).
        """
        wrote = False
        for run_id, (session, barrier) in list(self.barriers.items()):
            carriers = barrier.unfinished(lane.name)
            if carriers and not session.closed:
                self.log.warn("run {run}: {why}; failing its carriers {carriers}", run=run_id,
                              why=why, carriers=", ".join(carriers))
                self.write_errors(run_id, lane, carriers, barrier, why)
                wrote = True
        return wrote

    def fail_runs(self, session: Session, why: str) -> bool:
        """ERROR states, with ``why``, for every unfinished carrier of ``session``'s runs, and
        ``stop_run_command`` to their backends (the devices are still running them)."""
        wrote = False
        for run_id, (owner, barrier) in list(self.barriers.items()):
            if owner is not session or barrier.finished or session.closed:
                continue
            running = [lane for lane in self.lanes if barrier.unfinished(lane.name)]
            self.stop_runs(running, barrier)
            for lane in running:
                self.write_errors(run_id, lane, barrier.unfinished(lane.name), barrier, why)
                wrote = True
        return wrote

    # -- barrier hooks -----------------------------------------------------------------------

    def _first_error(self, barrier: RunBarrier, backend: str, carrier: str, reason: str) -> None:
        pending = barrier.pending_backends()
        others = [lane for lane in self.lanes if lane.name in pending]
        self.log.warn(
            "run {run}: ERROR on carrier {carrier} of backend {backend} ({reason}); stopping "
            "the run on {others}", run=barrier.run_id, carrier=carrier, backend=backend,
            reason=reason or "no reason given",
            others=", ".join(lane.name for lane in others) or "no other backend",
        )
        self.stop_runs(others, barrier)

    def _deadline(self, barrier: RunBarrier, missing: dict[str, list[str]], what: str) -> None:
        self.counters.deadlines += 1
        late = [lane for lane in self.lanes if lane.name in missing]
        for lane in late:
            self.write_errors(barrier.run_id, lane, missing[lane.name], barrier,
                              f"backend {lane.name}: {what}")
        self.stop_runs(late, barrier)

    def _finished(self, outcome: int, session: Session, barrier: RunBarrier) -> int:
        entry = self.barriers.get(barrier.run_id)
        if entry is not None and entry[1] is barrier:
            del self.barriers[barrier.run_id]
        self.log.info("session {session}: run {run} finished on every backend ({state})",
                      session=session.id, run=barrier.run_id, state=pb.RunState.Name(outcome))
        self._record(session, barrier, outcome)
        return outcome

    def _record(self, session: Session, barrier: RunBarrier, outcome: int) -> None:
        """The run ended: its :class:`RunRecord` goes into ``history``."""
        now = self.clock.seconds()
        began, track = self._begun.pop(barrier.run_id, (now, None))
        result: Result = "done"
        reason = None
        if barrier.error is not None:
            backend, carrier, why = barrier.error
            result, reason = "error", f"carrier {carrier} of backend {backend}: " + (
                why or "no reason given")
        elif barrier.cancelled is not None:
            result, reason = "aborted", barrier.cancelled
        elif outcome != pb.DONE:
            result, reason = "error", pb.RunState.Name(outcome)
        lost = track.chunks.lost.values() if track is not None and track.chunks else ()
        self.history.add(RunRecord(
            id=barrier.client_id or barrier.run_id, proxy_id=barrier.run_id, session=session.id,
            peer=session.peer, started=began, ended=now, carriers=len(barrier.owners),
            chunks=sum(track.next_chunk.values()) if track is not None else 0,
            missing=sum(lost), result=result, reason=reason,
        ))

    # -- actions -----------------------------------------------------------------------------

    def write_errors(self, run_id: str, lane: BackendLane, carriers: Iterable[str],
                     barrier: RunBarrier, reason: str) -> None:
        """Route an ERROR state change per carrier, as if ``lane`` had sent it."""
        for carrier in carriers:
            change = pb.RunStateChangeMessage(new_=pb.ERROR, reason=reason)
            change.old = barrier.states.get(carrier, pb.NEW)  # type: ignore[assignment]
            change.run.id = run_id
            change.entity.path = carrier
            env = messages.v1("run_state_change_message", change, id=messages.new_id())
            self.counters.errors_written += 1
            self.router.route(lane, env, env.SerializeToString())

    def stop_runs(self, lanes: Iterable[BackendLane], barrier: RunBarrier | None = None) -> None:
        """``stop_run_command`` to each healthy lane (once per run, given its barrier)."""
        for lane in lanes:
            if not lane.healthy:
                continue
            if barrier is not None:
                if lane.name in barrier.stopped:
                    continue
                barrier.stopped.add(lane.name)
            self.counters.stop_runs += 1
            d = lane.request(messages.v1("stop_run_command"), timeout=self.timing.stop_timeout)
            d.addCallbacks(self._stopped, self._stop_failed, callbackArgs=(lane.name,),
                           errbackArgs=(lane.name,))

    def _stopped(self, reply: pb.Envelope, backend: str) -> None:
        self.log.info("backend {backend} answered stop_run with {reply}", backend=backend,
                      reply=messages.describe(reply))

    def _stop_failed(self, failure: Failure, backend: str) -> None:
        self.log.info("backend {backend}: stop_run unanswered ({error})", backend=backend,
                      error=failure.getErrorMessage())


#: ``Time.prefix`` -> nanoseconds per unit (docs/protocol.md).
_PREFIX_NS = {pb.NONE: 1_000_000_000, pb.MILLI: 1_000_000, pb.MICRO: 1_000, pb.NANO: 1}


def run_meta(command: pb.StartRunCommand) -> dict[str, Any]:
    """What the taps are told of a run from its start command, when it said: the sample rate
    (Hz), the channels per carrier, ``sample_op`` / ``sample_op_end``, and the IC and OP
    times in nanoseconds."""
    meta: dict[str, Any] = {}
    if command.HasField("daq_config"):
        daq = command.daq_config
        if daq.sample_rate:
            meta["sample_rate"] = daq.sample_rate
        if daq.num_channels:
            meta["channels"] = daq.num_channels
        meta["sample_op"] = daq.sample_op
        meta["sample_op_end"] = daq.sample_op_end
    if command.HasField("run_config"):
        rc = command.run_config
        for name in ("ic_time", "op_time"):
            t = getattr(rc, name)
            factor = _PREFIX_NS.get(t.prefix)
            if rc.HasField(name) and factor is not None:
                meta[f"{name}_ns"] = int(t.value) * factor
    return meta

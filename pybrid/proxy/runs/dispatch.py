"""Forwarding the active session's requests to the backends, and their replies back.

Design note
-----------
Every request of the ACTIVE session that the front does not answer itself comes here; none is
silently ignored:

* ``udp_data_streaming_command`` is refused with ``udp_data_streaming_refused_response`` (316):
  the client then takes run data as TCP frames on its control connection.
* ``config_command`` is split by carrier path (:func:`~pybrid.proxy.runs.merge.split_config`);
  ``reset``/``extract`` naming an entity go to its backend; everything else — start run,
  reset, calibration, overload status, stop run, system ident, and kinds this proxy has never
  heard of (an undeclared oneof field parses with ``WhichOneof`` None and its content in
  unknown fields, which re-serialization keeps) — goes to every backend.
* Each backend copy gets a fresh request id (:meth:`BackendLane.request`); the replies are
  merged (:func:`~pybrid.proxy.runs.merge.merge_replies`) and the client's id is restored (or
  cleared when the request had none) before the reply is sent.
* No reply within the request timeout, or a backend lost meanwhile, becomes an
  ``error_message`` to the client naming the backend.
* ``start_run_command`` is handed to the :class:`~pybrid.proxy.runs.coordinator.RunCoordinator`
  *before* it is forwarded (it registers the run with the router: data may overtake the
  reply); the merged reply tells it whether the run was accepted or refused.
* **Held starts.**  A start arriving while a previous run of the session is still going on
  some backend (a device refuses a second run meanwhile) is held until that run has finished
  everywhere (``counters.held_starts``), unless it ends a repetitive run
  (``end_repetitive``/``clear_queue``) — but for at most ``Timing.start_hold`` (2 s): then it
  is answered with an ``error_message`` carrying its id, "previous run R still running on
  backend X …" (``counters.held_starts_refused``).  A released start is forwarded with what is
  left of the request timeout, so every start is answered within ``Timing.request_timeout``
  of its arrival, as the client expects.  A start released while yet another run of the
  session is unfinished waits again, against the same deadline.
* **Run ids are the proxy's.**  A start's run id is what the client calls the run; towards the
  backends the run gets a fresh id from ``new_run_id`` (random, injected for tests), and the
  router maps it back on every message to the client (:mod:`pybrid.proxy.data.router`).  So a
  client names only its own session's runs: another session's id (seen on the status page,
  say) means a new run of its own, never joins or ends that one, and a start with
  ``end_repetitive`` naming a run of another session is refused
  (``counters.foreign_run_ids``).
* **Run ids are unique while in use.**  A start naming the id of one of the session's runs
  still in progress is refused at once ("run id R is already in use …",
  ``counters.reused_run_ids``): replacing the run's bookkeeping would strand whatever waits
  for it.  The one exception is a start with ``end_repetitive`` naming that run: it is
  forwarded with that run's proxy id, and the run keeps its bookkeeping until it finishes.
* When an active session ends, the coordinator stops its unfinished runs and the router
  forgets them, so their remaining data is dropped instead of reaching the next session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backend.lane import BackendLane
from pybrid.proxy.clients.inflight import InFlight
from pybrid.proxy.clients.session import Session
from pybrid.proxy.config import Timing
from pybrid.proxy.data.router import RunRouter
from pybrid.proxy.runs.barrier import RunBarrier
from pybrid.proxy.runs.coordinator import DispatchCounters, RunCoordinator
from pybrid.proxy.runs.merge import NoBackend, copies, merge_replies, split_config, target_lanes
from pybrid.wire import messages
from pybrid.wire.correlate import RequestTimeout
from pybrid.wire.layout import new_run_id

UDP_REFUSAL = "the proxy delivers run data as TCP frames on this connection"
#: A held start forwarded late still gets at least this long for the backends' replies.
MIN_FORWARD_TIMEOUT = 0.5
#: Kinds the proxy understands (routed by content, followed, or merged as their kind needs);
#: any other — system ident, syslog, temperature, update, kinds unknown to this proxy — goes to
#: every backend as an opaque body and gets the first backend's reply (or the first error).
UNDERSTOOD_KINDS = frozenset((
    "config_command", "reset_command", "extract_command", "start_run_command",
    "stop_run_command", "get_overload_status_command", "calibration_command",
))

__all__ = ["UDP_REFUSAL", "DispatchCounters", "Dispatcher", "HeldStart"]


@attrs.define(eq=False)
class Dispatcher:
    """Forwards the active session's requests and maps the replies back; see the module note."""

    lanes: Sequence[BackendLane]
    router: RunRouter
    debug: bool = False
    counters: DispatchCounters = attrs.field(factory=DispatchCounters)
    #: The injected clock for run deadlines.
    clock: IReactorTime = attrs.field(kw_only=True)
    timing: Timing = attrs.field(factory=Timing)
    #: Fresh run ids towards the backends (unpredictable; tests inject a deterministic one).
    new_run_id: Callable[[], str] = new_run_id
    #: Requests forwarded (or held) per session and not yet answered (shared with the front).
    in_flight: InFlight[Session] = attrs.field(factory=InFlight)
    coordinator: RunCoordinator = attrs.field(init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.coordinator = RunCoordinator(self.lanes, self.router, self.clock, self.timing,
                                          counters=self.counters)

    def status(self) -> DispatchCounters:
        """A copy of the counters of the dispatcher and its run coordinator."""
        return attrs.evolve(self.counters)

    def handle(self, session: Session, env: pb.Envelope, kind: str, rid: str | None, *,
               since: float | None = None) -> None:
        """Forward one request of the active session (``since``: a held start's arrival)."""
        if kind == "udp_data_streaming_command":
            refusal = pb.UdpDataStreamingRefusedResponse(reason=UDP_REFUSAL)
            session.reply(messages.v1("udp_data_streaming_refused_response", refusal, id=rid))
            session.nudge()  # wakes a reference client stopping its receive thread (see front)
            return
        down = [lane.name for lane in self.lanes if not lane.healthy]
        if down:
            self._error(session, rid, f"Cluster degraded: backend {', '.join(down)} not ready")
            return
        owners = [lane.carriers for lane in self.lanes]
        try:
            if kind == "config_command":
                plan = split_config(env, owners)
            else:
                indices = target_lanes(env, kind, owners)
                plan = dict(zip(indices, copies(env, len(indices)), strict=True))
        except NoBackend as e:
            self._error(session, rid, str(e))
            return
        run_id = None
        timeout = None
        if kind == "start_run_command":
            command = env.message_v1.start_run_command
            client_id = command.run.id
            running = self.coordinator.own_run(session, client_id)
            if running is None and command.end_repetitive and \
                    self.coordinator.named_elsewhere(session, client_id):
                self.counters.foreign_run_ids += 1
                self._error(session, rid, (
                    f"run id {client_id!r} is not a run of this session; start_run with "
                    "end_repetitive not forwarded"))
                return
            if running is not None and not command.end_repetitive:
                self.counters.reused_run_ids += 1
                self._error(session, rid, (
                    f"run id {client_id!r} is already in use by a run in progress on "
                    f"backend {', '.join(running.pending_backends())}; start_run not "
                    "forwarded (a new run needs a new id)"))
                return
            previous = self.coordinator.unfinished(session)
            if running is None and previous and not (
                command.end_repetitive or command.clear_queue
            ):
                self._hold(session, env, kind, rid, previous, since)
                return
            if since is not None:  # held: the client's request timeout has been running
                left = self.timing.request_timeout - (self.clock.seconds() - since)
                timeout = max(left, MIN_FORWARD_TIMEOUT)
            # towards the backends the run has the proxy's id (a running one's, or a new one)
            backend_id = running.run_id if running is not None else self.new_run_id()
            for lane_env in plan.values():
                lane_env.message_v1.start_run_command.run.id = backend_id
            if running is None:
                run_id = backend_id
                self.coordinator.begin(session, plan[next(iter(plan))].message_v1
                                       .start_run_command, client_id)
        elif len(plan) > 1 and kind not in UNDERSTOOD_KINDS:
            self.log.debug(
                "session {session}: {kind} goes to every backend; its content is opaque to "
                "the proxy (an entity path in it does not select a backend) and the first "
                "backend's reply (or the first error) is returned", session=session.id,
                kind=kind)
        session.forwarded += 1
        self.counters.forwarded += 1
        self._began(session)
        names = [self.lanes[i].name for i in plan]
        pending = [self.lanes[i].request(lane_env, timeout=timeout)
                   for i, lane_env in plan.items()]
        d = defer.gatherResults(
            [p.addErrback(_as_error, name, kind) for p, name in zip(pending, names, strict=True)]
        )
        d.addCallback(self._replied, session, kind, rid, list(plan), run_id)
        d.addErrback(self._failed, session, rid)
        d.addBoth(self._settled, session)

    def outstanding(self, session: Session) -> int:
        return self.in_flight.count(session)

    def _began(self, session: Session) -> None:
        self.in_flight.began(session)

    def _settled(self, result: object, session: Session) -> None:
        self.in_flight.settled(session)

    def _replied(
        self, replies: list[pb.Envelope], session: Session, kind: str, rid: str | None,
        indices: list[int], run_id: str | None,
    ) -> None:
        names = [self.lanes[i].name for i in indices]
        reply = merge_replies(list(zip(names, replies, strict=True)))
        reply_kind = messages.kind_of(reply)
        if run_id is not None and reply_kind == "start_run_response":
            self.coordinator.accepted(run_id)
        elif run_id is not None:
            started = [self.lanes[i] for i, r in zip(indices, replies, strict=True)
                       if messages.kind_of(r) == "start_run_response"]
            self.coordinator.refused(run_id, started, messages.describe(reply))
        if reply_kind == "error_message":
            self.counters.errors += 1
        if session.closed:
            return
        out = pb.Envelope()
        out.CopyFrom(reply)
        if rid is None:
            out.message_v1.ClearField("id")
        else:
            out.message_v1.id = rid
        if self.debug:
            self.log.debug("session {session}: {kind} answered with {reply}",
                           session=session.id, kind=kind, reply=reply_kind)
        session.reply(out)

    def _failed(self, failure: Failure, session: Session, rid: str | None) -> None:
        self.log.failure("session {session}: forwarding failed", failure, session=session.id)
        if not session.closed:
            self._error(session, rid, f"proxy error: {failure.getErrorMessage()}")

    def _error(self, session: Session, rid: str | None, text: str) -> None:
        self.counters.errors += 1
        self.log.info("session {session}: {error}", session=session.id, error=text)
        session.reply(messages.error(text, id=rid))

    def _hold(self, session: Session, env: pb.Envelope, kind: str, rid: str | None,
              previous: list[RunBarrier], since: float | None) -> None:
        """Forward ``env`` once the session's previous runs have finished on every backend,
        or refuse it if they have not within ``Timing.start_hold`` of its arrival."""
        now = self.clock.seconds()
        if since is None:
            since = now
            self.counters.held_starts += 1
        left = since + self.timing.start_hold - now
        if left <= 0:
            self._refuse_held(session, rid, previous)
            return
        self.log.info("session {session}: start held until run {runs} has finished on every "
                      "backend (at most {left:.3g} s)", session=session.id,
                      runs=", ".join(b.client_id or b.run_id for b in previous), left=left)
        self._began(session)
        HeldStart(self, session, env, kind, rid, since, previous).wait(left)

    def _refuse_held(self, session: Session, rid: str | None,
                     previous: list[RunBarrier]) -> None:
        self.counters.held_starts_refused += 1
        running = [b for b in previous if not b.finished] or previous
        text = "; ".join(
            f"previous run {b.client_id or b.run_id} still running on backend "
            f"{', '.join(b.pending_backends()) or '?'}" for b in running)
        self._error(session, rid, f"{text} after {self.timing.start_hold:g} s; start_run not "
                                  "forwarded (a device runs one run at a time)")

    def session_ended(self, session: Session) -> None:
        """The active session is over: stop its unfinished runs, forget all of them."""
        self.coordinator.session_ended(session)

    def fail_runs(self, session: Session, why: str) -> bool:
        """The session cannot go on (overflow, shutdown): ERROR states for its runs' unfinished
        carriers, stamped per carrier; True if any was written."""
        return self.coordinator.fail_runs(session, why)

    def lane_lost(self, lane: BackendLane, why: str) -> bool:
        """A backend went away: its carriers fail the runs in progress (before the close).

        True if run errors were written to the active session.
        """
        return self.coordinator.lane_lost(lane, why)


@attrs.define(eq=False)
class HeldStart:
    """One start waiting for the session's previous runs: released or refused, exactly once."""

    dispatcher: Dispatcher
    session: Session
    env: pb.Envelope
    kind: str
    rid: str | None
    since: float
    previous: list[RunBarrier]
    _waiters: list[tuple[RunBarrier, defer.Deferred[int]]] = attrs.field(factory=list)
    _timer: IDelayedCall | None = None
    _done: bool = False

    def wait(self, seconds: float) -> None:
        self._timer = self.dispatcher.clock.callLater(seconds, self._expired)
        for barrier in self.previous:
            d = barrier.when_finished()
            self._waiters.append((barrier, d))
            d.addCallback(self._one_finished)
            if self._done:
                return

    def _one_finished(self, _outcome: int) -> None:
        if self._done or not all(b.finished for b in self.previous):
            return
        self._finish()
        dispatcher = self.dispatcher
        if not self.session.closed:
            try:
                dispatcher.handle(self.session, self.env, self.kind, self.rid, since=self.since)
            except Exception:
                dispatcher.log.failure("session {session}: held start failed",
                                       session=self.session.id)
                dispatcher._error(self.session, self.rid, "proxy error: held start failed")

    def _expired(self) -> None:
        self._timer = None
        if self._done:
            return
        self._finish()
        if not self.session.closed:
            self.dispatcher._refuse_held(self.session, self.rid, self.previous)

    def _finish(self) -> None:
        if not self._done:
            self.dispatcher._settled(None, self.session)
        self._done = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        waiters, self._waiters = self._waiters, []
        for barrier, d in waiters:
            barrier.forget_waiter(d)


def _as_error(failure: Failure, backend: str, kind: str) -> pb.Envelope:
    """A failed backend request as an error reply naming the backend."""
    exc: Any = failure.value
    if isinstance(exc, RequestTimeout):
        text = f"no reply to {kind} within {exc.seconds:g} s"
    else:
        text = failure.getErrorMessage() or type(exc).__name__
    return messages.error(f"backend {backend}: {text[:500]}")

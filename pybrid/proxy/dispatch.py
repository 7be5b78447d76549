"""Forwarding the active session's requests to the backends, and their replies back.

Design note
-----------
Every request of the ACTIVE session that the front does not answer itself comes here; none is
silently ignored:

* ``udp_data_streaming_command`` is refused with ``udp_data_streaming_refused_response`` (316):
  the client then takes run data as TCP frames on its control connection.
* ``config_command`` is split by carrier path (:func:`~pybrid.proxy.merge.split_config`);
  ``reset``/``extract`` naming an entity go to its backend; everything else — start run,
  reset, calibration, overload status, stop run, system ident, and kinds this proxy has never
  heard of (an undeclared oneof field parses with ``WhichOneof`` None and its content in
  unknown fields, which re-serialization keeps) — goes to every backend.
* Each backend copy gets a fresh request id (:meth:`BackendLane.request`); the replies are
  merged (:func:`~pybrid.proxy.merge.merge_replies`) and the client's id is restored (or
  cleared when the request had none) before the reply is sent.
* No reply within the request timeout, or a backend lost meanwhile, becomes an
  ``error_message`` to the client naming the backend.
* ``start_run_command`` is handed to the :class:`~pybrid.proxy.coordinator.RunCoordinator`
  *before* it is forwarded (it registers the run with the router: data may overtake the
  reply); the merged reply tells it whether the run was accepted or refused.  A start arriving
  while a previous run of the session is still going on some backend is held until that run
  has finished everywhere (``counters.held_starts``), unless it ends a repetitive run
  (``end_repetitive``/``clear_queue``).
* When an active session ends, the coordinator stops its unfinished runs and the router
  forgets them, so their remaining data is dropped instead of reaching the next session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backend import BackendLane
from pybrid.proxy.config import Timing
from pybrid.proxy.coordinator import DispatchCounters, RunCoordinator, describe
from pybrid.proxy.merge import NoBackend, copies, merge_replies, split_config, target_lanes
from pybrid.proxy.router import RunRouter
from pybrid.proxy.session import Session
from pybrid.wire import messages
from pybrid.wire.correlate import RequestTimeout

UDP_REFUSAL = "the proxy delivers run data as TCP frames on this connection"

__all__ = ["UDP_REFUSAL", "DispatchCounters", "Dispatcher"]


@attrs.define(eq=False)
class Dispatcher:
    """Forwards the active session's requests and maps the replies back; see the module note."""

    lanes: Sequence[BackendLane]
    router: RunRouter
    stop_timeout: float = 2.0
    debug: bool = False
    counters: DispatchCounters = attrs.field(factory=DispatchCounters)
    #: The injected clock for run deadlines.
    clock: Any = attrs.field(kw_only=True)
    timing: Timing = attrs.field(factory=Timing)
    coordinator: RunCoordinator = attrs.field(init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        timing = attrs.evolve(self.timing, stop_timeout=self.stop_timeout)
        self.coordinator = RunCoordinator(self.lanes, self.router, self.clock, timing,
                                          counters=self.counters)

    def handle(self, session: Session, env: pb.Envelope, kind: str, rid: str | None) -> None:
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
        if kind == "start_run_command":
            command = env.message_v1.start_run_command
            previous = self.coordinator.unfinished(session)
            if previous and not (command.end_repetitive or command.clear_queue):
                self._hold(session, env, kind, rid, previous)
                return
            run_id = command.run.id
            self.coordinator.begin(session, command)
        session.forwarded += 1
        self.counters.forwarded += 1
        names = [self.lanes[i].name for i in plan]
        pending = [self.lanes[i].request(lane_env) for i, lane_env in plan.items()]
        d = defer.gatherResults(
            [p.addErrback(_as_error, name, kind) for p, name in zip(pending, names, strict=True)]
        )
        d.addCallback(self._replied, session, kind, rid, list(plan), run_id)
        d.addErrback(self._failed, session, rid)

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
            self.coordinator.refused(run_id, started, describe(reply))
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
              previous: list[Any]) -> None:
        """Forward ``env`` once the session's previous runs have finished on every backend."""
        self.counters.held_starts += 1
        self.log.info("session {session}: start held until run {runs} has finished on every "
                      "backend", session=session.id, runs=", ".join(b.run_id for b in previous))
        d = defer.gatherResults([b.when_finished() for b in previous])
        d.addCallback(lambda _: None if session.closed else self.handle(session, env, kind, rid))
        d.addErrback(self._failed, session, rid)

    def session_ended(self, session: Session) -> None:
        """The active session is over: stop its unfinished runs, forget all of them."""
        self.coordinator.session_ended(session)

    def lane_lost(self, lane: BackendLane, why: str) -> bool:
        """A backend went away: its carriers fail the runs in progress (before the close).

        True if run errors were written to the active session.
        """
        return self.coordinator.lane_lost(lane, why)


def _as_error(failure: Failure, backend: str, kind: str) -> pb.Envelope:
    """A failed backend request as an error reply naming the backend."""
    exc: Any = failure.value
    if isinstance(exc, RequestTimeout):
        text = f"no reply to {kind} within {exc.seconds:g} s"
    else:
        text = failure.getErrorMessage() or type(exc).__name__
    return messages.error(f"backend {backend}: {text[:500]}")

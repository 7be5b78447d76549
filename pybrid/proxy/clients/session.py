"""One client connection as the proxy's scheduler and dispatcher see it.

Its states and every transition between them are the table
:data:`~pybrid.proxy.clients.states.SESSION`; the front
(:mod:`pybrid.proxy.clients.front`) and the scheduler (:mod:`pybrid.proxy.clients.scheduler`)
fire the events with :meth:`Session.transition`.

``SessionState`` lives in :mod:`pybrid.proxy.clients.states` and is re-exported here.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.clients.sender import ClientSender, SenderStatus
from pybrid.proxy.clients.states import SESSION, SessionState
from pybrid.wire import messages


class IdleTimer(Protocol):
    """What a session needs of its :class:`~pybrid.proxy.clients.scheduler.Scheduler`."""

    def touch(self, session: Session) -> None: ...


@attrs.frozen
class SessionInfo:
    """One session as the status page shows it (:meth:`Session.status`)."""

    id: str
    peer: str
    #: A :class:`SessionState` value ("active", "queued" …).
    state: str
    authenticated: bool
    #: Runs started and not yet ended, sorted.
    runs: tuple[str, ...]
    forwarded: int
    busy_replies: int
    sender: SenderStatus


@attrs.define(eq=False)
class Session:
    """A client's identity, state, authentication, runs in progress and output.

    It is also the router's :class:`~pybrid.proxy.data.router.RunTarget` for the runs it started:
    :meth:`deliver` writes run traffic, :meth:`run_ended` restarts the idle timeout (which does
    not run down while a run is in progress).  ``state`` changes only by :meth:`transition`
    (the table :data:`~pybrid.proxy.clients.states.SESSION`).
    """

    id: str
    #: "host:port" of the client, for logs.
    peer: str
    sender: ClientSender
    state: SessionState = SessionState.PENDING
    authenticated: bool = False
    #: Runs started by this session and not yet ended on every carrier.
    runs: set[str] = attrs.field(factory=set)
    forwarded: int = 0
    busy_replies: int = 0
    #: The scheduler that admitted the session (it restarts the idle timeout on activity).
    scheduler: IdleTimer | None = None
    idle_timer: IDelayedCall | None = None
    window_timer: IDelayedCall | None = None
    #: Set while the session waits to be closed after a backend was lost (scheduler.degrade).
    close_timer: IDelayedCall | None = None
    #: Clock and delays for :meth:`nudge` (set by the front; no nudges without a clock).
    clock: IReactorTime | None = None
    nudge_delays: tuple[float, ...] = ()
    nudge_timers: list[IDelayedCall] = attrs.field(factory=list)
    nudges: int = 0
    #: The client's IP address (the auth throttle counts wrong tokens per address).
    host: str = ""

    log = Logger()

    def status(self) -> SessionInfo:
        return SessionInfo(id=self.id, peer=self.peer, state=self.state.value,
                           authenticated=self.authenticated, runs=tuple(sorted(self.runs)),
                           forwarded=self.forwarded, busy_replies=self.busy_replies,
                           sender=self.sender.status())

    def transition(self, event: str) -> SessionState:
        """Fire ``event`` (:data:`~pybrid.proxy.clients.states.SESSION`); the new state.  Raises
        :class:`~pybrid.machine.InvalidTransition` for a pair the table does not list."""
        self.state = state = SESSION.next(self.state, event)
        return state

    @property
    def session_id(self) -> str:
        return self.id

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def reply(self, env: pb.Envelope) -> None:
        self.sender.send_envelope(env)

    def deliver(self, payload: bytes) -> None:
        self.sender.send_payload(payload)

    def run_ended(self, run_id: str, state: int) -> None:
        self.runs.discard(run_id)
        self.log.info("session {session}: run {run} ended ({state})", session=self.id,
                      run=run_id, state=pb.RunState.Name(state))
        if self.scheduler is not None and not self.closed:
            self.scheduler.touch(self)

    def nudge(self) -> None:
        """Send generic pongs at ``nudge_delays`` until :meth:`stop_nudging` (next frame)."""
        self.stop_nudging()
        if self.clock is not None and not self.closed:
            self.nudge_timers = [self.clock.callLater(d, self._nudge) for d in self.nudge_delays]

    def _nudge(self) -> None:
        if not self.closed:
            self.nudges += 1
            self.sender.send_envelope(messages.generic_pong())

    def stop_nudging(self) -> None:
        timers, self.nudge_timers = self.nudge_timers, []
        for timer in timers:
            if timer.active():
                timer.cancel()

    def close(self, description: str | None = None, *, grace: float | None = None,
              linger: float = 0.0) -> None:
        """Send an id-less ``error_message`` (if given), then close after the flush (see
        :meth:`ClientSender.close` for ``grace`` and ``linger``)."""
        if description is not None:
            self.sender.send_envelope(messages.error(description))
        self.sender.close(grace=grace, linger=linger)

    def cancel_timers(self) -> None:
        self.stop_nudging()
        timers = (self.idle_timer, self.window_timer, self.close_timer)
        self.idle_timer = self.window_timer = self.close_timer = None
        for timer in timers:
            if timer is not None and timer.active():
                timer.cancel()

"""One client connection as the proxy's scheduler and dispatcher see it."""

from __future__ import annotations

import enum
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.clients.sender import ClientSender
from pybrid.wire import messages


class SessionState(enum.Enum):
    #: Connected; the standalone-ping window is open and nothing was decided yet.
    PENDING = "pending"
    #: Admitted, but has not asked for the device yet (discovery, pings, auth): holds no place.
    IDLE = "idle"
    #: Asked for the device and waits for its turn: served from the cache, otherwise busy.
    QUEUED = "queued"
    #: Owns the backends: its requests are forwarded and its runs' data reach it.
    ACTIVE = "active"
    CLOSED = "closed"


@attrs.define(eq=False)
class Session:
    """A client's identity, state, authentication, runs in progress and output.

    It is also the router's :class:`~pybrid.proxy.data.router.RunTarget` for the runs it started:
    :meth:`deliver` writes run traffic, :meth:`run_ended` restarts the idle timeout (which does
    not run down while a run is in progress).  State transitions belong to the
    :class:`~pybrid.proxy.clients.scheduler.Scheduler`.
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
    scheduler: Any = None
    idle_timer: IDelayedCall | None = None
    window_timer: IDelayedCall | None = None
    #: Set while the session waits to be closed after a backend was lost (scheduler.degrade).
    close_timer: IDelayedCall | None = None
    #: Clock and delays for :meth:`nudge` (set by the front; no nudges without a clock).
    clock: IReactorTime | None = None
    nudge_delays: tuple[float, ...] = ()
    nudge_timers: list[Any] = attrs.field(factory=list)
    nudges: int = 0
    #: The client's IP address (the auth throttle counts wrong tokens per address).
    host: str = ""

    log = Logger()

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

    def close(self, description: str | None = None) -> None:
        """Send an id-less ``error_message`` (if given), then close after the flush."""
        if description is not None:
            self.sender.send_envelope(messages.error(description))
        self.sender.close()

    def cancel_timers(self) -> None:
        self.stop_nudging()
        for name in ("idle_timer", "window_timer", "close_timer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

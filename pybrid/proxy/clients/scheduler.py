"""Who owns the backends: admission, the FIFO queue, promotion and idle timeouts.

Design note
-----------
The session's states and transitions are one table,
:data:`pybrid.proxy.clients.session.SESSION`; the scheduler fires ``admit`` / ``refuse``
(:meth:`Scheduler.open`: --max-sessions), ``claim`` (IDLE to QUEUED, FIFO in the order of
claims), ``promote`` (QUEUED to ACTIVE: the moment the active session ends, or the last
unhealthy backend becomes healthy) and ``end`` (any state to CLOSED: client gone, timeout,
cluster degraded, overflow).  :meth:`Scheduler.degrade` with a grace keeps the active session
ACTIVE and ends it after ``grace`` (a run was failing).

A session claims the device with its first request that needs it (anything but pings, auth
and the cached extract).  Until then it holds no place in the queue: the reference client's
discovery connection (extract, then close) never blocks anybody, and a client whose discovery
overlaps another client's session is not pushed behind it.

Promotion is event-driven: :meth:`Scheduler.end` and :meth:`Scheduler.promote` (called by the
service when a backend becomes ready) hand over immediately; nothing polls.

Every open session has an idle timer of ``session_timeout`` seconds, restarted by
:meth:`touch` (the front calls it for every request except pings, which do not count as
activity).  A QUEUED session's timer runs ``queued_grace`` longer: it waits because it was told
busy, and the reference client asks again only 2 s (plus a round trip) after each busy reply —
with ``--session-timeout 2`` it would otherwise time out while it keeps asking.  Promotion
restarts the timer with the same allowance (the client learns of it only when it next asks).
A session that never ran times out like any other.  While a session has a run in
progress the timer does not close it (it re-arms), and the end of the run restarts it.  An
expired session gets an ``error_message`` saying so, then its connection closes after the
flush.

The ``on_end`` hook (the dispatcher) is called when an ACTIVE session ends, before the next
one is promoted, so stop_run for its unfinished runs goes out first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proxy.clients.session import Session, SessionInfo, SessionState

OVERLOADED = "Server overloaded"


@attrs.frozen
class SchedulerStatus:
    """Who owns the backends, who waits, and what admission did (:meth:`Scheduler.status`)."""

    #: Every admitted session (idle, queued, active), sorted by id.
    sessions: tuple[SessionInfo, ...]
    active: str | None
    #: Queued session ids, in queue order.
    queue: tuple[str, ...]
    max_sessions: int
    session_timeout: float
    handovers: int
    overloaded: int
    timeouts: int


@attrs.define(eq=False)
class Scheduler:
    """One active session, a FIFO queue of waiting ones, and their idle timeouts."""

    clock: IReactorTime
    healthy: Callable[[], bool]
    on_end: Callable[[Session], None] = lambda session: None
    max_sessions: int = 8
    session_timeout: float = 10.0
    active: Session | None = None
    queue: deque[Session] = attrs.field(factory=deque)
    sessions: set[Session] = attrs.field(factory=set)
    handovers: int = 0
    overloaded: int = 0
    timeouts: int = 0
    #: Extra idle allowance of queued sessions, and of a session just promoted (see the note).
    queued_grace: float = 0.0

    log = Logger()

    def status(self) -> SchedulerStatus:
        return SchedulerStatus(
            sessions=tuple(s.status() for s in sorted(self.sessions, key=lambda s: s.id)),
            active=None if self.active is None else self.active.id,
            queue=tuple(s.id for s in self.queue), max_sessions=self.max_sessions,
            session_timeout=self.session_timeout, handovers=self.handovers,
            overloaded=self.overloaded, timeouts=self.timeouts,
        )

    @property
    def count(self) -> int:
        """Admitted sessions: idle, queued and active."""
        return len(self.sessions)

    def open(self, session: Session) -> bool:
        """Admit a new session; False (and the session closed) when the proxy is full."""
        if self.count >= self.max_sessions:
            self.overloaded += 1
            self.log.warn("session {session} from {peer} refused: {count} sessions open "
                          "(--max-sessions {max})", session=session.id, peer=session.peer,
                          count=self.count, max=self.max_sessions)
            session.transition("refuse")
            session.cancel_timers()
            session.close(OVERLOADED)
            return False
        session.scheduler = self
        session.transition("admit")
        self.sessions.add(session)
        self.touch(session)
        return True

    def claim(self, session: Session) -> SessionState:
        """The session asks for the device: queue it (if idle) and promote; its new state."""
        if session.state is SessionState.IDLE:
            session.transition("claim")
            self.queue.append(session)
            self.promote()
            if session.state is SessionState.QUEUED:
                self.touch(session)  # now with the queued allowance
                self.log.info("session {session} from {peer} queued (position {position})",
                              session=session.id, peer=session.peer, position=len(self.queue))
        return session.state

    def promote(self) -> None:
        """Make the head of the queue active if nobody is and the backends are healthy."""
        while self.active is None and self.queue and self.healthy():
            session = self.queue.popleft()
            session.transition("promote")
            session.sender.activate()  # --client-buffer, not the waiting sizes
            self.active = session
            self.handovers += 1
            self.touch(session, self.queued_grace)
            self.log.info("session {session} from {peer} active", session=session.id,
                          peer=session.peer)

    def touch(self, session: Session, extra: float | None = None) -> None:
        """Activity: restart the session's idle timer (``extra``: more than the timeout; by
        default ``queued_grace`` for a queued session, none otherwise)."""
        if session.closed:
            return
        if extra is None:
            extra = self.queued_grace if session.state is SessionState.QUEUED else 0.0
        delay = self.session_timeout + extra
        timer = session.idle_timer
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            session.idle_timer = self.clock.callLater(delay, self._expire, session)

    def end(self, session: Session, why: str) -> None:
        """The session is over (idempotent); promote the next one."""
        if session.state is SessionState.CLOSED and session is not self.active:
            return
        was = session.state
        session.transition("end")
        session.cancel_timers()
        self.sessions.discard(session)
        if session is self.active:
            self.active = None
            self.log.info("session {session} from {peer} ended: {why}", session=session.id,
                          peer=session.peer, why=why)
            self.on_end(session)
        elif was in (SessionState.QUEUED, SessionState.IDLE):
            if was is SessionState.QUEUED:
                self.queue.remove(session)
            self.log.info("{state} session {session} from {peer} ended: {why}",
                          state=was.value, session=session.id, peer=session.peer, why=why)
        self.promote()

    def close(self, session: Session, description: str | None, why: str) -> None:
        """End the session now and close its connection after sending ``description``."""
        self.end(session, why)
        session.close(description)

    def degrade(self, description: str, grace: float = 0.0) -> None:
        """A backend was lost: the active session cannot continue; it is told and closed.

        With ``grace`` the close waits that long: the reference client drops state changes
        that arrive right before its connection closes, so the run errors written for the lost
        backend's carriers need a moment to be taken in.  The session stays active meanwhile
        (nobody is promoted while a backend is down anyway).
        """
        session = self.active
        if session is None or session.close_timer is not None:
            return
        if grace <= 0:
            self.close(session, description, description)
            return
        session.close_timer = self.clock.callLater(grace, self._degraded, session, description)

    def _degraded(self, session: Session, description: str) -> None:
        session.close_timer = None
        if not session.closed:
            self.close(session, description, description)

    def _expire(self, session: Session) -> None:
        session.idle_timer = None
        if session.closed:
            return
        if session.runs:
            session.idle_timer = self.clock.callLater(self.session_timeout, self._expire, session)
            return
        self.timeouts += 1
        text = f"Session timed out after {self.session_timeout:g} s without a request"
        self.close(session, text, "idle timeout")

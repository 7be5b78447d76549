"""The client side's two state machines, each one table: :data:`SESSION` and :data:`SENDER`.

A :class:`~pybrid.proxy.clients.session.Session` changes state only by
:meth:`~pybrid.proxy.clients.session.Session.transition`, a
:class:`~pybrid.proxy.clients.sender.ClientSender` only by its ``_to``; a pair that is not in
its table raises :class:`~pybrid.machine.InvalidTransition` (see :mod:`pybrid.machine`).
"""

from __future__ import annotations

import enum

from pybrid.machine import Table


class SessionState(enum.Enum):
    #: Connected; the standalone-ping window is open and nothing was decided yet.
    PENDING = "pending"
    #: Answered a standalone ping: answers further pings, holds no place; closes after
    #: ``Timing.ping_linger`` without one (any other frame opens a session after all).
    PING = "ping"
    #: Admitted, but has not asked for the device yet (discovery, pings, auth): holds no place.
    IDLE = "idle"
    #: Asked for the device and waits for its turn: served from the cache, otherwise busy.
    QUEUED = "queued"
    #: Owns the backends: its requests are forwarded and its runs' data reach it.
    ACTIVE = "active"
    CLOSED = "closed"


_PENDING, _PING, _IDLE, _QUEUED, _ACTIVE, _CLOSED = SessionState

#: Every session transition; the comment names who fires the event, and why.
SESSION: Table[SessionState] = Table("session", {
    (_PENDING, "standalone_ping"): _PING,  # front: a generic ping inside the ping window
    (_PING, "ping"): _PING,  # front: another ping on the ping connection
    (_PING, "other_frame"): _PENDING,  # front: anything else; a session after all
    (_PING, "ping_over"): _CLOSED,  # front: ping_linger passed without a ping
    (_PENDING, "deadline"): _CLOSED,  # front: no complete frame / no auth in time
    (_PENDING, "evict"): _CLOSED,  # front: past --max-pending, the oldest pending one goes
    (_PENDING, "admit"): _IDLE,  # scheduler.open: a slot (counts towards --max-sessions)
    (_PENDING, "refuse"): _CLOSED,  # scheduler.open: "Server overloaded"
    (_IDLE, "claim"): _QUEUED,  # scheduler.claim: the first request that needs the device
    (_QUEUED, "promote"): _ACTIVE,  # scheduler.promote: nobody active, every backend healthy
    # scheduler.end: client gone, idle timeout, overflow, cluster degraded (idempotent)
    **{(state, "end"): _CLOSED for state in SessionState},
})


class SenderState(enum.Enum):
    # hashed by identity (members are singletons): the table lookup of a pause or resume
    # stays in C instead of calling Enum.__hash__
    __hash__ = object.__hash__

    #: Frames are written straight through.
    OPEN = "open"
    #: The transport paused us: frames are queued.
    PAUSED = "paused"
    #: Closed to new frames; the queue is being written (transport not paused / paused).
    CLOSING = "closing"
    CLOSING_PAUSED = "closing-paused"
    #: The queue is written; waiting ``linger`` before ``loseConnection``.
    LINGERING = "lingering"
    #: Unregistered as producer and ``loseConnection`` called: the transport flushes, then closes.
    RELEASED = "released"
    #: The client did not take its last bytes within the grace: ``abortConnection`` called.
    ABORTED = "aborted"
    #: The connection is lost.
    GONE = "gone"


_OPEN, _PAUSED, _CLOSING, _CLOSING_PAUSED, _LINGERING, _RELEASED, _ABORTED, _GONE = SenderState
_SETTLED = (_LINGERING, _RELEASED, _ABORTED, _GONE)

#: Every sender transition.  Self-loops are events that change nothing in that state: pause and
#: resume once the queue is written, a second close.
SENDER: Table[SenderState] = Table("client sender", {
    (_OPEN, "pause"): _PAUSED,  # Twisted's buffer passed bufferSize
    (_PAUSED, "pause"): _PAUSED,
    (_PAUSED, "resume"): _OPEN,  # Twisted's buffer was written: write the queue
    (_OPEN, "resume"): _OPEN,
    (_OPEN, "close"): _CLOSING,  # close(): accept nothing more, write what was accepted
    (_PAUSED, "close"): _CLOSING_PAUSED,
    (_CLOSING, "pause"): _CLOSING_PAUSED,
    (_CLOSING_PAUSED, "pause"): _CLOSING_PAUSED,
    (_CLOSING_PAUSED, "resume"): _CLOSING,
    (_CLOSING, "resume"): _CLOSING,
    (_CLOSING, "drained"): _LINGERING,  # the queue is written (or was empty)
    (_CLOSING_PAUSED, "drained"): _LINGERING,
    (_LINGERING, "let_go"): _RELEASED,  # the linger is over (or there is none)
    **{(state, "close"): state for state in (_CLOSING, _CLOSING_PAUSED, *_SETTLED)},
    **{(state, event): state for state in _SETTLED for event in ("pause", "resume")},
    # close_grace passed with bytes still unwritten
    **{(state, "abort"): _ABORTED for state in (_CLOSING, _CLOSING_PAUSED, _LINGERING,
                                                _RELEASED)},
    **{(state, "gone"): _GONE for state in SenderState},  # the connection is lost
})

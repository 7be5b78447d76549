"""A backend lane's vocabulary: its states and their table (:data:`LANE`), its reconnect
backoff (:func:`backoff_delay`), errors, counters and status record, the router side it
hands run traffic to (:class:`RunSink`), and the cluster's verdict (:class:`Readiness`, judged
by :func:`pybrid.proxy.backend.health.readiness`).  The lane itself is
:class:`pybrid.proxy.backend.lane.BackendLane`."""

from __future__ import annotations

import enum
from typing import Any, Protocol

import attrs

from pybrid.machine import Table
from pybrid.proto import pb
from pybrid.proxy.backend.intake import DatagramSink, IntakeStatus


class LaneState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    HANDSHAKE = "handshake"
    READY = "ready"
    WAITING = "waiting"


_STOPPED, _CONNECTING, _HANDSHAKE, _READY, _WAITING = LaneState

#: Every lane transition (the lane's design note tells the story).
LANE: Table[LaneState] = Table("backend lane", {
    (_STOPPED, "start"): _CONNECTING,  # start(): the first connectTCP
    (_WAITING, "retry"): _CONNECTING,  # the backoff delay passed: connectTCP again
    (_CONNECTING, "connected"): _HANDSHAKE,  # extract, reset, UDP negotiation
    (_CONNECTING, "failed"): _WAITING,  # the connect failed: wait backoff_delay()
    (_HANDSHAKE, "ready"): _READY,  # the handshake is done: the lane is healthy
    (_HANDSHAKE, "lost"): _WAITING,  # the connection went (also: handshake failed, silence)
    (_READY, "lost"): _WAITING,  # the connection went (also: silence)
    **{(state, "stop"): _STOPPED for state in LaneState},  # stop(), from anywhere
})


def backoff_delay(attempt: int, base: float, factor: float, cap: float,
                  jitter: float = 0.0, random_value: float = 0.5) -> float:
    """Seconds to wait before reconnect ``attempt`` (1 after the first failure).

    ``base × factor^(attempt − 1)``, at most ``cap``; then spread by ``±jitter`` of itself:
    ``random_value`` in [0, 1) picks the point (0.5: the middle, no change).  A bad argument is
    a :class:`ValueError`.
    """
    if attempt < 1:
        raise ValueError(f"backoff attempt must be at least 1, not {attempt}")
    if not (base > 0 and factor >= 1 and cap >= 0):
        raise ValueError(f"backoff needs base > 0, factor >= 1, cap >= 0 (got {base}, {factor}, "
                         f"{cap})")
    if not (0 <= jitter <= 1 and 0 <= random_value <= 1):
        raise ValueError(f"backoff jitter and random value must lie in [0, 1] (got {jitter}, "
                         f"{random_value})")
    try:
        delay = min(base * factor ** (attempt - 1), cap)
    except OverflowError:  # a backend down for days: the exponent outgrows a float
        delay = cap
    return delay * (1.0 + jitter * (2.0 * random_value - 1.0))


class BackendUnavailable(Exception):
    """A request was made to a backend that is not connected."""


class RequestTooLarge(Exception):
    """A request would exceed the device's frame limit once it carries the proxy's request id."""


class HandshakeError(Exception):
    """The backend answered the start-up handshake with something unusable."""


class RunSink(DatagramSink, Protocol):
    """Where a lane's run traffic goes, from its intake socket and from its TCP lane: the run
    router (which copies it to the monitor tap first)."""

    def route_message(self, lane: Any, env: pb.Envelope, payload: bytes) -> None: ...


@attrs.define
class LaneCounters:
    connects: int = 0
    pings: int = 0
    pongs: int = 0
    unsolicited: int = 0
    busy: int = 0
    keepalives: int = 0


@attrs.frozen
class LaneStatus:
    """One backend lane as the status page shows it (:meth:`BackendLane.status`)."""

    name: str
    #: A :class:`LaneState` value ("ready", "waiting" …).
    state: str
    healthy: bool
    #: The backend file's location of the backend, as written there; None without one.
    location: str | None
    carriers: tuple[str, ...]
    #: "udp" or "tcp" once negotiated, else None.
    data_mode: str | None
    connects: int
    intake: IntakeStatus | None


@attrs.frozen
class Readiness:
    """The verdict on the cluster: may a session be promoted, and if not, why."""

    #: Backends that are not READY, one sentence each ("backend H:P is waiting").
    down: tuple[str, ...] = ()
    #: Contradictions between the backends' descriptions
    #: (:func:`pybrid.proxy.backend.cache.conflicts`).
    conflicts: tuple[str, ...] = ()
    #: No backend is configured at all.
    empty: bool = False

    @property
    def ready(self) -> bool:
        return not (self.down or self.conflicts or self.empty)

    @property
    def state(self) -> str:
        """One word for the page: ``ready``, ``misconfigured`` (conflicts come first: a
        reconnect will not fix them) or ``degraded``."""
        if self.ready:
            return "ready"
        return "misconfigured" if self.conflicts else "degraded"

    @property
    def reason(self) -> str | None:
        """Why not ready, every problem in one line; None when ready."""
        problems = self.problems
        return "; ".join(problems) if problems else None

    @property
    def problems(self) -> tuple[str, ...]:
        return (("no backend configured",) if self.empty else ()) + self.conflicts + self.down


__all__ = ["BackendUnavailable", "HandshakeError", "LaneCounters", "LaneState", "LaneStatus",
           "Readiness", "RequestTooLarge", "RunSink"]

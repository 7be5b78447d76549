"""A backend lane's vocabulary: its states, errors, counters and status record, and the
router side it hands run traffic to (:class:`RunSink`).  The lane itself is
:class:`pybrid.proxy.backend.lane.BackendLane`."""

from __future__ import annotations

import enum
from typing import Any, Protocol

import attrs

from pybrid.proto import pb
from pybrid.proxy.backend.intake import DatagramSink, IntakeStatus


class LaneState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    HANDSHAKE = "handshake"
    READY = "ready"
    WAITING = "waiting"


class BackendUnavailable(Exception):
    """A request was made to a backend that is not connected."""


class RequestTooLarge(Exception):
    """A request would exceed the device's frame limit once it carries the proxy's request id."""


class HandshakeError(Exception):
    """The backend answered the start-up handshake with something unusable."""


class RunSink(DatagramSink, Protocol):
    """Where a lane's run traffic goes, from its intake socket and from its TCP lane: the run
    router (which copies it to the monitor tap first)."""

    def route_message(self, source: Any, env: pb.Envelope, payload: bytes) -> None: ...


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


__all__ = ["BackendUnavailable", "HandshakeError", "LaneCounters", "LaneState", "LaneStatus",
           "RequestTooLarge", "RunSink"]

"""The frozen records of a status snapshot (see :mod:`pybrid.proxy.status.access`).

Every field that may be unknown — a counter another module does not keep (yet), a rate before
two samples — is ``None``; renderers show it as "n/a" (HTML, JSON ``null``) or leave the metric
out (Prometheus).  Times are seconds of the proxy's clock (the epoch, with the real reactor).
"""

from __future__ import annotations

from typing import Any

import attrs

from pybrid.proxy.backend.model import LaneStatus, Readiness
from pybrid.proxy.clients.front import FrontCounters
from pybrid.proxy.clients.scheduler import SchedulerStatus
from pybrid.proxy.data.model import RouterStatus
from pybrid.proxy.runs.coordinator import DispatchCounters
from pybrid.proxy.runs.history import RunRecord
from pybrid.proxy.taps.multicast import TapCounters


@attrs.frozen
class ServiceStatus:
    """Every part's own status record, as the proxy reports them at one moment."""

    #: ``HOST:PORT`` of the client listener; None before it is bound.
    listen: str | None
    auth: bool
    #: The backend file's wires as (source, target) ``LOCATION/PIN`` texts.
    wires: tuple[tuple[str, str], ...]
    lanes: tuple[LaneStatus, ...]
    router: RouterStatus
    scheduler: SchedulerStatus
    front: FrontCounters
    dispatch: DispatchCounters
    #: The multicast monitor tap's counters (``--monitor``), or None without a tap.
    monitor: TapCounters | None
    #: ``--shm-tap``: one :class:`pybrid.proxy.taps.shm.tap.ShmTapStatus` per tap.
    shm_taps: tuple[Any, ...] = ()
    #: ``--nats``: :class:`pybrid.proxy.taps.nats.child.NatsExportStatus`, or None.
    nats: Any = None
    #: ``--live-process``: :class:`pybrid.proxy.taps.live.child.LiveProcessStatus`, or None.
    live_process: Any = None
    #: May a session be promoted (the scheduler's own verdict, pybrid.proxy.backend.health).
    readiness: Readiness = attrs.field(kw_only=True)
    #: The last runs that ended, oldest first (pybrid.proxy.runs.history).
    recent_runs: tuple[RunRecord, ...] = attrs.field(default=(), kw_only=True)


@attrs.frozen
class LogEntry:
    """One recent warning or error of the proxy's loggers."""

    time: float
    level: str
    namespace: str
    text: str


@attrs.frozen(kw_only=True)
class BackendStatus(LaneStatus):
    """One backend lane: its own record (health, location, carriers, counters, UDP intake),
    plus the intake's rates."""

    datagram_rate: float | None
    byte_rate: float | None


@attrs.frozen
class CarrierStatus:
    """One carrier (``/<MAC>``) of a backend: data chunks forwarded and chunk gaps."""

    path: str
    backend: str
    location: str | None
    chunks: int
    chunk_rate: float | None
    gaps: int


@attrs.frozen
class RunStatus:
    """A run in progress: carriers it was started on, how many have finished, and the data
    chunks received so far (all carriers)."""

    id: str
    carriers: int | None
    finished: int | None
    chunks: int | None = None


@attrs.frozen
class SessionStatus:
    """One client session: who, since when, its runs and what was sent to it."""

    id: str
    peer: str
    state: str
    since: float | None
    authenticated: bool
    runs: tuple[RunStatus, ...]
    forwarded: int
    busy_replies: int
    frames: int
    bytes: int
    dropped: int
    frame_rate: float | None
    byte_rate: float | None
    buffered: int | None
    buffer_limit: int | None


@attrs.frozen
class ProxyStatus:
    """Everything the status page, ``/status.json`` and ``/metrics`` show."""

    now: float
    #: The proxy's version (:func:`pybrid.version.version`).
    version: str
    started: float | None
    listen: str | None
    auth: bool
    max_sessions: int | None
    session_timeout: float | None
    backends: tuple[BackendStatus, ...]
    wires: tuple[tuple[str, str], ...]
    carriers: tuple[CarrierStatus, ...]
    active: SessionStatus | None
    queue: tuple[SessionStatus, ...]
    idle: tuple[SessionStatus, ...]
    counters: dict[str, int]
    errors: tuple[LogEntry, ...]
    log_counts: dict[str, int]
    #: The multicast monitor tap's counters, or None without ``--monitor``.
    monitor: TapCounters | None = None
    #: ``--shm-tap``: one :class:`pybrid.proxy.taps.shm.tap.ShmTapStatus` per tap.
    shm_taps: tuple[Any, ...] = ()
    #: ``--nats``: :class:`pybrid.proxy.taps.nats.child.NatsExportStatus`, or None.
    nats: Any = None
    #: ``--live-process``: :class:`pybrid.proxy.taps.live.child.LiveProcessStatus`, or None.
    live_process: Any = None
    #: The scheduler's verdict on the cluster: ``healthy`` and the page's pill show it (a
    #: snapshot built without one is not ready).
    readiness: Readiness = attrs.field(factory=lambda: Readiness(empty=True), kw_only=True)
    #: The last runs that ended, oldest first.
    recent_runs: tuple[RunRecord, ...] = attrs.field(default=(), kw_only=True)

    @property
    def uptime(self) -> float | None:
        return None if self.started is None else max(0.0, self.now - self.started)

    @property
    def healthy(self) -> bool:
        """Sessions can be promoted: exactly when the scheduler would promote one."""
        return self.readiness.ready

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``/status.json``)."""
        data = attrs.asdict(self)
        data["uptime"] = self.uptime
        data["healthy"] = self.healthy
        data["readiness"].update(ready=self.healthy, state=self.readiness.state,
                                 reason=self.readiness.reason)
        data["wires"] = [{"source": s, "target": t} for s, t in self.wires]
        for run, record in zip(data["recent_runs"], self.recent_runs, strict=True):
            run["duration"] = record.duration
        return data

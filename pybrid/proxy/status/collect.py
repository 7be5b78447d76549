"""Snapshots of a running proxy, and the counter samples its rates come from.

Design note
-----------
The collector reads nothing but records: its :class:`StatusProvider` (the
:class:`~pybrid.proxy.service.ProxyService`) returns one
:class:`~pybrid.proxy.status.model.ServiceStatus`, in which every part reports its own typed
record (``status()`` of lanes, intakes, router, scheduler, sessions, senders, front,
dispatcher; the monitor tap's counters).  A renamed field is a type error, not an "n/a".
:meth:`StatusCollector.snapshot` arranges those records as the page shows them
(:class:`~pybrid.proxy.status.model.ProxyStatus`) and adds rates and "since" times.

Rates are differences of cumulative counters: :meth:`StatusCollector.sample` runs every
``interval`` seconds on the injected clock and keeps the last ``window`` samples; a rate is
(newest − oldest) / elapsed over that window.  "Since" times of sessions are observed the same
way (the first sample or snapshot that saw a session in a state), so they are exact to one
``interval``.  Per-carrier chunk counts are the router's own (``chunks_by_carrier``).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proxy.backend.model import LaneStatus
from pybrid.proxy.clients.session import SessionInfo
from pybrid.proxy.status.events import RecentEvents
from pybrid.proxy.status.model import (
    BackendStatus,
    CarrierStatus,
    ProxyStatus,
    RunStatus,
    ServiceStatus,
    SessionStatus,
)
from pybrid.version import version
from pybrid.wire.counters import snapshot
from pybrid.wire.periodic import Periodic

Samples = dict[tuple[str, ...], int]


class StatusProvider(Protocol):
    """What the collector reads: one record of every part (the proxy service)."""

    def status(self) -> ServiceStatus: ...


def proxy_counters(status: ServiceStatus) -> dict[str, int]:
    """Proxy-wide cumulative counters by metric-friendly name (``/metrics`` names them)."""
    front, dispatch, scheduler = status.front, status.dispatch, status.scheduler
    router = status.router
    return {
        "connections": front.connections,
        "standalone_pings": front.standalone_pings,
        "busy_replies": front.busy,
        "auth_failures": front.auth_failures,
        "auth_throttled": front.auth_throttled,
        "auth_closed": front.auth_closed,
        "connection_deadlines": front.deadlines,
        "pending_closed": front.pending_closed,
        "client_run_traffic_refused": front.client_run_traffic,
        "client_reads_paused": front.reads_paused,
        "waiting_budget_closed": front.budget_closed,
        "client_frames_dropped": front.not_v1,
        "client_generic_frames_dropped": front.generic_dropped,
        "handovers": scheduler.handovers,
        "sessions_refused": scheduler.overloaded,
        "session_timeouts": scheduler.timeouts,
        "requests_forwarded": dispatch.forwarded,
        "request_errors": dispatch.errors,
        "stop_runs": dispatch.stop_runs,
        "held_starts_refused": dispatch.held_starts_refused,
        "reused_run_ids_refused": dispatch.reused_run_ids,
        "foreign_run_ids_refused": dispatch.foreign_run_ids,
        "intake_connects": sum(lane.intake.connects for lane in status.lanes
                               if lane.intake is not None),
        "run_deadlines_missed": dispatch.deadlines,
        "run_messages_forwarded": router.forwarded,
        "state_changes": router.states,
        "dropped_foreign_run": router.foreign_run,
        "dropped_unparseable": router.unparseable,
        "dropped_unexpected_kind": router.unexpected_kind,
        "chunk_gaps": router.gaps,
        "chunks_reordered": router.reordered,
        "chunks_late": router.late,
        "states_late": router.late_states,
    }


@attrs.define(eq=False)
class StatusCollector:
    """Builds :class:`ProxyStatus` snapshots of one proxy and samples its counters for rates."""

    provider: StatusProvider
    clock: IReactorTime
    events: RecentEvents = attrs.field(factory=RecentEvents)
    interval: float = 1.0
    window: int = 5
    started: float | None = None
    #: The proxy's version, read once (the distribution's metadata).
    version: str = attrs.field(factory=version)
    samples: deque[tuple[float, Samples]] = attrs.field(init=False)
    _seen: dict[tuple[str, str], float] = attrs.field(factory=dict)
    _loop: Periodic = attrs.field(init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.samples = deque(maxlen=max(2, self.window + 1))
        self._loop = Periodic(self.clock, self.interval, self.sample, "status sampling", now=True)

    def start(self) -> None:
        self.started = self.clock.seconds()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    # -- sampling ------------------------------------------------------------------------

    def sample(self) -> None:
        """Record the cumulative counters now (the periodic body; logs and survives errors)."""
        now = self.clock.seconds()
        status = self.provider.status()
        self._observe(now, status)
        self.samples.append((now, self._counters(status)))

    @staticmethod
    def _counters(status: ServiceStatus) -> Samples:
        values: Samples = {}
        for lane in status.lanes:
            if lane.intake is not None:
                values["backend", lane.name, "datagrams"] = lane.intake.datagrams
                values["backend", lane.name, "bytes"] = lane.intake.bytes
        chunks = status.router.chunks_by_carrier
        for path in {p for lane in status.lanes for p in lane.carriers} | chunks.keys():
            values["carrier", path, "chunks"] = chunks.get(path, 0)
        for session in status.scheduler.sessions:
            values["session", session.id, "frames"] = session.sender.frames
            values["session", session.id, "bytes"] = session.sender.bytes
        return values

    def rate(self, *key: str) -> float | None:
        """Per-second rate of a counter over the sample window, None before two samples."""
        points = [(t, v[key]) for t, v in self.samples if key in v]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        (t0, v0), (t1, v1) = points[0], points[-1]
        return max(0.0, (v1 - v0) / (t1 - t0))

    def _observe(self, now: float, status: ServiceStatus) -> None:
        current = {(s.id, s.state) for s in status.scheduler.sessions}
        for key in current:
            self._seen.setdefault(key, now)
        for key in [k for k in self._seen if k not in current]:
            del self._seen[key]

    # -- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> ProxyStatus:
        now = self.clock.seconds()
        status = self.provider.status()
        self._observe(now, status)
        scheduler = status.scheduler
        by_id = {s.id: s for s in scheduler.sessions}
        active = by_id.get(scheduler.active) if scheduler.active is not None else None
        queue = [by_id[sid] for sid in scheduler.queue if sid in by_id]
        waiting = {s.id for s in queue} | {scheduler.active}
        runs = {run.id: run for run in status.router.runs}
        return ProxyStatus(
            now=now,
            version=self.version,
            started=self.started,
            listen=status.listen,
            auth=status.auth,
            max_sessions=scheduler.max_sessions,
            session_timeout=scheduler.session_timeout,
            backends=tuple(self._backend(lane) for lane in status.lanes),
            wires=status.wires,
            carriers=self._carriers(status),
            active=None if active is None else self._session(active, runs),
            queue=tuple(self._session(s, runs) for s in queue),
            idle=tuple(self._session(s, runs) for s in scheduler.sessions
                       if s.id not in waiting),
            counters=proxy_counters(status),
            errors=tuple(reversed(self.events.entries)),
            log_counts=dict(self.events.counts),
            monitor=status.monitor,
            shm_taps=status.shm_taps,
            readiness=status.readiness,
            recent_runs=status.recent_runs,
            nats=status.nats,
            live_process=status.live_process,
        )

    def _backend(self, lane: LaneStatus) -> BackendStatus:
        rate = self.rate
        return snapshot(BackendStatus, lane, datagram_rate=rate("backend", lane.name, "datagrams"),
                        byte_rate=rate("backend", lane.name, "bytes"))

    def _carriers(self, status: ServiceStatus) -> tuple[CarrierStatus, ...]:
        router = status.router
        out = []
        for lane in status.lanes:
            for index, path in enumerate(lane.carriers):
                out.append(CarrierStatus(
                    path=path, backend=lane.name,
                    location=lane.location if index == 0 else None,
                    chunks=router.chunks_by_carrier.get(path, 0),
                    chunk_rate=self.rate("carrier", path, "chunks"),
                    gaps=router.gaps_by_carrier.get(path, 0),
                ))
        return tuple(out)

    def _session(self, session: SessionInfo, runs: dict) -> SessionStatus:
        sender = session.sender
        return SessionStatus(
            id=session.id, peer=session.peer, state=session.state,
            since=self._seen.get((session.id, session.state)),
            authenticated=session.authenticated,
            runs=tuple(RunStatus(id=rid, carriers=runs[rid].carriers if rid in runs else None,
                                 finished=runs[rid].finished if rid in runs else None,
                                 chunks=runs[rid].chunks if rid in runs else None)
                       for rid in session.runs),
            forwarded=session.forwarded, busy_replies=session.busy_replies,
            frames=sender.frames, bytes=sender.bytes, dropped=sender.dropped,
            frame_rate=self.rate("session", session.id, "frames"),
            byte_rate=self.rate("session", session.id, "bytes"),
            buffered=sender.buffered, buffer_limit=sender.limit,
        )


__all__ = ["StatusCollector", "StatusProvider", "proxy_counters"]

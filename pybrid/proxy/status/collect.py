"""Snapshots of a running proxy, and the counter samples its rates come from.

Design note
-----------
:meth:`StatusCollector.snapshot` builds a frozen
:class:`~pybrid.proxy.status.model.ProxyStatus` from the live service, reading everything
through the accessors of :mod:`pybrid.proxy.status.access`.

Rates are differences of cumulative counters: :meth:`StatusCollector.sample` runs every
``interval`` seconds on the injected clock and keeps the last ``window`` samples; a rate is
(newest − oldest) / elapsed over that window.  "Since" times of sessions are observed the same
way (the first sample or snapshot that saw a session in a state), so they are exact to one
``interval``.  Per-carrier chunk counts come from the router if it keeps them, else from the
progress of each registered run's chunk sequence between samples.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proxy.status.access import (
    RecentEvents,
    all_sessions,
    chunks_by_carrier,
    client_buffer,
    counters_of,
    gaps_by_carrier,
    intake_address,
    intake_counters,
    intake_rcvbuf,
    kernel_drops,
    lane_carriers,
    lane_connects,
    lane_location,
    lane_name,
    lane_state,
    lanes,
    listen_address,
    router_of,
    run_chunk_positions,
    runs_of,
    scheduler_of,
    sender_counters,
    session_id,
    session_state,
    wires_of,
)
from pybrid.proxy.status.model import BackendStatus, CarrierStatus, ProxyStatus, SessionStatus
from pybrid.wire.periodic import Periodic


@attrs.define(eq=False)
class StatusCollector:
    """Builds :class:`ProxyStatus` snapshots of one proxy and samples its counters for rates."""

    proxy: Any
    clock: IReactorTime
    events: RecentEvents = attrs.field(factory=RecentEvents)
    interval: float = 1.0
    window: int = 5
    started: float | None = None
    samples: deque[tuple[float, dict[tuple[str, ...], int]]] = attrs.field(init=False)
    _seen: dict[tuple[str, str], float] = attrs.field(factory=dict)
    #: Chunks seen per carrier, accumulated from the runs' chunk positions for the rates (see
    #: :meth:`_count_chunks`), and the last position seen per (run id, carrier).
    _progress: dict[str, int] = attrs.field(factory=dict)
    _positions: dict[tuple[str, str], int] = attrs.field(factory=dict)
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
        """Record the cumulative counters now (LoopingCall body: logs and survives errors)."""
        try:
            now = self.clock.seconds()
            self._observe(now)
            self._count_chunks()
            self.samples.append((now, self._counters()))
        except Exception:
            self.log.failure("status: sampling the counters failed")

    def _counters(self) -> dict[tuple[str, ...], int]:
        values: dict[tuple[str, ...], int] = {}
        for lane in lanes(self.proxy):
            intake = intake_counters(lane)
            if intake is not None:
                values["backend", lane_name(lane), "datagrams"] = intake[0]
                values["backend", lane_name(lane), "bytes"] = intake[1]
        chunks = self.chunk_progress()
        if chunks is not None:
            paths = {path for lane in lanes(self.proxy) for path in lane_carriers(lane)}
            for path in paths | chunks.keys():
                values["carrier", path, "chunks"] = chunks.get(path, 0)
        for session in all_sessions(self.proxy):
            frames, sent, _ = sender_counters(session)
            values["session", session_id(session), "frames"] = frames
            values["session", session_id(session), "bytes"] = sent
        return values

    def rate(self, *key: str) -> float | None:
        """Per-second rate of a counter over the sample window, None before two samples."""
        points = [(t, v[key]) for t, v in self.samples if key in v]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        (t0, v0), (t1, v1) = points[0], points[-1]
        return max(0.0, (v1 - v0) / (t1 - t0))

    def chunk_progress(self) -> dict[str, int] | None:
        """Growing chunk counts per carrier path for the rates: the router's own counts if it
        keeps them, else what :meth:`_count_chunks` accumulated; None if neither exists."""
        own = chunks_by_carrier(router_of(self.proxy))
        if own is not None:
            return own
        return None if run_chunk_positions(router_of(self.proxy)) is None else self._progress

    def _count_chunks(self) -> None:
        """Add the progress of every registered run's chunk sequence since the last call.

        Chunks of a run that is forgotten between two calls are missed (at most one
        ``interval`` of them, all of a short run), so these sums serve the rates only — exact
        while a run is registered — and are never shown as totals.
        """
        positions = run_chunk_positions(router_of(self.proxy))
        if positions is None:
            return
        for key, position in positions.items():
            delta = position - self._positions.get(key, 0)
            if delta > 0:
                self._progress[key[1]] = self._progress.get(key[1], 0) + delta
        self._positions = positions

    def _observe(self, now: float) -> None:
        current: set[tuple[str, str]] = set()
        for session in all_sessions(self.proxy):
            key = (session_id(session), session_state(session))
            current.add(key)
            self._seen.setdefault(key, now)
        for key in [k for k in self._seen if k not in current]:
            del self._seen[key]

    # -- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> ProxyStatus:
        now = self.clock.seconds()
        self._observe(now)
        self._count_chunks()
        proxy = self.proxy
        scheduler = scheduler_of(proxy)
        active = getattr(scheduler, "active", None)
        queue = list(getattr(scheduler, "queue", ()))
        others = [s for s in all_sessions(proxy) if s is not active and s not in queue]
        config = getattr(proxy, "config", None)
        return ProxyStatus(
            now=now,
            started=self.started,
            listen=listen_address(proxy),
            auth=getattr(config, "auth_token", None) is not None,
            max_sessions=getattr(config, "max_sessions", None),
            session_timeout=getattr(config, "session_timeout", None),
            backends=tuple(self._backend(lane) for lane in lanes(proxy)),
            wires=wires_of(proxy),
            carriers=self._carriers(),
            active=None if active is None else self._session(active),
            queue=tuple(self._session(s) for s in queue),
            idle=tuple(self._session(s) for s in others),
            counters=counters_of(proxy),
            errors=tuple(reversed(self.events.entries)),
            log_counts=dict(self.events.counts),
            shm_taps=proxy.shm.status() if getattr(proxy, "shm", None) is not None else (),
        )

    def _backend(self, lane: Any) -> BackendStatus:
        name = lane_name(lane)
        intake = intake_counters(lane)
        return BackendStatus(
            name=name, state=lane_state(lane), healthy=bool(getattr(lane, "healthy", False)),
            location=lane_location(lane), carriers=lane_carriers(lane),
            data_mode=getattr(lane, "data_mode", None), connects=lane_connects(lane),
            intake=intake_address(lane), rcvbuf=intake_rcvbuf(lane),
            datagrams=None if intake is None else intake[0],
            bytes=None if intake is None else intake[1],
            foreign=None if intake is None else intake[2],
            kernel_drops=kernel_drops(lane),
            datagram_rate=self.rate("backend", name, "datagrams"),
            byte_rate=self.rate("backend", name, "bytes"),
        )

    def _carriers(self) -> tuple[CarrierStatus, ...]:
        router = router_of(self.proxy)
        gaps = gaps_by_carrier(router)
        totals = chunks_by_carrier(router)  # exact totals only: None unless the router counts
        progress = self.chunk_progress()
        out = []
        for lane in lanes(self.proxy):
            paths = lane_carriers(lane)
            for index, path in enumerate(paths):
                location = lane_location(lane) if len(paths) == 1 or index == 0 else None
                out.append(CarrierStatus(
                    path=path, backend=lane_name(lane), location=location,
                    chunks=None if totals is None else totals.get(path, 0),
                    chunk_rate=None if progress is None else self.rate("carrier", path, "chunks"),
                    gaps=gaps.get(path, 0),
                ))
        return tuple(out)

    def _session(self, session: Any) -> SessionStatus:
        sid = session_id(session)
        state = session_state(session)
        frames, sent, dropped = sender_counters(session)
        buffered, limit = client_buffer(session)
        return SessionStatus(
            id=sid, peer=str(getattr(session, "peer", "?")), state=state,
            since=self._seen.get((sid, state)),
            authenticated=bool(getattr(session, "authenticated", False)),
            runs=runs_of(self.proxy, session),
            forwarded=int(getattr(session, "forwarded", 0)),
            busy_replies=int(getattr(session, "busy_replies", 0)),
            frames=frames, bytes=sent, dropped=dropped,
            frame_rate=self.rate("session", sid, "frames"),
            byte_rate=self.rate("session", sid, "bytes"),
            buffered=buffered, buffer_limit=limit,
        )

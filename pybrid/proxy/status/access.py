"""The status page's view of a running proxy: accessors, and the ring of recent errors.

Design note
-----------
The status page (:mod:`pybrid.proxy.status.web`) shows a frozen
:class:`~pybrid.proxy.status.model.ProxyStatus`, built on request by
:class:`~pybrid.proxy.status.collect.StatusCollector` from the live objects of a
:class:`~pybrid.proxy.service.ProxyService`.  Those objects belong to other modules and change
shape as the proxy grows, so **every read of their state goes through the small accessor
functions of this module**: a refactor elsewhere breaks one place only, and a value that does
not exist (yet) is ``None`` — shown as "n/a", left out of ``/metrics`` — instead of an error.

:class:`RecentEvents` is a ``twisted.logger`` observer keeping a bounded ring of the proxy's
recent warnings and errors (events whose namespace is ``pybrid.proxy`` or below it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

from pybrid import netstats
from pybrid.proxy.status.model import LogEntry, RunStatus

_LEVELS = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


@implementer(ILogObserver)
@attrs.define(eq=False)
class RecentEvents:
    """A bounded ring of recent warn/error log events of one namespace, and their counts."""

    capacity: int = 50
    namespace: str = "pybrid.proxy"
    min_level: LogLevel = LogLevel.warn
    entries: deque[LogEntry] = attrs.field(init=False)
    counts: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.entries = deque(maxlen=self.capacity)

    def __call__(self, event: dict[str, Any]) -> None:
        namespace = str(event.get("log_namespace", ""))
        if not (namespace == self.namespace or namespace.startswith(self.namespace + ".")):
            return
        level = event.get("log_level", LogLevel.info)
        if level not in _LEVELS or _LEVELS.index(level) < _LEVELS.index(self.min_level):
            return
        try:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text = f"{text}: {failure.getErrorMessage()}"
        except Exception:  # an observer must never raise into the logging system
            text = str(event.get("log_format", "?"))
        self.counts[level.name] = self.counts.get(level.name, 0) + 1
        self.entries.append(LogEntry(float(event.get("log_time", 0.0)), level.name,
                                     namespace, text[:2000]))


# -- accessors: the only code here that knows other modules' attribute names -------------


def lanes(proxy: Any) -> list[Any]:
    return list(getattr(proxy, "lanes", ()) or ())


def lane_name(lane: Any) -> str:
    return str(getattr(lane, "name", "?"))


def lane_state(lane: Any) -> str:
    state = getattr(lane, "state", None)
    return str(getattr(state, "value", state) or "unknown")


def lane_location(lane: Any) -> str | None:
    location = getattr(getattr(lane, "backend", None), "location", None)
    return None if location is None else str(location)


def lane_carriers(lane: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in getattr(lane, "carriers", ()) or ())


def lane_connects(lane: Any) -> int | None:
    value = getattr(getattr(lane, "counters", None), "connects", None)
    return None if value is None else int(value)


def _intake(lane: Any) -> Any:
    return getattr(lane, "intake", None)


def intake_counters(lane: Any) -> tuple[int, int, int] | None:
    """(datagrams, bytes, foreign) received on the lane's UDP intake, None without one."""
    counters = getattr(_intake(lane), "counters", None)
    if counters is None:
        return None
    return (int(getattr(counters, "datagrams", 0)), int(getattr(counters, "bytes", 0)),
            int(getattr(counters, "foreign", 0)))


def intake_address(lane: Any) -> str | None:
    port = getattr(_intake(lane), "port", None)
    if port is None:
        return None
    try:
        host = port.getHost()
    except Exception:
        return None
    return f"{host.host}:{host.port}"


def intake_rcvbuf(lane: Any) -> int | None:
    value = getattr(_intake(lane), "rcvbuf", None)
    return int(value) if value else None


def kernel_drops(lane: Any) -> int | None:
    """Datagrams the kernel dropped on the lane's intake socket (buffer full), if known."""
    intake = _intake(lane)
    if intake is None:
        return None
    counted = getattr(getattr(intake, "counters", None), "kernel_drops", None)
    if isinstance(counted, int):  # kept by the intake's watch, across reconnects
        return counted
    own = getattr(intake, "kernel_drops", None)
    if own is not None:
        value = own() if callable(own) else own
        return None if value is None else int(value)
    sock = getattr(getattr(intake, "port", None), "socket", None)
    if sock is None:
        return None
    try:
        return netstats.socket_drops(sock)
    except (OSError, ValueError):
        return None


def router_of(proxy: Any) -> Any:
    return getattr(proxy, "router", None)


def gaps_by_carrier(router: Any) -> dict[str, int]:
    return dict(getattr(router, "gaps_by_carrier", None) or {})


def chunks_by_carrier(router: Any) -> dict[str, int] | None:
    """Data chunks forwarded per carrier path since start (``RunRouter.chunks_by_carrier``);
    None while the router does not count them."""
    value = getattr(router, "chunks_by_carrier", None)
    return None if value is None else dict(value)


def scheduler_of(proxy: Any) -> Any:
    return getattr(proxy, "scheduler", None)


def all_sessions(proxy: Any) -> list[Any]:
    sessions = getattr(scheduler_of(proxy), "sessions", ()) or ()
    return sorted(sessions, key=session_id)


def session_id(session: Any) -> str:
    return str(getattr(session, "id", "?"))


def session_state(session: Any) -> str:
    state = getattr(session, "state", None)
    return str(getattr(state, "value", state) or "unknown")


def sender_counters(session: Any) -> tuple[int, int, int]:
    """(frames, bytes, dropped) written to the session's client."""
    counters = getattr(getattr(session, "sender", None), "counters", None)
    return (int(getattr(counters, "frames", 0)), int(getattr(counters, "bytes", 0)),
            int(getattr(counters, "dropped", 0)))


def client_buffer(session: Any) -> tuple[int | None, int | None]:
    """(bytes waiting in the proxy for this client, the limit), None where not known."""
    sender = getattr(session, "sender", None)
    buffered = limit = None
    for name in ("buffered", "buffered_bytes", "queued_bytes"):
        value = getattr(sender, name, None)
        if value is not None:
            buffered = int(value() if callable(value) else value)
            break
    for name in ("limit", "buffer_limit", "max_buffered", "high_water"):
        value = getattr(sender, name, None)
        if isinstance(value, int | float):
            limit = int(value)
            break
    return buffered, limit


def run_chunk_positions(router: Any) -> dict[tuple[str, str], int] | None:
    """Chunks received so far per (run id, carrier path) of the registered runs (the next
    expected chunk number); None if the router does not expose it."""
    runs = getattr(router, "runs", None)
    if not isinstance(runs, dict):
        return None
    out: dict[tuple[str, str], int] = {}
    for run_id, track in runs.items():
        positions = getattr(track, "next_chunk", None)
        if not isinstance(positions, dict):
            return None
        for path, position in positions.items():
            name = path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)
            out[str(run_id), name] = int(position)
    return out


def runs_of(proxy: Any, session: Any) -> tuple[RunStatus, ...]:
    tracks = getattr(router_of(proxy), "runs", None) or {}
    positions = run_chunk_positions(router_of(proxy))
    out = []
    for run_id in sorted(getattr(session, "runs", ()) or ()):
        track = tracks.get(run_id)
        carriers = len(getattr(track, "carriers", ())) if track is not None else None
        finished = len(getattr(track, "finished", ())) if track is not None else None
        chunks = None if positions is None else sum(
            n for (rid, _), n in positions.items() if rid == run_id)
        out.append(RunStatus(id=str(run_id), carriers=carriers, finished=finished,
                             chunks=chunks))
    return tuple(out)


def listen_address(proxy: Any) -> str | None:
    port = getattr(proxy, "port", None)
    if port is None:
        return None
    try:
        host = port.getHost()
    except Exception:
        return None
    return f"{host.host}:{host.port}"


def wires_of(proxy: Any) -> tuple[tuple[str, str], ...]:
    wires = getattr(getattr(proxy, "config", None), "wires", ()) or ()
    return tuple((_pin(w.source), _pin(w.target)) for w in wires)


def _pin(pin: Any) -> str:
    return f"{pin.location}/{getattr(pin, 'pin', '?')}"


def counters_of(proxy: Any) -> dict[str, int]:
    """Proxy-wide cumulative counters, by metric-friendly name (absent ones left out)."""
    scheduler = scheduler_of(proxy)
    front = getattr(getattr(proxy, "front", None), "counters", None)
    dispatch = getattr(getattr(proxy, "dispatcher", None), "counters", None)
    router = getattr(router_of(proxy), "counters", None)
    picks: Iterable[tuple[str, Any, str]] = (
        ("connections", front, "connections"),
        ("standalone_pings", front, "standalone_pings"),
        ("busy_replies", front, "busy"),
        ("auth_failures", front, "auth_failures"),
        ("auth_throttled", front, "auth_throttled"),
        ("handovers", scheduler, "handovers"),
        ("sessions_refused", scheduler, "overloaded"),
        ("session_timeouts", scheduler, "timeouts"),
        ("requests_forwarded", dispatch, "forwarded"),
        ("request_errors", dispatch, "errors"),
        ("stop_runs", dispatch, "stop_runs"),
        ("held_starts_refused", dispatch, "held_starts_refused"),
        ("reused_run_ids_refused", dispatch, "reused_run_ids"),
        ("run_deadlines_missed", dispatch, "deadlines"),
        ("run_messages_forwarded", router, "forwarded"),
        ("state_changes", router, "states"),
        ("dropped_foreign_run", router, "foreign_run"),
        ("dropped_unparseable", router, "unparseable"),
        ("dropped_unexpected_kind", router, "unexpected_kind"),
        ("chunk_gaps", router, "gaps"),
        ("chunks_reordered", router, "reordered"),
        ("chunks_late", router, "late"),
        ("client_frames_dropped", front, "not_v1"),
        ("client_generic_frames_dropped", front, "generic_dropped"),
    )
    out: dict[str, int] = {}
    for name, source, attr in picks:
        value = getattr(source, attr, None)
        if isinstance(value, int):
            out[name] = value
    return out

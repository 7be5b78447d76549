"""A status snapshot in the Prometheus text exposition format (version 0.0.4), for ``/metrics``.

Every metric family gets its ``# HELP`` and ``# TYPE`` lines once, followed by its samples;
counters end in ``_total``.  Values that are unknown in the snapshot (``None``) produce no
sample, so a scrape never reports a made-up zero.  Label values are escaped as the format
requires (backslash, double quote, newline).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pybrid.proxy.status.model import ProxyStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float | int | None]

#: Proxy-wide counters of :func:`pybrid.proxy.status.access.counters_of`: metric name and help.
_COUNTERS = {
    "connections": ("pybrid_proxy_connections_total", "Client TCP connections accepted."),
    "standalone_pings": ("pybrid_proxy_standalone_pings_total",
                         "Connections that only pinged (answered and closed)."),
    "busy_replies": ("pybrid_proxy_busy_replies_total",
                     "busy_response replies to queued sessions."),
    "auth_failures": ("pybrid_proxy_auth_failures_total", "Rejected auth_request tokens."),
    "auth_throttled": ("pybrid_proxy_auth_throttled_total",
                       "auth_request tokens refused unchecked during a per-address lockout."),
    "handovers": ("pybrid_proxy_session_handovers_total", "Sessions that became active."),
    "sessions_refused": ("pybrid_proxy_sessions_refused_total",
                         "Connections refused with 'Server overloaded' (--max-sessions)."),
    "session_timeouts": ("pybrid_proxy_session_timeouts_total", "Sessions closed when idle."),
    "requests_forwarded": ("pybrid_proxy_requests_forwarded_total",
                           "Client requests forwarded to the backends."),
    "request_errors": ("pybrid_proxy_request_errors_total",
                       "Forwarded requests answered with an error_message."),
    "stop_runs": ("pybrid_proxy_stop_runs_total",
                  "stop_run_command sent to backends for sessions that ended mid-run."),
    "held_starts_refused": ("pybrid_proxy_held_starts_refused_total",
                            "start_run refused after waiting for the session's previous run."),
    "reused_run_ids_refused": ("pybrid_proxy_reused_run_ids_refused_total",
                               "start_run refused for naming a run id still in progress."),
    "run_deadlines_missed": ("pybrid_proxy_run_deadlines_missed_total",
                             "Backends that missed a run's TAKE_OFF or finish deadline."),
    "run_messages_forwarded": ("pybrid_proxy_run_messages_forwarded_total",
                               "Run data and data-end messages forwarded to sessions."),
    "state_changes": ("pybrid_proxy_state_changes_total",
                      "Run state changes received from backends for registered runs."),
    "chunks_late": ("pybrid_proxy_chunks_late_total",
                    "Data chunks that arrived as duplicates or after being counted lost."),
    "client_frames_dropped": ("pybrid_proxy_client_frames_dropped_total",
                              "Client frames with no message (neither generic nor v1)."),
    "client_generic_frames_dropped": ("pybrid_proxy_client_generic_frames_dropped_total",
                                      "Client generic frames other than a ping command."),
    "chunks_reordered": ("pybrid_proxy_chunks_reordered_total",
                         "Data chunks that arrived after a later chunk of their carrier."),
}
_DROPS = {
    "dropped_foreign_run": "foreign_run",
    "dropped_unparseable": "unparseable",
    "dropped_unexpected_kind": "unexpected_kind",
}


def escape(value: str) -> str:
    """A label value, escaped for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = []
    for labels, value in samples:
        if value is None:
            continue
        text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    if not lines:
        return []
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]


def render(status: ProxyStatus) -> str:
    """The whole ``/metrics`` body."""
    out: list[str] = []
    add = out.extend
    add(_family("pybrid_proxy_uptime_seconds", "gauge", "Seconds since the proxy started.",
                [({}, status.uptime)]))
    add(_family("pybrid_proxy_healthy", "gauge",
                "1 when every backend is ready (sessions can be promoted), else 0.",
                [({}, int(status.healthy))]))
    backends = status.backends
    add(_family("pybrid_proxy_backend_up", "gauge", "1 when the backend is ready, else 0.",
                [({"backend": b.name}, int(b.healthy)) for b in backends]))
    add(_family("pybrid_proxy_backend_info", "gauge",
                "Backend state, location and data lane (value always 1).",
                [({"backend": b.name, "state": b.state, "location": b.location or "",
                   "data_lane": b.data_mode or ""}, 1) for b in backends]))
    add(_family("pybrid_proxy_backend_connects_total", "counter",
                "TCP connections made to the backend.",
                [({"backend": b.name}, b.connects) for b in backends]))
    add(_family("pybrid_proxy_backend_datagrams_total", "counter",
                "Datagrams received from the backend on its UDP intake.",
                [({"backend": b.name}, b.datagrams) for b in backends]))
    add(_family("pybrid_proxy_backend_received_bytes_total", "counter",
                "Bytes received from the backend on its UDP intake.",
                [({"backend": b.name}, b.bytes) for b in backends]))
    add(_family("pybrid_proxy_backend_foreign_datagrams_total", "counter",
                "Datagrams on the backend's intake from other addresses (dropped).",
                [({"backend": b.name}, b.foreign) for b in backends]))
    add(_family("pybrid_proxy_backend_kernel_drops_total", "counter",
                "Datagrams the kernel dropped on the backend's intake socket (buffer full).",
                [({"backend": b.name}, b.kernel_drops) for b in backends]))
    add(_family("pybrid_proxy_backend_rcvbuf_bytes", "gauge",
                "Receive buffer the kernel granted the backend's intake socket.",
                [({"backend": b.name}, b.rcvbuf) for b in backends]))
    carriers = status.carriers
    add(_family("pybrid_proxy_carrier_chunks_total", "counter",
                "Data chunks forwarded per carrier.",
                [({"backend": c.backend, "carrier": c.path}, c.chunks) for c in carriers]))
    add(_family("pybrid_proxy_carrier_chunk_gaps_total", "counter",
                "Data chunks missing in a carrier's sequence (lost before the proxy).",
                [({"backend": c.backend, "carrier": c.path}, c.gaps) for c in carriers]))
    add(_family("pybrid_proxy_sessions", "gauge", "Open client sessions by state.",
                [({"state": "active"}, int(status.active is not None)),
                 ({"state": "queued"}, len(status.queue)),
                 ({"state": "idle"}, len(status.idle))]))
    sessions = ([status.active] if status.active else []) + [*status.queue, *status.idle]
    add(_family("pybrid_proxy_client_buffered_bytes", "gauge",
                "Bytes waiting in the proxy for a client.",
                [({"session": s.id, "peer": s.peer}, s.buffered) for s in sessions]))
    counters = status.counters
    for key, (name, help_text) in _COUNTERS.items():
        add(_family(name, "counter", help_text, [({}, counters.get(key))]))
    add(_family("pybrid_proxy_run_messages_dropped_total", "counter",
                "Run traffic from backends dropped, by reason.",
                [({"reason": reason}, counters.get(key)) for key, reason in _DROPS.items()]))
    add(_shm(status.shm_taps))
    add(_family("pybrid_proxy_log_events_total", "counter",
                "Warnings and errors logged by the proxy, by level.",
                [({"level": level}, n) for level, n in sorted(status.log_counts.items())]))
    return "\n".join(out) + "\n"


def _shm(taps: Iterable[Any]) -> list[str]:
    """``--shm-tap`` families (pybrid.shm.tap.ShmTapStatus)."""
    taps = list(taps)
    out: list[str] = []
    out += _family("pybrid_proxy_shm_attached", "gauge",
                   "1 while the shared-memory tap is attached to a reader.",
                   [({"tap": t.name}, int(t.state == "attached")) for t in taps])
    out += _family("pybrid_proxy_shm_frames_written_total", "counter",
                   "Frames written into the tap's ZeroBuffer.",
                   [({"tap": t.name}, t.frames_written) for t in taps])
    out += _family("pybrid_proxy_shm_bytes_written_total", "counter",
                   "Frame bytes written into the tap's ZeroBuffer.",
                   [({"tap": t.name}, t.bytes_written) for t in taps])
    out += _family("pybrid_proxy_shm_frames_dropped_total", "counter",
                   "Frames the tap could not write, by reason.",
                   [({"tap": t.name, "reason": r}, getattr(t, "dropped_" + r)) for t in taps
                    for r in ("detached", "queue", "lost")])
    out += _family("pybrid_proxy_shm_detaches_total", "counter",
                   "Times the tap detached from its reader, by reason.",
                   [({"tap": t.name, "reason": r}, getattr(t, r)) for t in taps
                    for r in ("buffer_full", "reader_dead")])
    return out

"""``/metrics``: the status snapshot as Prometheus metric families, through ``prometheus_client``.

Design note
-----------
:class:`ProxyMetrics` is a custom ``prometheus_client`` collector: on every scrape it takes
one fresh :class:`~pybrid.proxy.status.model.ProxyStatus` and yields its families (counters
end in ``_total``; the names are those of ``docs/deployment.md``).  A value the snapshot does
not know (``None``) produces no sample, so a scrape never reports a made-up zero.
:func:`metrics_registry` puts it in a registry of its own together with the client library's
process, platform and garbage-collector collectors (``process_*``, ``python_*``).

The registry is rendered with ``generate_latest`` by the status page's own resource
(:mod:`pybrid.proxy.status.web`), on the reactor thread.  ``prometheus_client.twisted``'s
``MetricsResource`` is not used: it serves its WSGI app from the global reactor's thread pool,
so :meth:`ProxyMetrics.collect` would read the proxy's objects from another thread while the
reactor changes them (and the module imports the global reactor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pybrid.proxy.status.model import ProxyStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Proxy-wide counters of :func:`pybrid.proxy.status.collect.proxy_counters`: name and help.
COUNTERS = {
    "connections": ("pybrid_proxy_connections_total", "Client TCP connections accepted."),
    "standalone_pings": ("pybrid_proxy_standalone_pings_total",
                         "Connections that only pinged (answered and closed)."),
    "busy_replies": ("pybrid_proxy_busy_replies_total",
                     "busy_response replies to queued sessions."),
    "auth_failures": ("pybrid_proxy_auth_failures_total", "Rejected auth_request tokens."),
    "auth_throttled": ("pybrid_proxy_auth_throttled_total",
                       "Wrong tokens after which their own connection was not read for a while."),
    "auth_closed": ("pybrid_proxy_auth_closed_total",
                    "Connections closed after too many wrong tokens."),
    "connection_deadlines": ("pybrid_proxy_connection_deadlines_total",
                             "Connections closed without a complete frame or authentication "
                             "in time (they held no session slot)."),
    "pending_closed": ("pybrid_proxy_pending_closed_total",
                       "Connections closed, oldest first, because more than --max-pending had "
                       "sent no request yet (a connect flood)."),
    "client_run_traffic_refused": ("pybrid_proxy_client_run_traffic_refused_total",
                                   "Run traffic (run_data_message, ...) sent by clients: "
                                   "refused, not forwarded."),
    "client_reads_paused": ("pybrid_proxy_client_reads_paused_total",
                            "Times the proxy stopped reading a client (requests outstanding, "
                            "replies unread, frame rate, auth delay)."),
    "waiting_budget_closed": ("pybrid_proxy_waiting_budget_closed_total",
                              "Connections that are not active closed because their partial "
                              "frames passed the proxy's budget for them."),
    "foreign_run_ids_refused": ("pybrid_proxy_foreign_run_ids_refused_total",
                                "Starts refused for naming another session's run."),
    "intake_connects": ("pybrid_proxy_intake_connects_total",
                        "UDP intake sockets connect()-ed to their device's address."),
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
    "chunks_reordered": ("pybrid_proxy_chunks_reordered_total",
                         "Data chunks that arrived after a later chunk of their carrier."),
    "chunks_late": ("pybrid_proxy_chunks_late_total",
                    "Data chunks that arrived as duplicates or after being counted lost."),
    "states_late": ("pybrid_proxy_states_late_total",
                    "State changes for a carrier after its final state (DONE, ERROR); "
                    "not delivered."),
    "client_frames_dropped": ("pybrid_proxy_client_frames_dropped_total",
                              "Client frames with no message (neither generic nor v1)."),
    "client_generic_frames_dropped": ("pybrid_proxy_client_generic_frames_dropped_total",
                                      "Client generic frames other than a ping command."),
}
#: Router drops, one family with a ``reason`` label.
DROPS = {
    "dropped_foreign_run": "foreign_run",
    "dropped_unparseable": "unparseable",
    "dropped_unexpected_kind": "unexpected_kind",
}
#: Counted per carrier instead (``pybrid_proxy_carrier_chunk_gaps_total``).
PER_CARRIER = frozenset({"chunk_gaps"})

Labelled = list[tuple[list[str], float | int | None]]


def _family(kind: type[CounterMetricFamily | GaugeMetricFamily], name: str, doc: str,
            labels: list[str], samples: Labelled) -> Metric | None:
    """A metric family of ``kind`` with the known samples; None when no sample is known."""
    family = kind(name, doc, labels=labels)
    for values, value in samples:
        if value is not None:
            family.add_metric(values, value)
    return family if family.samples else None


def _counter(name: str, doc: str, labels: list[str], samples: Labelled) -> Metric | None:
    return _family(CounterMetricFamily, name, doc, labels, samples)


def _gauge(name: str, doc: str, labels: list[str], samples: Labelled) -> Metric | None:
    return _family(GaugeMetricFamily, name, doc, labels, samples)


def families(status: ProxyStatus) -> Iterator[Metric]:
    """Every metric family of one snapshot (families without a known sample are left out)."""
    backends, carriers = status.backends, status.carriers
    intakes = [(b.name, b.intake) for b in backends if b.intake is not None]
    sessions = ([status.active] if status.active else []) + [*status.queue, *status.idle]
    counters = status.counters
    candidates = [
        _gauge("pybrid_build_info", "The proxy's version (value always 1).", ["version"],
               [([status.version], 1)]),
        _gauge("pybrid_proxy_uptime_seconds", "Seconds since the proxy started.", [],
               [([], status.uptime)]),
        _gauge("pybrid_proxy_healthy",
               "1 when sessions can be promoted (every backend ready, no conflicts), else 0.", [],
               [([], int(status.healthy))]),
        _gauge("pybrid_proxy_backend_up", "1 when the backend is ready, else 0.", ["backend"],
               [([b.name], int(b.healthy)) for b in backends]),
        _gauge("pybrid_proxy_backend_info",
               "Backend state, location and data lane (value always 1).",
               ["backend", "state", "location", "data_lane"],
               [([b.name, b.state, b.location or "", b.data_mode or ""], 1) for b in backends]),
        _counter("pybrid_proxy_backend_connects_total", "TCP connections made to the backend.",
                 ["backend"], [([b.name], b.connects) for b in backends]),
        _counter("pybrid_proxy_backend_datagrams_total",
                 "Datagrams received from the backend on its UDP intake.", ["backend"],
                 [([name], i.datagrams) for name, i in intakes]),
        _counter("pybrid_proxy_backend_received_bytes_total",
                 "Bytes received from the backend on its UDP intake.", ["backend"],
                 [([name], i.bytes) for name, i in intakes]),
        _counter("pybrid_proxy_backend_foreign_datagrams_total",
                 "Datagrams on the backend's intake from other addresses (dropped).", ["backend"],
                 [([name], i.foreign) for name, i in intakes]),
        _counter("pybrid_proxy_backend_kernel_drops_total",
                 "Datagrams the kernel dropped on the backend's intake socket (buffer full).",
                 ["backend"], [([name], i.kernel_drops) for name, i in intakes]),
        _gauge("pybrid_proxy_backend_rcvbuf_bytes",
               "Receive buffer the kernel granted the backend's intake socket.", ["backend"],
               [([name], i.rcvbuf) for name, i in intakes]),
        _counter("pybrid_proxy_carrier_chunks_total", "Data chunks forwarded per carrier.",
                 ["backend", "carrier"], [([c.backend, c.path], c.chunks) for c in carriers]),
        _counter("pybrid_proxy_carrier_chunk_gaps_total",
                 "Data chunks missing in a carrier's sequence (lost before the proxy).",
                 ["backend", "carrier"], [([c.backend, c.path], c.gaps) for c in carriers]),
        _gauge("pybrid_proxy_sessions", "Open client sessions by state.", ["state"],
               [(["active"], int(status.active is not None)), (["queued"], len(status.queue)),
                (["idle"], len(status.idle))]),
        _gauge("pybrid_proxy_client_buffered_bytes", "Bytes waiting in the proxy for a client.",
               ["session", "peer"], [([s.id, s.peer], s.buffered) for s in sessions]),
        *(_counter(name, doc, [], [([], counters.get(key))])
          for key, (name, doc) in COUNTERS.items()),
        _counter("pybrid_proxy_run_messages_dropped_total",
                 "Run traffic from backends dropped, by reason.", ["reason"],
                 [([reason], counters.get(key)) for key, reason in DROPS.items()]),
        _counter("pybrid_proxy_log_events_total",
                 "Warnings and errors logged by the proxy, by level.", ["level"],
                 [([level], n) for level, n in sorted(status.log_counts.items())]),
    ]
    tap = status.monitor
    if tap is not None:
        groups = [f"{g.group}:{g.port}" for g in tap.groups]
        candidates += [
            _counter("pybrid_proxy_monitor_emitted_total",
                     "Backend datagrams handed to the monitor tap.", [], [([], tap.emitted)]),
            _counter("pybrid_proxy_monitor_sent_total",
                     "Monitor datagrams sent, per multicast group.", ["group"],
                     [([name], g.sent) for name, g in zip(groups, tap.groups, strict=True)]),
            _counter("pybrid_proxy_monitor_dropped_total",
                     "Monitor datagrams not sent, per group and reason (busy: socket buffer "
                     "full; error: other socket errors).", ["group", "reason"],
                     [([name, reason], value)
                      for name, g in zip(groups, tap.groups, strict=True)
                      for reason, value in (("busy", g.dropped_busy),
                                            ("error", g.dropped_error))]),
            _counter("pybrid_proxy_monitor_skipped_total",
                     "Datagrams the monitor tap sent to no group, by reason.", ["reason"],
                     [(["oversize"], tap.oversize), (["not_running"], tap.not_running),
                      (["invalid"], tap.invalid)]),
        ]
    taps = status.shm_taps
    if taps:
        candidates += [
            _gauge("pybrid_proxy_shm_attached",
                   "1 while the shared-memory tap is attached to a reader.", ["tap"],
                   [([t.name], int(t.state == "attached")) for t in taps]),
            _counter("pybrid_proxy_shm_frames_written_total",
                     "Frames written into the tap's ZeroBuffer.", ["tap"],
                     [([t.name], t.frames_written) for t in taps]),
            _counter("pybrid_proxy_shm_bytes_written_total",
                     "Frame bytes written into the tap's ZeroBuffer.", ["tap"],
                     [([t.name], t.bytes_written) for t in taps]),
            _counter("pybrid_proxy_shm_frames_dropped_total",
                     "Frames the tap could not write, by reason.", ["tap", "reason"],
                     [([t.name, reason], value) for t in taps
                      for reason, value in (("detached", t.dropped_detached),
                                            ("queue", t.dropped_queue),
                                            ("lost", t.dropped_lost),
                                            ("yielded", t.dropped_yielded))]),
            _counter("pybrid_proxy_shm_detaches_total",
                     "Times the tap detached from its reader, by reason.", ["tap", "reason"],
                     [([t.name, reason], value) for t in taps
                      for reason, value in (("buffer_full", t.buffer_full),
                                            ("reader_dead", t.reader_dead))]),
        ]
    n = status.nats
    if n is not None:
        candidates += [
            _gauge("pybrid_proxy_nats_connected", "1 while the NATS export is connected.", [],
                   [([], int(n.state == "connected"))]),
            _counter("pybrid_proxy_nats_messages_total",
                     "NATS export messages, by outcome (stored: acknowledged by JetStream; "
                     "dropped: export queue full; failed: never acknowledged).", ["outcome"],
                     [([k], getattr(n, k)) for k in ("published", "stored", "dropped",
                                                     "failed")]),
            _counter("pybrid_proxy_nats_tap_gaps_total",
                     "Chunks the proxy did not send to the export's bridge (the bridge "
                     "behind or not running, or the proxy behind its intake).", [],
                     [([], n.not_sent)]),
            _counter("pybrid_proxy_nats_yielded_total",
                     "Chunks not sent to the export while the proxy was behind its intake.",
                     [], [([], n.yielded)]),
            _gauge("pybrid_proxy_nats_queued", "Messages waiting for NATS.", [],
                   [([], n.queue)]),
            _counter("pybrid_proxy_nats_runs_total",
                     "Runs exported, by end condition (incomplete: also error).",
                     ["condition"], [(["complete"], n.runs_ended - n.incomplete),
                                     (["incomplete"], n.incomplete)]),
            _counter("pybrid_proxy_nats_bridge_restarts_total",
                     "Times the NATS bridge process was restarted.", [], [([], n.restarts)]),
        ]
    p = status.live_process
    if p is not None:
        candidates += [
            _gauge("pybrid_proxy_live_process_ready", "1 while the live process serves /live.",
                   [], [([], int(p.ready))]),
            _gauge("pybrid_proxy_live_process_viewers", "Viewers the live process serves.", [],
                   [([], p.viewers)]),
            _counter("pybrid_proxy_live_viewers_total",
                     "Live-view WebSocket viewers, by who served them (process: handed over; "
                     "proxy: served in-process while the live process was not ready, or TLS).",
                     ["served_by"], [(["process"], p.handed), (["proxy"], p.served_here)]),
            _counter("pybrid_proxy_live_process_chunks_total",
                     "Watched chunks for the live process (not_sent: it was behind).",
                     ["outcome"], [(["sent"], p.sent), (["not_sent"], p.not_sent)]),
            _counter("pybrid_proxy_live_process_restarts_total",
                     "Times the live process was restarted.", [], [([], p.restarts)]),
        ]
    yield from (family for family in candidates if family is not None)


class ProxyMetrics(Collector):
    """The proxy's metrics, collected from a fresh snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], ProxyStatus]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot())


def metrics_registry(snapshot: Callable[[], ProxyStatus], *,
                     process: bool = True) -> CollectorRegistry:
    """A registry of the proxy's metrics (and, with ``process``, the process, platform and
    garbage-collector metrics of ``prometheus_client``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyMetrics(snapshot))
    if process:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def render(status: ProxyStatus) -> str:
    """One snapshot in the text exposition format (the proxy's families only)."""
    return generate_latest(metrics_registry(lambda: status, process=False)).decode("utf-8")


__all__ = ["CONTENT_TYPE", "COUNTERS", "DROPS", "ProxyMetrics", "families", "metrics_registry",
           "render"]

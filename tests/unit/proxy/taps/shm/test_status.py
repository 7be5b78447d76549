"""The shared-memory taps on the status page, in /status.json and in /metrics."""

from __future__ import annotations

import json

from pybrid.proxy.status import html as status_html
from pybrid.proxy.status import metrics as status_metrics
from pybrid.proxy.status.model import ProxyStatus
from pybrid.proxy.taps.shm.tap import ShmTapStatus


def snapshot() -> ProxyStatus:
    tap = ShmTapStatus(name="scope", state="waiting", reader_pid=0, attaches=2, detaches=1,
                       buffer_full=1, reader_dead=0, refused=0, frames_written=1234,
                       bytes_written=99, dropped_detached=5, dropped_queue=0, dropped_lost=7,
                       queued=0, last_error="BufferFullException: full")
    return ProxyStatus(now=10.0, version="0.1.0", started=0.0, listen="127.0.0.1:1", auth=False,
                       max_sessions=8, session_timeout=10.0, backends=(), wires=(),
                       carriers=(), active=None, queue=(), idle=(), counters={}, errors=(),
                       log_counts={}, shm_taps=(tap,))


def test_metrics_carry_the_shm_counters():
    from prometheus_client.parser import text_string_to_metric_families

    text = status_metrics.render(snapshot())
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got[("pybrid_proxy_shm_frames_written_total", (("tap", "scope"),))] == 1234
    assert got[("pybrid_proxy_shm_frames_dropped_total",
                (("reason", "lost"), ("tap", "scope")))] == 7
    assert got[("pybrid_proxy_shm_frames_dropped_total",
                (("reason", "detached"), ("tap", "scope")))] == 5
    assert got[("pybrid_proxy_shm_detaches_total",
                (("reason", "buffer_full"), ("tap", "scope")))] == 1
    assert got[("pybrid_proxy_shm_attached", (("tap", "scope"),))] == 0


def test_page_and_json_show_the_tap():
    status = snapshot()
    page = status_html.render(status)
    assert "Shared-memory taps" in page and "BufferFullException: full" in page
    data = json.loads(json.dumps(status.to_json()))
    assert data["shm_taps"][0]["frames_written"] == 1234
    assert status.shm_taps[0].frames_dropped == 12

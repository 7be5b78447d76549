"""Rendering a status snapshot: Prometheus text format, JSON and the HTML page."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from support import ops_fakes

from pybrid.proxy.backend.model import Readiness
from pybrid.proxy.status import html as status_html
from pybrid.proxy.status import metrics as status_metrics
from pybrid.proxy.taps.multicast import GroupCounters, TapCounters


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse a scrape with ``prometheus_client``'s parser: family name -> its samples (a
    counter's family is named without ``_total``; its samples keep it)."""
    families = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in families, f"{family.name} twice"
        assert family.samples, f"{family.name} has no samples"
        families[family.name] = [(dict(s.labels), s.value) for s in family.samples
                                 if not s.name.endswith("_created")]
    return families


def test_metrics_are_well_formed_with_backend_and_carrier_labels():
    families = parse_metrics(status_metrics.render(ops_fakes.status()))
    assert families["pybrid_proxy_backend_up"] == [({"backend": "10.0.0.7:5732"}, 1)]
    assert families["pybrid_proxy_backend_kernel_drops"] == [({"backend": "10.0.0.7:5732"}, 2)]
    assert families["pybrid_proxy_carrier_chunk_gaps"] == [
        ({"backend": "10.0.0.7:5732", "carrier": "/00-00-5E-00-53-01"}, 3)]
    assert families["pybrid_proxy_carrier_chunks"] == [
        ({"backend": "10.0.0.7:5732", "carrier": "/00-00-5E-00-53-01"}, 500)]
    assert families["pybrid_proxy_sessions"] == [
        ({"state": "active"}, 1), ({"state": "queued"}, 1), ({"state": "idle"}, 0)]
    assert families["pybrid_proxy_connections"] == [({}, 5)]
    assert families["pybrid_proxy_run_messages_dropped"] == [({"reason": "foreign_run"}, 1)]
    assert families["pybrid_proxy_uptime_seconds"] == [({}, 120.0)]
    assert families["pybrid_proxy_log_events"] == [({"level": "warn"}, 1)]
    assert families["pybrid_build_info"] == [({"version": "1.2.3"}, 1)]


def test_the_monitor_tap_counters_are_exported():
    tap = TapCounters(emitted=10, oversize=1, groups=[
        GroupCounters("239.1.2.3", 5733, sent=8, bytes=800, dropped_busy=2)])
    families = parse_metrics(status_metrics.render(ops_fakes.status(monitor=tap)))
    assert families["pybrid_proxy_monitor_emitted"] == [({}, 10)]
    assert families["pybrid_proxy_monitor_sent"] == [({"group": "239.1.2.3:5733"}, 8)]
    assert families["pybrid_proxy_monitor_dropped"] == [
        ({"group": "239.1.2.3:5733", "reason": "busy"}, 2),
        ({"group": "239.1.2.3:5733", "reason": "error"}, 0)]
    assert ({"reason": "oversize"}, 1) in families["pybrid_proxy_monitor_skipped"]
    assert "pybrid_proxy_monitor_sent" not in parse_metrics(
        status_metrics.render(ops_fakes.status()))  # no --monitor, no family


def test_unknown_values_produce_no_samples():
    status = ops_fakes.status(backends=(ops_fakes.backend(intake=None),),
                              counters={}, active=None, queue=())
    families = parse_metrics(status_metrics.render(status))
    assert "pybrid_proxy_backend_kernel_drops" not in families
    assert "pybrid_proxy_backend_datagrams" not in families
    assert "pybrid_proxy_connections" not in families
    assert "pybrid_proxy_client_buffered_bytes" not in families
    assert "pybrid_proxy_backend_up" in families


def test_label_values_are_escaped():
    name = 'evil"host\\name\nx'
    text = status_metrics.render(ops_fakes.status(backends=(ops_fakes.backend(name),)))
    assert 'pybrid_proxy_backend_up{backend="evil\\"host\\\\name\\nx"} 1.0' in text
    assert parse_metrics(text)["pybrid_proxy_backend_up"] == [({"backend": name}, 1)]


def test_json_is_the_whole_snapshot():
    data = json.loads(json.dumps(ops_fakes.status().to_json()))
    assert data["backends"][0]["name"] == "10.0.0.7:5732"
    assert data["active"]["peer"] == "10.0.0.99:50000"
    assert data["queue"][0]["state"] == "queued"
    assert data["wires"] == [{"source": "0/0", "target": "1/0"}]
    assert data["uptime"] == 120.0 and data["healthy"] is True
    assert data["errors"][0]["text"] == "backend lost"


def test_page_shows_the_live_values():
    page = status_html.render(ops_fakes.status(), refresh=3)
    assert page.startswith("<!doctype html>")
    assert '<meta http-equiv="refresh" content="3">' in page
    for text in ("10.0.0.7:5732", "/00-00-5E-00-53-01", "10.0.0.99:50000", "10.0.0.98:40000",
                 "d5e48838-df18-4faa-aae6-91e10f354b73", "backend lost", "all backends ready",
                 "up 2 min 0 s", "6.8 MB/s", "4 KiB of 64 MiB", "version <code>1.2.3</code>"):
        assert text in page, text
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_page_escapes_everything_from_outside():
    evil = '<script>alert("x")</script>'
    status = ops_fakes.status(
        backends=(ops_fakes.backend(evil, carriers=(evil,)),),
        active=ops_fakes.session(evil), wires=((evil, evil),),
        errors=(ops_fakes.LogEntry(1.0, "error", "pybrid.proxy.x", evil),),
    )
    page = status_html.render(status)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_page_says_na_for_unknown_values_and_degraded_backends():
    status = ops_fakes.status(
        backends=(ops_fakes.backend(healthy=False, state="waiting", intake=None,
                                    datagram_rate=None, carriers=()),),
        active=None, queue=(), errors=(), started=None,
        readiness=Readiness(down=("backend 10.0.0.7:5732 is waiting",)),
    )
    page = status_html.render(status)
    assert "degraded" in page and "waiting" in page
    assert page.count('class="na">n/a<') >= 3
    assert "no active session" in page and "nobody is waiting" in page
    assert "no warnings or errors logged" in page


def test_durations_sizes_and_counts():
    assert status_html.duration(59) == "59 s"
    assert status_html.duration(3725) == "1 h 2 min"
    assert status_html.duration(90000) == "1 d 1 h"
    assert status_html.size(3_400_000, "/s") == "3.4 MB/s"
    assert status_html.size(512) == "512 B"
    assert status_html.size_iec(8 << 20) == "8 MiB"
    assert status_html.size_iec(1536) == "1.5 KiB"
    assert status_html.count(1234567) == "1\u202f234\u202f567"
    assert status_html.per_second(12.345) == "12.3"
    assert status_html.per_second(None) == status_html.NA


def test_page_and_json_list_the_last_runs_newest_first():
    from pybrid.proxy.runs.history import RunRecord

    done = RunRecord(id="client-run-1", proxy_id="proxy-run-1", session="abcd1234",
                     peer="10.0.0.99:50000", started=100.0, ended=103.0, carriers=2, chunks=40,
                     missing=3, result="done")
    failed = RunRecord(id="client-run-2", proxy_id="proxy-run-2", session="abcd1234",
                       peer="10.0.0.99:50000", started=110.0, ended=110.5, carriers=2,
                       chunks=0, missing=0, result="error",
                       reason="carrier /00-00-5E-00-53-01 of backend 10.0.0.7:5732: <overload>")
    status = ops_fakes.status(recent_runs=(done, failed))
    page = status_html.render(status)
    section = page[page.index("<h2>Last runs</h2>"):]
    assert section.index("client-run-2") < section.index("client-run-1")  # newest first
    assert "proxy-run-1" in section and "10.0.0.99:50000" in section and "3 s" in section
    assert "&lt;overload&gt;" in section and "<overload>" not in page
    data = json.loads(json.dumps(status.to_json()))
    assert [r["id"] for r in data["recent_runs"]] == ["client-run-1", "client-run-2"]
    assert data["recent_runs"][0]["duration"] == 3.0 and data["recent_runs"][0]["missing"] == 3
    assert data["recent_runs"][1]["reason"].endswith("<overload>")
    assert "no run has ended yet" in status_html.render(ops_fakes.status())

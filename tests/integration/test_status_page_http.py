"""The status page over real HTTP (twisted.web.client.Agent) while a client runs through the
proxy: the active session, its run, per-carrier chunk rates, the queue, and recent errors; a
real ``/metrics`` scrape parsed by ``prometheus_client`` holds every metric the docs name."""

from __future__ import annotations

import json
import pathlib
import re
import socket

import pytest
import pytest_twisted
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from support.ops_http import fetch, header
from support.ops_stack import MACS, status_stack
from support.waiting import until
from twisted.logger import Logger

from pybrid.client import connect
from pybrid.monitor.options import MonitorConfig
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.startup import ListenFailed

T = 30.0
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
#: Where metric names are documented (in backticks).
METRIC_DOCS = ("deployment.md", "monitors.md")
METRIC_NAME = re.compile(r"`((?:pybrid|process|python)_[a-z0-9_]+)")


def documented_metrics() -> set[str]:
    names: set[str] = set()
    for doc in METRIC_DOCS:
        names.update(METRIC_NAME.findall((DOCS / doc).read_text(encoding="utf-8")))
    return names


def scraped_metrics(text: str) -> set[str]:
    """Family and sample names of a scrape (a counter family ``x`` has samples ``x_total``)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


async def status_json(reactor, base):
    code, headers, body = await fetch(reactor, base + "status.json")
    assert code == 200 and header(headers, "Content-Type").startswith("application/json")
    return json.loads(body)


@pytest_twisted.ensureDeferred
async def test_status_page_shows_the_live_session_and_data(reactor):
    async with status_stack(reactor, 2) as (devices, service):
        assert service.status_page is not None
        host, port = service.status_page.address
        assert host == "127.0.0.1" and port > 0
        base = service.status_page.url
        first = await connect("127.0.0.1", service.address[1], reactor=reactor)
        second = None
        try:
            running = first.run(2.5, channels=4, sample_rate=40_000, timeout=T)
            local = first.control.protocol.transport.getHost()
            peer = f"{local.host}:{local.port}"

            async def streaming():
                data = await status_json(reactor, base)
                active = data["active"]
                rates = [c["chunk_rate"] or 0 for c in data["carriers"]]
                return data if active and min(rates) > 0 else None

            data = await until(reactor, streaming, "chunk rates on both carriers",
                               seconds=15.0, step=0.1)
            assert data["active"]["peer"] == peer and data["active"]["state"] == "active"
            run = data["active"]["runs"][0]
            assert run["carriers"] == 2 and run["chunks"] > 0
            assert [b["name"] for b in data["backends"]] == [
                f"127.0.0.1:{d.port}" for d in devices]
            assert [b["location"] for b in data["backends"]] == ["0", "1"]
            assert all(b["healthy"] and b["data_mode"] == "udp" for b in data["backends"])
            assert [c["path"] for c in data["carriers"]] == ["/" + m for m in MACS[:2]]
            assert data["wires"] == [{"source": "0/0", "target": "1/0"}]
            assert data["backends"][0]["datagram_rate"] > 0
            assert data["active"]["frame_rate"] > 0

            second = await connect("127.0.0.1", service.address[1], reactor=reactor)
            queued = second.run(0.01, channels=2, timeout=T)
            me = second.control.protocol.transport.getHost()

            async def in_queue():
                snapshot = await status_json(reactor, base)
                return [q["peer"] for q in snapshot["queue"]]

            assert await until(reactor, in_queue, "the second client queued",
                               seconds=15.0, step=0.1) == [
                f"{me.host}:{me.port}"]

            code, headers, body = await fetch(reactor, base + "metrics")
            assert code == 200
            assert header(headers, "Content-Type") == CONTENT_TYPE_LATEST
            text = body.decode()
            assert "# TYPE pybrid_proxy_carrier_chunk_gaps_total counter" in text
            assert f'pybrid_proxy_backend_up{{backend="127.0.0.1:{devices[1].port}"}} 1' in text
            assert 'pybrid_proxy_sessions{state="queued"} 1' in text

            code, headers, body = await fetch(reactor, base)
            assert code == 200 and header(headers, "Content-Type").startswith("text/html")
            page = body.decode()
            assert peer in page and f"127.0.0.1:{devices[0].port}" in page

            await running.addTimeout(T, reactor)
            await first.close()
            await queued.addTimeout(T, reactor)
        finally:
            await first.close()
            if second is not None:
                await second.close()
        code, _, _ = await fetch(reactor, base + "nothing-here")
        assert code == 404


@pytest_twisted.ensureDeferred
async def test_a_dead_backend_shows_as_degraded_with_its_error(reactor):
    async with status_stack(reactor, 1, extra=("127.0.0.1:1",)) as (_devices, service):
        assert service.status_page is not None
        base = service.status_page.url

        async def logged():
            data = await status_json(reactor, base)
            return data if data["errors"] else None

        data = await until(reactor, logged, "an error on the page", seconds=15.0, step=0.1)
        assert not data["healthy"]
        dead = data["backends"][1]
        assert dead["name"] == "127.0.0.1:1" and not dead["healthy"]
        assert dead["state"] in ("waiting", "connecting")
        assert any("127.0.0.1:1" in e["text"] and e["level"] == "warn" for e in data["errors"])
        _, _, body = await fetch(reactor, base + "metrics")
        assert b'pybrid_proxy_backend_up{backend="127.0.0.1:1"} 0' in body
        assert b'pybrid_proxy_log_events_total{level="warn"}' in body


@pytest_twisted.ensureDeferred
async def test_two_devices_with_one_mac_show_as_misconfigured(reactor):
    """Issue 21: the scheduler refuses every session; the page must not say "ready"."""
    async with status_stack(reactor, 2, macs=(MACS[0], MACS[0]), wait=False) as (_d, service):
        assert service.status_page is not None
        base = service.status_page.url

        async def both_up():
            data = await status_json(reactor, base)
            return data if all(b["healthy"] for b in data["backends"]) else None

        data = await until(reactor, both_up, "both backends ready", seconds=15.0, step=0.1)
        assert data["healthy"] is False and data["readiness"]["state"] == "misconfigured"
        assert f"carrier /{MACS[0]} is reported by backend" in data["readiness"]["reason"]
        assert "distinct MAC addresses" in data["readiness"]["reason"]
        assert not service.all_healthy()
        _, _, body = await fetch(reactor, base + "metrics")
        assert b"\npybrid_proxy_healthy 0.0\n" in body
        _, _, page = await fetch(reactor, base)
        top = page.decode()[:page.decode().index("<main>")]
        assert "misconfigured" in top and f"carrier /{MACS[0]} is reported by backend" in top


@pytest_twisted.ensureDeferred
async def test_the_last_run_stays_on_the_page_after_it_ended(reactor):
    """Issue 21: a run through the proxy, then /status.json: the run is under recent_runs."""
    async with status_stack(reactor, 2) as (_devices, service):
        assert service.status_page is not None
        base = service.status_page.url
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        try:
            result = await client.run(0.05, channels=2, sample_rate=10_000,
                                      timeout=T).addTimeout(T, reactor)
            local = client.control.protocol.transport.getHost()

            async def recorded():
                data = await status_json(reactor, base)
                return data["recent_runs"] or None

            runs = await until(reactor, recorded, "the run in recent_runs", seconds=15.0,
                               step=0.1)
            data = await status_json(reactor, base)
            _, _, page = await fetch(reactor, base)
        finally:
            await client.close()
    [run] = runs
    assert run["id"] == result.run_id and run["proxy_id"] != result.run_id
    assert run["peer"] == f"{local.host}:{local.port}"
    assert (run["result"], run["reason"], run["carriers"]) == ("done", None, 2)
    received = sum(c.chunks for c in result.carriers.values())
    assert received > 0 and run["chunks"] - run["missing"] == received
    assert run["ended"] >= run["started"] and run["duration"] == run["ended"] - run["started"]
    assert data["active"] is not None and data["active"]["runs"] == []  # no longer running
    assert result.run_id in page.decode() and "Last runs" in page.decode()


def test_a_status_port_in_use_stops_the_start_with_a_clear_error(reactor):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", 1),),
                                           interface="127.0.0.1", port=0, status_port=port),
                               reactor)
        with pytest.raises(ListenFailed) as err:
            service.privilegedStartService()
        assert str(err.value) == (f"cannot listen on 127.0.0.1:{port} (--status-port): "
                                  "address already in use")
    assert service.port is None  # the client port was not bound either
    assert service.status_page is not None and not service.status_page._observing


def test_the_docs_name_metrics():
    names = documented_metrics()
    assert {"pybrid_proxy_carrier_chunks_total", "pybrid_proxy_monitor_dropped_total",
            "pybrid_build_info", "process_cpu_seconds_total"} <= names


@pytest_twisted.ensureDeferred
async def test_a_real_scrape_has_every_documented_metric(reactor):
    """Scrape during a session (after a run, with a monitor tap, a shared-memory tap that no
    reader has created and a logged warning) and parse it with prometheus_client: every metric
    the docs name must be there."""
    import uuid

    monitor = MonitorConfig((("239.255.77.14", 5799),), ttl=0, interface="127.0.0.1")
    shm = (f"pybrid-scrape-{uuid.uuid4().hex[:10]}",)
    async with status_stack(reactor, 2, monitor=monitor, shm_taps=shm) as (_devices, service):
        assert service.status_page is not None
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        try:
            result = await client.run(0.05, channels=2, sample_rate=10_000,
                                      timeout=T).addTimeout(T, reactor)
            assert result is not None
            Logger(namespace="pybrid.proxy.scrape_test").warn("a warning for the log counter")
            code, headers, body = await fetch(reactor, service.status_page.url + "metrics")
        finally:
            await client.close()
    assert code == 200 and header(headers, "Content-Type") == CONTENT_TYPE_LATEST
    text = body.decode()
    missing = documented_metrics() - scraped_metrics(text)
    assert not missing, f"documented but not in the scrape: {sorted(missing)}"
    chunks = {s.labels["carrier"]: s.value for f in text_string_to_metric_families(text)
              if f.name == "pybrid_proxy_carrier_chunks" for s in f.samples}
    assert set(chunks) == {"/" + m for m in MACS[:2]} and min(chunks.values()) > 0


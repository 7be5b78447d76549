"""The proxy with ``--nats`` (in process: ProxyService with a NatsExportConfig) against real
``nats-server`` processes: the export shows on the status page and ``/metrics``; a server
down at start, killed mid-run, and a three-node cluster losing a node mid-run."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import numpy as np
import pytest_twisted
from support.nats_servers import NatsServer, cluster, free_port, require_nats
from support.ops_http import fetch
from support.waiting import until
from test_nats_export import fetch as fetch_replay
from test_nats_export import same_samples
from twisted.internet import threads

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.proxy.taps.nats.child import NatsExportConfig

require_nats()  # no shared memory: the bridge reads the proxy's link

T = 90.0


@contextlib.asynccontextmanager
async def proxy(reactor: Any, servers: tuple[str, ...], replicas: int = 1, **options: Any):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    dev.listen(0, interface="127.0.0.1")
    nats = NatsExportConfig(servers=servers, proxy_name="lab1", stream="PYBRIDT",
                            max_bytes=256 << 20, replicas=replicas, **options)
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", dev.port),),
                                       interface="127.0.0.1", port=0, status_port=0,
                                       nats=nats), reactor)
    service.startService()
    client = None
    try:
        await service.when_healthy().addTimeout(10, reactor)
        await until(reactor, lambda: service.nats.last.get("fed"), "the bridge reads its link")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        yield service, client
    finally:
        if client is not None:
            await client.close()
        await service.stopService()
        await dev.stop()


def export(service: Any) -> Any:
    return service.nats.status()


async def replay(reactor: Any, url: str, run_id: str) -> Any:
    return await threads.deferToThread(fetch_replay, url, run_id)


@pytest_twisted.ensureDeferred
async def test_the_export_shows_on_the_status_page_and_metrics(reactor, tmp_path):
    server = await NatsServer(reactor, tmp_path / "js").start()
    try:
        async with proxy(reactor, (server.url,)) as (service, client):
            await until(reactor, lambda: export(service).state == "connected", "connected")
            result = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            await until(reactor, lambda: export(service).runs_ended >= 1, "the run's end")
            _c, _h, page = await fetch(reactor, service.status_page.url)
            _c, _h, metrics = await fetch(reactor, service.status_page.url + "metrics")
            replayed = await replay(reactor, server.url, result.run_id)
    finally:
        await server.stop()
    assert b"NATS export" in page and b"connected" in page
    text = metrics.decode()
    assert "pybrid_proxy_nats_connected 1.0" in text
    assert 'pybrid_proxy_nats_messages_total{outcome="dropped"} 0.0' in text
    assert 'pybrid_proxy_nats_runs_total{condition="complete"} 1.0' in text
    same_samples(replayed, result)
    assert replayed.meta.extra["condition"] == "complete"


@pytest_twisted.ensureDeferred
async def test_server_down_at_start_the_proxy_serves_and_the_export_catches_up(reactor,
                                                                               tmp_path):
    server = NatsServer(reactor, tmp_path / "js", port=free_port())
    try:
        async with proxy(reactor, (server.url,)) as (service, client):
            await until(reactor, lambda: export(service).last_error, "a connect error")
            assert export(service).state == "connecting"
            first = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            assert first.complete  # the client's run does not wait for NATS
            await server.start()
            await until(reactor, lambda: export(service).state == "connected", "reconnected",
                        seconds=T)
            second = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            await until(reactor, lambda: export(service).runs_ended >= 2, "both runs' ends",
                        seconds=T)
            for result in (first, second):  # the first waited in the bounded queue
                same_samples(await replay(reactor, server.url, result.run_id), result)
    finally:
        await server.stop()


def lacks_only_what_it_says(replayed: Any, result: Any) -> None:
    """Every chunk the replay lacks is named missing by the run's end, and every row it has
    equals the client's."""
    for mac, c in result.carriers.items():
        m = replayed[mac]
        rows = m.samples.shape[0]
        have = ~np.isnan(m.samples).all(axis=1)
        np.testing.assert_array_equal(m.samples[have], c.samples[:rows][have])
        size = m.chunk_size
        absent = {int(i) // size for i in np.flatnonzero(~have)}
        assert absent <= set(m.missing_chunks)


@pytest_twisted.ensureDeferred
async def test_server_killed_mid_run_the_run_goes_on_and_its_end_says_what_is_lacking(
        reactor, tmp_path):
    server = await NatsServer(reactor, tmp_path / "js", port=free_port()).start()
    try:
        async with proxy(reactor, (server.url,)) as (service, client):
            await until(reactor, lambda: export(service).state == "connected", "connected")
            running = client.run(3.0, channels=2, sample_rate=10_000)
            await until(reactor, lambda: export(service).stored > 30, "chunks stored")
            await server.kill()
            result = await running.addTimeout(T, reactor)
            assert result.complete  # the run went on without NATS
            await server.start()
            await until(reactor, lambda: export(service).runs_ended >= 1, "the run's end",
                        seconds=T)
            replayed = await replay(reactor, server.url, result.run_id)
    finally:
        await server.stop()
    lacks_only_what_it_says(replayed, result)
    end_missing = set(replayed.carriers[next(iter(result.carriers))].missing_chunks)
    assert (replayed.meta.extra["condition"] == "complete") == (not end_missing)


@pytest_twisted.ensureDeferred
async def test_a_three_node_cluster_losing_a_node_mid_run_replays_every_chunk(reactor,
                                                                             tmp_path):
    nodes = cluster(reactor, tmp_path)
    try:
        await _start_all(nodes)
        urls = tuple(n.url for n in nodes)
        async with proxy(reactor, urls, replicas=3) as (service, client):
            await until(reactor, lambda: export(service).state == "connected", "connected",
                        seconds=T)
            running = client.run(3.0, channels=2, sample_rate=10_000)
            await until(reactor, lambda: export(service).stored > 30, "chunks stored")
            await nodes[0].kill()
            result = await running.addTimeout(T, reactor)
            await until(reactor, lambda: export(service).runs_ended >= 1, "the run's end",
                        seconds=T)
            replayed = await replay(reactor, nodes[1].url, result.run_id)
    finally:
        for node in nodes:
            await node.stop()
    assert result.complete
    same_samples(replayed, result)
    mac = next(iter(result.carriers))
    assert replayed[mac].missing_chunks == ()
    assert replayed[mac].samples.shape == result[mac].samples.shape
    assert replayed.meta.extra["condition"] == "complete"


async def _start_all(nodes: list[NatsServer]) -> None:
    from twisted.internet import defer

    await defer.gatherResults([defer.ensureDeferred(n.start(60)) for n in nodes])


@pytest_twisted.ensureDeferred
async def test_twistd_proxy_with_nats_starts_its_bridge_and_exports_a_run(reactor, tmp_path):
    from test_proxy_twistd import twistd

    server = await NatsServer(reactor, tmp_path / "js").start()
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    dev.listen(0, interface="127.0.0.1")
    proc = twistd(reactor, "-b", f"127.0.0.1:{dev.port}", "--listen", "127.0.0.1", "--port",
                  "0", "--nats", server.url, "--nats-name", "tw", "--nats-stream", "TW",
                  "--nats-max-bytes", "64MiB")
    client = None
    try:
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"nats export: connected", 60)
        await proc.wait_for_output(b"the bridge reads the proxy's link", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect("127.0.0.1", proc.port, reactor=reactor)
        result = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        replayed = await replay(reactor, server.url, result.run_id)
    finally:
        if client is not None:
            await client.close()
        await proc.stop()
        await dev.stop()
        await server.stop()
    same_samples(replayed, result)
    assert replayed.meta.extra["condition"] == "complete"
    assert b"nats export: bridge started" in proc.stdout


@pytest_twisted.ensureDeferred
async def test_a_killed_bridge_is_restarted_and_exports_the_next_run(reactor, tmp_path):
    server = await NatsServer(reactor, tmp_path / "js").start()
    try:
        async with proxy(reactor, (server.url,)) as (service, _client):
            await until(reactor, lambda: export(service).state == "connected", "connected")
            service.nats._transport.signalProcess("KILL")
            await until(reactor, lambda: export(service).restarts == 1, "a restart")
            await until(reactor, lambda: export(service).state == "connected"
                        and service.nats.last.get("fed"), "a new bridge", seconds=T)
            # the bridge (nice 19) may take longer to come back on a busy host than the
            # proxy lets a client idle (session_timeout): the next run comes from a new one
            late = await connect("127.0.0.1", service.address[1], reactor=reactor)
            try:
                result = await late.run(0.1, channels=2, sample_rate=10_000).addTimeout(T,
                                                                                        reactor)
            finally:
                await late.close()
            replayed = await replay(reactor, server.url, result.run_id)
    finally:
        await server.stop()
    same_samples(replayed, result)


async def end_message(url: str, run_id: str) -> dict[str, Any]:
    """The run's ``end`` message, read with nats-py alone."""
    import json

    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().subscribe(f"pybrid.*.{run_id}.end", ordered_consumer=True,
                                             deliver_policy=DeliverPolicy.ALL)
        msg = await sub.next_msg(timeout=20)
        return dict(json.loads(msg.data))
    finally:
        await nc.close()


@pytest_twisted.ensureDeferred
async def test_twistd_device_dropping_chunks_through_twistd_proxy_replays_the_same_gaps(
        reactor, tmp_path):
    import asyncio
    import pathlib
    import sys

    from support.reference import spawn
    from test_proxy_twistd import twistd

    server = await NatsServer(reactor, tmp_path / "js").start()
    # seed 0, drop 0.3: of the 10 chunks of 0.1 s at 10 kHz, chunks 1 and 9 (the last) are lost
    device = spawn(reactor, "twistd-pybrid-device", [
        str(pathlib.Path(sys.executable).with_name("twistd")), "--pidfile=", "-n",
        "pybrid-device", "--port", "0", "--drop", "0.3", "--seed", "0"],
        ready_pattern=rb"listening on 127\.0\.0\.1:(\d+)")
    proc = client = None
    try:
        await device.ready.addTimeout(30, reactor)
        proc = twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                      "--port", "0", "--nats", server.url, "--nats-name", "tw",
                      "--nats-stream", "TW", "--nats-max-bytes", "64MiB")
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"nats export: connected", 60)
        await proc.wait_for_output(b"the bridge reads the proxy's link", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect("127.0.0.1", proc.port, reactor=reactor)
        result = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        replayed = await replay(reactor, server.url, result.run_id)
        end = await threads.deferToThread(asyncio.run, end_message(server.url, result.run_id))
    finally:
        if client is not None:
            await client.close()
        if proc is not None:
            await proc.stop()
        await device.stop()
        await server.stop()
    (mac, mine), = result.carriers.items()
    assert mine.missing_chunks == (1, 9)  # what the client saw: the device's drops
    same_samples(replayed, result)
    assert replayed[mac].missing_chunks == (1, 9)
    assert np.isnan(replayed[mac].samples[100:200]).all()
    assert np.isnan(replayed[mac].samples[900:]).all()
    assert replayed.sample_rate == 10_000 and replayed[mac].expected_samples == 1000
    assert replayed.meta.extra["condition"] == "incomplete"
    assert end["condition"] == "incomplete"
    assert list(end["missing"].values()) == [[1, 9]]


@pytest_twisted.ensureDeferred
async def test_tls_with_the_servers_ca_exports_and_a_wrong_ca_is_on_the_status_page(
        reactor, tmp_path):
    """A JetStream server that requires TLS: the export verifying it with ``--nats-tls-ca``
    stores a run a TLS consumer replays; trusting another CA, the status page says the
    certificate failed, nothing is stored, and the proxy serves the client's run as ever."""
    import ssl

    from support.tls import make_pki

    from pybrid.monitor.nats_replay import fetch_run

    pki = make_pki(tmp_path / "pki")
    server = await NatsServer(reactor, tmp_path / "js", extra=(
        "--tls", "--tlscert", str(pki.cert), "--tlskey", str(pki.key))).start()
    url = server.url.replace("nats://", "tls://")
    try:
        async with proxy(reactor, (url,), tls_ca=str(pki.other_ca)) as (service, client):
            await until(reactor, lambda: "CERTIFICATE_VERIFY_FAILED"
                        in export(service).last_error, "the certificate error")
            wrong = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            _c, _h, page = await fetch(reactor, service.status_page.url)
            refused = export(service)
        async with proxy(reactor, (url,), tls_ca=str(pki.ca)) as (service, client):
            await until(reactor, lambda: export(service).state == "connected", "connected")
            good = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            await until(reactor, lambda: export(service).runs_ended >= 1, "the run's end")
        context = ssl.create_default_context(cafile=str(pki.ca))
        replayed = await threads.deferToThread(lambda: fetch_run(
            url, good.run_id, idle_timeout=20.0, tls=context))
    finally:
        await server.stop()
    assert wrong.complete  # served while the export could not connect
    assert refused.state == "connecting" and refused.stored == 0
    assert b"CERTIFICATE_VERIFY_FAILED" in page
    assert good.complete
    same_samples(replayed, good)


@pytest_twisted.ensureDeferred
async def test_a_user_password_and_an_nkey_authenticate_the_export(reactor, tmp_path,
                                                                   monkeypatch):
    """``--nats-user`` with ``$PYBRID_NATS_PASSWORD``, and ``--nats-nkey`` (a seed file),
    against a server that knows only these users: each exports a run a consumer replays."""
    import os

    import nkeys

    from pybrid.monitor.nats_replay import fetch_run

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    password = uuid.uuid4().hex
    conf = tmp_path / "auth.conf"
    users = f'{{user: "lab", password: "{password}"}}, {{nkey: "{public}"}}'
    conf.write_text(f"authorization {{ users = [ {users} ] }}\n")
    monkeypatch.setenv("PYBRID_NATS_PASSWORD", password)
    server = await NatsServer(reactor, tmp_path / "js", extra=("-c", str(conf))).start()
    results = []
    try:
        for options, connect_kw in (({"user": "lab"}, {"user": "lab", "password": password}),
                                    ({"nkey": str(seed_file)},
                                     {"nkeys_seed": str(seed_file)})):
            async with proxy(reactor, (server.url,), **options) as (service, client):
                await until(reactor, lambda s=service: export(s).state == "connected",
                            "connected")
                result = await client.run(0.1, channels=2,
                                          sample_rate=10_000).addTimeout(T, reactor)
                await until(reactor, lambda s=service: export(s).runs_ended >= 1, "the end")
            kw = dict(connect_kw)
            replayed = await threads.deferToThread(
                lambda r=result, k=kw: fetch_run(server.url, r.run_id, idle_timeout=20.0, **k))
            results.append((result, replayed))
    finally:
        await server.stop()
    for result, replayed in results:
        same_samples(replayed, result)

"""The NATS export end to end on loopback, with real ``nats-server`` processes: the proxy's shm
tap → ``python -m pybrid.proxy.taps.nats`` → JetStream → a consumer started after the run ended,
whose samples equal the client's (NaN rows at the same missing chunks with ``drop``)."""

from __future__ import annotations

import json
import pathlib
import sys
import uuid
from typing import Any

import numpy as np
import pytest_twisted
from support.nats_servers import NatsServer, require_nats
from support.reference import spawn
from support.shm import require_shm
from support.waiting import until
from twisted.internet import threads

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.config import Faults
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

require_shm()
require_nats()

T = 60.0


def bridge(reactor: Any, name: str, *urls: str, stream: str = "PYBRIDTEST",
           extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Any:
    argv = [sys.executable, "-m", "pybrid.proxy.taps.nats", "--shm", name, "--shm-size", "16MiB",
            "--proxy-name", "t", "--nats-stream", stream, "--max-bytes", "256MiB", *extra]
    for url in urls:
        argv += ["--nats", url]
    return spawn(reactor, "nats-bridge", argv, ready_pattern=rb'"shm_ready": true', env=env)


def status(proc: Any) -> dict[str, Any]:
    lines = [x for x in bytes(proc.stdout).decode(errors="replace").splitlines()
             if x.startswith("{")]
    return json.loads(lines[-1])["nats_bridge"] if lines else {}


async def stack(reactor: Any, name: str, **faults: Any) -> tuple[Any, Any]:
    dev = SimulatedDevice(reactor=reactor,
                          config=DeviceConfig(carriers=1, faults=Faults(**faults)))
    dev.listen(0, interface="127.0.0.1")
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", dev.port),),
                                       interface="127.0.0.1", port=0, shm_taps=(name,)),
                           reactor)
    service.startService()
    await service.when_healthy().addTimeout(10, reactor)
    return dev, service


def fetch(url: str, run_id: str | None, stream_timeout: float = 20.0) -> Any:
    from pybrid.monitor.nats_replay import fetch_run

    return fetch_run(url, run_id, idle_timeout=stream_timeout)


def same_samples(mine: Any, theirs: Any) -> None:
    """The replayed run ``mine`` is the client's ``theirs``: equal rows (NaN where NaN, lost
    chunks at the end too), the same missing chunks, sample rate and expected samples."""
    assert list(mine.carriers) == list(theirs.carriers)
    assert mine.sample_rate == theirs.sample_rate > 0
    for mac, c in theirs.carriers.items():
        m = mine[mac]
        assert m.samples.dtype == c.samples.dtype
        np.testing.assert_array_equal(m.samples, c.samples)
        assert m.missing_chunks == c.missing_chunks
        assert m.expected_samples == c.expected_samples
        assert m.probes == c.probes
        if c.final is not None:
            np.testing.assert_array_equal(m.final, c.final)


SUPPORT = pathlib.Path(__file__).resolve().parents[1] / "support"


async def consumers(reactor: Any, url: str, run_id: str, tmp_path: Any) -> tuple[Any, Any]:
    """The run read by a script with nats-py and numpy only, and recorded by
    ``pybrid-monitor --nats URL --last --record FILE.h5``."""
    plain = tmp_path / "plain.npz"
    reader = spawn(reactor, "plain reader", [sys.executable, str(SUPPORT / "nats_plain_reader.py"),
                                             url, run_id, str(plain)])
    h5 = tmp_path / "run.h5"
    monitor = spawn(reactor, "pybrid-monitor", [
        str(pathlib.Path(sys.executable).with_name("pybrid-monitor")), "--nats", url, "--last",
        "--record", str(h5)])
    for proc in (reader, monitor):
        code = await proc.ended.addTimeout(T, reactor)
        assert code == 0, proc.tail()
    assert f"run {run_id}: " in monitor.stdout.decode(), monitor.tail()
    return np.load(plain), h5


async def run_and_replay(reactor: Any, tmp_path: Any, token: str | None = None,
                         **device: Any) -> tuple[Any, Any, Any]:
    auth = ("--auth", token) if token else ()
    server = await NatsServer(reactor, tmp_path / "js", extra=auth).start()
    name = f"pybrid-n-{uuid.uuid4().hex[:10]}"
    proc = bridge(reactor, name, server.url, env={"PYBRID_NATS_TOKEN": token} if token else None)
    url = server.url.replace("nats://", f"nats://{token}@") if token else server.url
    dev = service = client = None
    try:
        await proc.ready.addTimeout(T, reactor)
        dev, service = await stack(reactor, name, **device)
        await until(reactor, lambda: service.shm.taps[0].state == "attached", "tap attached")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        result = await client.run(0.2, channels=4, sample_rate=10_000).addTimeout(T, reactor)
        await until(reactor, lambda: status(proc).get("runs_ended", 0) >= 1, "the run's end")
        replayed = await threads.deferToThread(fetch, url, result.run_id)
        st = status(proc)
        if not token:
            st["consumers"] = await consumers(reactor, server.url, result.run_id, tmp_path)
        return result, replayed, st
    finally:
        if client is not None:
            await client.close()
        if service is not None:
            await service.stopService()
        if dev is not None:
            await dev.stop()
        await proc.stop()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_run_replayed_after_it_ended_equals_the_clients(reactor, tmp_path):
    result, replayed, st = await run_and_replay(reactor, tmp_path)
    assert result.complete
    same_samples(replayed, result)
    mac = next(iter(result.carriers))
    assert replayed[mac].samples.shape == result.samples.shape
    assert replayed.meta.extra["condition"] == "complete"
    # every state change the client saw (IC, OP … DONE), not only the final ones
    assert [(s.carrier, s.new) for s in replayed.states] == \
        [(s.carrier, s.new) for s in result.states]
    assert "OP" in [s.new for s in replayed.states]
    assert replayed[mac].states == result[mac].states
    plain, h5 = st["consumers"]
    np.testing.assert_array_equal(plain[f"{mac}/samples"], result.samples.astype(np.float64))
    assert str(plain["condition"]) == "complete"
    import h5py

    with h5py.File(h5) as f:
        np.testing.assert_array_equal(f[mac]["samples"][()], result.samples)
    assert st["dropped"] == 0 and st["failed"] == 0 and st["incomplete"] == 0


@pytest_twisted.ensureDeferred
async def test_dropped_chunks_are_nan_rows_and_the_run_is_marked_incomplete(reactor, tmp_path):
    result, replayed, st = await run_and_replay(reactor, tmp_path, drop=0.2, seed=7)
    assert not result.complete
    same_samples(replayed, result)
    mac = next(iter(result.carriers))
    assert replayed[mac].missing_chunks  # chunks lost by the device are missing here too
    assert replayed.meta.extra["condition"] == "incomplete"
    assert st["incomplete"] == 1
    plain, _h5 = st["consumers"]
    rows = plain[f"{mac}/samples"].shape[0]
    np.testing.assert_array_equal(plain[f"{mac}/samples"],
                                  result[mac].samples[:rows].astype(np.float64))
    assert str(plain["condition"]) == "incomplete"


@pytest_twisted.ensureDeferred
async def test_a_token_from_the_environment_authenticates_the_export(reactor, tmp_path):
    token = uuid.uuid4().hex
    result, replayed, st = await run_and_replay(reactor, tmp_path, token=token)
    same_samples(replayed, result)
    assert st["connected"] and st["stored"] > 0


@pytest_twisted.ensureDeferred
async def test_pybrid_monitor_follows_a_live_run_and_records_it(reactor, tmp_path):
    server = await NatsServer(reactor, tmp_path / "js").start()
    name = f"pybrid-n-{uuid.uuid4().hex[:10]}"
    proc = bridge(reactor, name, server.url)
    record = tmp_path / "live.npz"
    monitor = spawn(reactor, "pybrid-monitor", [
        str(pathlib.Path(sys.executable).with_name("pybrid-monitor")), "--nats", server.url,
        "--record", str(record)], ready_pattern=rb"following pybrid")
    dev = service = client = None
    try:
        await proc.ready.addTimeout(T, reactor)
        await monitor.ready.addTimeout(T, reactor)
        dev, service = await stack(reactor, name)
        await until(reactor, lambda: service.shm.taps[0].state == "attached", "tap attached")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        result = await client.run(0.2, channels=3, sample_rate=10_000).addTimeout(T, reactor)
        await monitor.wait_for_output(f"run {result.run_id}: complete".encode(), T)
        assert await monitor.stop() == 0
    finally:
        await monitor.stop()
        if client is not None:
            await client.close()
        if service is not None:
            await service.stopService()
        if dev is not None:
            await dev.stop()
        await proc.stop()
        await server.stop()
    mac = next(iter(result.carriers))
    with np.load(record) as f:
        np.testing.assert_array_equal(f[f"{mac}/samples"], result.samples)


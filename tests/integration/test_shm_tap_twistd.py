"""``twistd pybrid-proxy --shm-tap NAME`` as a child: the real reader sees a SIGKILLed proxy as
``WriterDeadException``; a second proxy on the same name is refused with a clear error; a hung
reader does not make the proxy grow; ``pybrid-monitor --shm`` records and reports WriterDead."""

from __future__ import annotations

import pathlib
import sys
import uuid

import pytest_twisted
from support.live_ws import assert_holds
from support.proxy_client import connect
from support.shm import require_shm
from test_proxy_twistd import twistd
from test_shm_tap_loopback import Reader, start_run, until

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.wire import messages

require_shm()


def proxy(reactor, device, name):
    return twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                  "--port", "0", "--shm-tap", name)


@pytest_twisted.ensureDeferred
async def test_reader_sees_writer_dead_when_the_proxy_is_killed(reactor, tmp_path):
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    reader = Reader(name, tmp_path / "r.jsonl", "--runs", "1")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    proc = proxy(reactor, device, name)
    client = None
    try:
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"attached to the reader", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect(reactor, proc.port)
        reply = await client.request("start_run_command",
                                     start_run(str(uuid.uuid4()), 3_000_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await until(reactor, lambda: len(reader.lines()) > 20)
        proc.signal("KILL")
        await proc.ended.addTimeout(30, reactor)
        await until(reactor, lambda: reader.proc.poll() is not None)
        assert reader.proc.returncode == 3  # WriterDeadException from zerobuffer.Reader
        assert reader.lines()[-1] == {"event": "writer-dead"}
    finally:
        reader.kill()
        if client is not None:
            await client.close()
        await proc.stop()
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_second_proxy_on_the_same_name_is_refused_clearly(reactor, tmp_path):
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    reader = Reader(name, tmp_path / "r.jsonl", "--runs", "1")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    first = proxy(reactor, device, name)
    second = None
    try:
        await first.ready.addTimeout(30, reactor)
        await first.wait_for_output(b"attached to the reader", 15)
        second = proxy(reactor, device, name)
        await second.ready.addTimeout(30, reactor)  # it serves clients regardless
        await second.wait_for_output(b"one writer per ZeroBuffer", 15)
        assert b"another writer (pid " in second.stdout
        assert b"attached to the reader" not in second.stdout
        assert first.running and second.running
    finally:
        reader.kill()
        if second is not None:
            await second.stop()
        await first.stop()
        await device.stop()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest_twisted.ensureDeferred
async def test_proxy_rss_stays_bounded_while_its_reader_hangs(reactor, tmp_path):
    """A reader that stops reading: BufferFull detaches it; 8 s of 2 x 8 ch x 100-sample
    chunks (about 50 MB) go by and the proxy's memory does not grow with them."""
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    reader = Reader(name, tmp_path / "r.jsonl", "--payload", str(256 << 10),
                    "--stop-after", "10")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    proc = twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                  "--port", "0", "--shm-tap", name, "--shm-write-timeout", "0.5")
    client = None
    try:
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"attached to the reader", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        pid = proc.transport.pid
        client = await connect(reactor, proc.port)
        reply = await client.request("start_run_command",
                                     start_run(str(uuid.uuid4()), 8_000_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await proc.wait_for_output(b"(BufferFull)", 20)
        before = rss(pid)
        await until(reactor, lambda: sum(1 for f in client.frames
                                         if messages.kind_of(f) == "run_data_message")
                    >= 2 * 8000, timeout=30, step=0.1)
        after = rss(pid)
        assert after - before < 24 << 20, (before, after)
    finally:
        reader.kill()
        if client is not None:
            await client.close()
        await proc.stop()
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_pybrid_monitor_shm_records_a_run_and_reports_writer_dead(reactor, tmp_path):
    """``pybrid-monitor --shm NAME --record FILE.npz`` beside a twistd proxy: it records the
    client's run (samples equal), then reports the SIGKILLed proxy as WriterDead."""
    import numpy as np
    from support.reference import spawn
    from test_shm_tap_loopback import client_chunks

    from pybrid import samples as S
    from pybrid.wire.paths import mac_of

    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    record = tmp_path / "rec.npz"
    monitor_bin = str(pathlib.Path(sys.executable).with_name("pybrid-monitor"))
    monitor = spawn(reactor, "monitor", [monitor_bin, "--shm", name, "--shm-size", "16",
                                         "--record", str(record)],
                    ready_pattern=rb"waiting for a proxy")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    client = None
    proc = None
    try:
        await monitor.ready.addTimeout(30, reactor)
        proc = proxy(reactor, device, name)
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"attached to the reader", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect(reactor, proc.port)
        run_id = str(uuid.uuid4())
        reply = await client.request("start_run_command", start_run(run_id, 200_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await until(reactor, lambda: monitor.stdout.count(b": DONE") >= 2, timeout=30)
        # the client's last chunks may still be on their way over TCP when the reader has DONE
        await until(reactor, lambda: len(client_chunks(client, run_id)) >= 2 * 200, timeout=30)
        sent = client_chunks(client, run_id)
        assert len(sent) == 2 * 200
        proc.signal("KILL")
        code = await monitor.ended.addTimeout(30, reactor)
        assert code == 1, monitor.tail()
        assert b"WriterDead" in monitor.stderr and b"died" in monitor.stderr
        with np.load(record) as npz:
            for path in device.carrier_paths:
                mac = mac_of(path)
                assert npz[f"{mac}/missing_chunks"].size == 0
                want = np.concatenate([
                    S.decode(f.message_v1.run_data_message.data) for f in client.frames
                    if messages.kind_of(f) == "run_data_message"
                    and f.message_v1.run_data_message.entity.path == path])
                assert want.shape[0] == 200 * 100
                np.testing.assert_allclose(npz[f"{mac}/samples"], want, rtol=1e-6)
    finally:
        monitor.signal("KILL")
        if client is not None:
            await client.close()
        if proc is not None:
            await proc.stop()
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_pybrid_monitor_shm_web_serves_the_live_view_of_the_run(reactor, tmp_path):
    """``pybrid-monitor --shm NAME --web 0`` beside a twistd proxy: a WebSocket viewer of the
    monitor (not the proxy) sees the client's run with the simulator's samples."""
    import re

    import numpy as np
    from support.live_ws import view
    from support.reference import spawn

    from pybrid.device.signals import default_mac, expected_decoded

    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    monitor_bin = str(pathlib.Path(sys.executable).with_name("pybrid-monitor"))
    monitor = spawn(reactor, "monitor", [monitor_bin, "--shm", name, "--shm-size", "16",
                                         "--web", "0"], ready_pattern=rb"live view on http")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    client = proc = viewer = None
    try:
        await monitor.ready.addTimeout(30, reactor)
        url = re.search(rb"live view on (http://\S+)", monitor.stdout).group(1).decode()
        viewer = await view(reactor, url.replace("http://", "ws://") + "/ws", window=0.01,
                            columns=1000, channels=[0, 5])
        proc = proxy(reactor, device, name)
        await proc.ready.addTimeout(30, reactor)
        await proc.wait_for_output(b"attached to the reader", 15)
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect(reactor, proc.port)
        run_id = str(uuid.uuid4())
        reply = await client.request("start_run_command", start_run(run_id, 200_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        frame = await viewer.wait(lambda f: f.meta.get("run") and f.meta["run"]["id"] == run_id
                                  and f.meta.get("rows", 0) >= 20_000
                                  and not f.meta["run"]["active"], 30)
        assert frame.meta["per"] == 1 and frame.meta["run"]["sample_rate"] == 100_000
        want = expected_decoded(0, 8, 19_000, 1000, "f32", default_mac(0))
        for i, ch in enumerate((0, 5)):  # every column drawn, each holding its sample
            assert not np.isnan(frame.lo[i]).any() and not np.isnan(frame.hi[i]).any()
            assert_holds(frame, i, want[:, ch])
        assert frame.end_t == 0.2
        viewer.transport.loseConnection()
        await viewer.closed
        viewer = None
        monitor.signal("TERM")
        assert await monitor.ended.addTimeout(30, reactor) == 0, monitor.tail()
    finally:
        if viewer is not None:
            viewer.transport.loseConnection()
        if client is not None:
            client.close()
        if proc is not None:
            await proc.stop()
        await monitor.stop()
        await device.stop()

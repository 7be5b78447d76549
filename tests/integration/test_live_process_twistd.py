"""Smoke test: the installed ``twistd -n pybrid-proxy --status-port 0 --live-process``.  A
WebSocket viewer of the proxy's status port sees the client's run with the simulator's
samples (served by the child), and the child does not outlive the proxy: neither a clean
stop nor a SIGKILL of the proxy leaves it behind."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
import pytest_twisted
from support.live_ws import assert_holds, view
from support.proxy_client import connect
from support.waiting import until
from test_proxy_twistd import twistd
from test_shm_tap_loopback import start_run

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.signals import default_mac, expected_decoded
from pybrid.wire import messages


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def start(reactor, device):
    proc = twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                  "--port", "0", "--status-port", "0", "--live-process")
    await proc.ready.addTimeout(30, reactor)
    await proc.wait_for_output(b"live view: process started", 15)
    await proc.wait_for_output(b"status page on http", 15)
    await proc.wait_for_output(b"run data by udp", 15)
    pid = int(re.search(rb"live view: process started \(pid (\d+)\)", proc.stdout).group(1))
    port = int(re.search(rb"status page on http://[^\s:]+:(\d+)/", proc.stdout).group(1))
    return proc, pid, port


@pytest.mark.parametrize("stop", ["TERM", "KILL"])
@pytest_twisted.ensureDeferred
async def test_the_child_serves_the_viewer_and_goes_with_the_proxy(reactor, stop):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    proc = client = viewer = None
    try:
        proc, pid, port = await start(reactor, device)
        assert alive(pid)
        viewer = await view(reactor, f"ws://127.0.0.1:{port}/live/ws", window=0.01,
                            columns=1000, channels=[0, 5])
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
            assert not np.isnan(frame.lo[i]).any()
            assert_holds(frame, i, want[:, ch])
        proc.signal(stop)
        await proc.ended.addTimeout(30, reactor)
        await until(reactor, lambda: not alive(pid), "the live process gone", seconds=30.0)
        await viewer.closed.addTimeout(30, reactor)  # its connection went with the child
        viewer = None
    finally:
        if viewer is not None:
            viewer.transport.loseConnection()
        if client is not None:
            client.close()
        if proc is not None:
            await proc.stop()
        await device.stop()

"""``pybrid-monitor --web``: the live view served from a multicast monitor (MonitorLive), not the
proxy — frames over a real WebSocket and the page in headless Chromium show the simulator's
signal with the gaps of the chunks the device dropped."""

from __future__ import annotations

import os
import pathlib
import random

import pytest_twisted
from support.live_ws import assert_holds, view
from support.ops_http import fetch
from support.waiting import until
from test_live_view_browser import CHROMIUM, check_screenshot, chromium

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.config import Faults
from pybrid.device.signals import default_mac, expected_decoded
from pybrid.monitor import MonitorListener
from pybrid.monitor.options import MonitorConfig
from pybrid.monitor.web import MonitorLive, endpoint_string
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

RATE = 100_000
T = 30.0


def test_web_takes_a_port_or_an_endpoint():
    assert endpoint_string("8080") == "tcp:8080:interface=127.0.0.1"
    assert endpoint_string("ssl:8443:privateKey=k.pem") == "ssl:8443:privateKey=k.pem"


@pytest_twisted.ensureDeferred
async def test_the_monitor_serves_the_live_view_of_a_run_it_receives(reactor,
                                                                    tmp_path: pathlib.Path):
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    live = MonitorLive(reactor)
    listener = MonitorListener(reactor, group, 0, interface="127.0.0.1",
                               on_chunk=live.chunk, on_run=live.run)
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(
        carriers=1, faults=Faults(drop=0.03, seed=3)))
    service = client = web = viewer = None
    try:
        port = await listener.start()
        web = await live.listen("tcp:0:interface=127.0.0.1")
        url = f"http://127.0.0.1:{web.getHost().port}/"
        device.listen(0, interface="127.0.0.1")
        service = ProxyService(ProxyConfig(
            backends=(Backend("127.0.0.1", device.port),), interface="127.0.0.1", port=0,
            monitor=MonitorConfig(((group, port),), ttl=0, interface="127.0.0.1")), reactor)
        service.startService()
        await service.when_healthy().addTimeout(10, reactor)
        assert service.status_page is None  # nothing served by the proxy
        code, _h, body = await fetch(reactor, url + "live")
        assert code == 200 and b"<canvas" in body
        viewer = await view(reactor, url.replace("http://", "ws://") + "live/ws",
                            window=0, columns=930, channels=[0])
        await until(reactor, lambda: live.watchers == 1, "the viewer counted")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        result = await client.run(0.2, channels=2, sample_rate=RATE).addTimeout(T, reactor)
        await client.close()
        client = None
        carrier = next(iter(result.carriers.values()))
        frame = await viewer.wait(lambda f: f.meta.get("run") and not f.meta["run"]["active"]
                                  and f.meta.get("rows") == 20_000, 3)
        assert frame.meta["run"]["id"] == result.run_id
        assert frame.meta["run"]["sample_rate"] == RATE
        viewer.ask(window=0.01, columns=1000, channels=[0])
        frame = await viewer.wait(lambda f: f.meta.get("per") == 1)
        want = expected_decoded(0, 2, 19_000, 1000, "f32", default_mac(0))[:, 0]
        assert_holds(frame, 0, want)
        viewer.transport.loseConnection()
        await viewer.closed
        viewer = None
        if os.path.exists(CHROMIUM):
            shot = tmp_path / "monitor.png"
            await chromium(reactor, f"--screenshot={shot}", "--window-size=1400,900",
                           "--virtual-time-budget=4000",
                           f"{url}live?run={result.run_id}&window=0&channels=0")
            check_screenshot(shot, carrier.missing_chunks, carrier.chunk_size,
                             want_gaps=bool(carrier.missing_chunks), mac=default_mac(0))
    finally:
        if viewer is not None:
            viewer.transport.loseConnection()
        if client is not None:
            await client.close()
        if service is not None:
            await service.stopService()
        if web is not None:
            live.hub.stop()
            await web.stopListening()
        await listener.stop()
        await device.stop()

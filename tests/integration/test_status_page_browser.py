"""The status page in a real browser: headless Chromium renders the live page of a proxy with a
session running — a screenshot that shows something (the styled header, the green "ready"
pills, many colours) and a rendered DOM naming the live backends, the session's peer and its
run.  Skipped when ``/usr/bin/chromium`` is absent (CI installs it: see docs/deployment.md)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile

import numpy as np
import pytest
import pytest_twisted
from support.ops_http import decode_png, fetch
from support.ops_stack import status_stack
from support.reference import spawn
from support.waiting import until
from twisted.internet import defer

from pybrid.client import connect

CHROMIUM = "/usr/bin/chromium"
T = 30.0
HEADER_RGB = (0x10, 0x18, 0x28)  # header background (#101828)
READY_RGB = (0xDC, 0xFA, 0xE6)  # the "ready" pill (#dcfae6)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed")


async def chromium(reactor, *args: str, timeout: float = 90.0):
    with tempfile.TemporaryDirectory(prefix="pybrid-chromium-") as profile:
        # niced: on a small machine a starting browser must not starve the proxy under test
        argv = ["/usr/bin/nice", "-n", "15", CHROMIUM, "--headless", "--no-sandbox",
                "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", *args]
        proc = spawn(reactor, "chromium", argv)
        try:
            code = await proc.ended.addTimeout(timeout, reactor)
        except defer.TimeoutError:
            await proc.stop(5)
            raise AssertionError(f"chromium took more than {timeout} s:\n{proc.tail()}") from None
        assert code == 0, proc.tail()
        return proc


@pytest_twisted.ensureDeferred
async def test_chromium_renders_the_live_status_page(reactor, tmp_path: pathlib.Path):
    shot = tmp_path / "status.png"
    async with status_stack(reactor, 2, session_timeout=120.0) as (devices, service):
        assert service.status is not None
        url = service.status.url
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        running = client.run(60.0, channels=4, sample_rate=10_000, timeout=120)
        running.addErrback(lambda f: f.trap(defer.CancelledError))
        waiting = await connect("127.0.0.1", service.address[1], reactor=reactor)
        queued = waiting.run(0.01, channels=2)
        queued.addErrback(lambda f: f.trap(defer.CancelledError))
        try:
            local = client.control.protocol.transport.getHost()
            peer = f"{local.host}:{local.port}"
            backends = [f"127.0.0.1:{d.port}" for d in devices]
            mine = waiting.control.protocol.transport.getHost()
            second = f"{mine.host}:{mine.port}"

            async def live():  # the run, its rates and the queued client are on the page
                _, _, body = await fetch(reactor, url + "status.json")
                data = json.loads(body)
                active = data["active"]
                ready = (active and active["runs"] and active["frame_rate"] and data["queue"]
                         and all(c["chunk_rate"] for c in data["carriers"]))
                return active["runs"][0]["id"] if ready else None

            rid = await until(reactor, live, "the run, its rates and the queue on the page",
                              seconds=15.0, step=0.1)
            await chromium(reactor, f"--screenshot={shot}", "--window-size=1200,900", url)
            dom = (await chromium(reactor, "--dump-dom", url)).stdout.decode()
            assert not running.called, "the run ended while the browser looked"
        finally:
            running.cancel()
            queued.cancel()
            await client.close()
            await waiting.close()
    # checked after the proxy stopped: decoding blocks the reactor for a while
    assert "<title>pybrid-proxy 127.0.0.1:" in dom
    for text in [*backends, peer, second, rid, "active since"]:
        assert text in dom, text
    assert re.search(r"<td class=\"num\">\d+(\.\d)? [kM]B/s</td>", dom), "no live data rate"
    pixels = decode_png(shot.read_bytes())
    assert pixels.shape[:2] == (900, 1200)
    assert tuple(pixels[5, 5, :3]) == HEADER_RGB, "the header is not styled"
    rgb = pixels[:, :, :3].astype(np.uint32)
    packed = (rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2]).ravel()
    colours, counts = np.unique(packed, return_counts=True)
    assert len(colours) > 100, "a blank or flat screenshot"
    assert counts.max() < 0.8 * packed.size, "one colour covers most of the screenshot"
    ready = READY_RGB[0] << 16 | READY_RGB[1] << 8 | READY_RGB[2]
    assert (packed == ready).sum() > 200, "no green 'ready' pills"

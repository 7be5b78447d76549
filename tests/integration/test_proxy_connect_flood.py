"""A connect flood against ``twistd pybrid-proxy`` on loopback (issue 21, point 14).

A child process opens 2 000 connections at a time and closes them (``cycle``), or opens and
holds silent ones (``hold``).  Meanwhile the proxy's open descriptors (``/proc/PID/fd``) are
sampled, and a legitimate client connects, pings and runs — our client, and the reference
``pybrid ping`` when .ref is installed.  Asserted: the descriptors stay within what
``--max-pending`` and ``--accepts-per-pass`` allow (before, they grew with the flood up to the
open-file limit), the client's ping and run complete while the flood goes on, and a silent
flood's oldest connections are closed and counted (``pybrid_proxy_pending_closed_total``).
Figures are printed with ``-s``; ``benchmarks/floods.py --floods connect`` measures them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import sys
import urllib.request

import numpy as np
import pytest_twisted
from support.load_peers import raise_nofile, rss_kib, start_proxy
from support.reference import REF_BIN, spawn
from twisted.internet import task, threads

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice, expected_decoded

FLOODER = pathlib.Path(__file__).resolve().parents[1] / "support" / "connect_flood.py"
T = 60.0
MAX_PENDING = 256
ACCEPTS = 100
#: Descriptors a connect flood may add to the proxy's: the connections waiting for a first
#: frame, and those closed meanwhile that are still being flushed (a few passes' accepts).
ALLOWED = MAX_PENDING + 4 * ACCEPTS


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.asynccontextmanager
async def flooded_proxy(reactor, mode: str, *flood_args: str):
    """Device, proxy (with a status page) and a running flood; yields (proxy, flooder, peak)."""
    raise_nofile(8192)
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    device.listen(0, interface="127.0.0.1")
    proxy = await start_proxy(reactor, [f"127.0.0.1:{device.port}"], "--status-port", "0",
                              "--max-pending", str(MAX_PENDING),
                              "--accepts-per-pass", str(ACCEPTS))
    flooder = None
    sampler = None
    try:
        await proxy.wait_for_output(b"ready: carriers", 30)
        peak = {"before": fds(proxy.pid), "max": 0, "rss_before": rss_kib(proxy.pid)}

        def sample() -> None:
            with contextlib.suppress(OSError):
                peak["max"] = max(peak["max"], fds(proxy.pid))

        sampler = task.LoopingCall(sample)
        sampler.clock = reactor
        sampler.start(0.02)
        flooder = spawn(reactor, f"flood-{mode}", [sys.executable, str(FLOODER),
                                                   str(proxy.port), "--mode", mode, *flood_args])
        await flooder.wait_for_output(b"flooding", 30)
        yield proxy, flooder, peak
    finally:
        if sampler is not None and sampler.running:
            sampler.stop()
        if flooder is not None:
            await flooder.stop()
        await proxy.stop()
        await device.stop()


async def legitimate_client(reactor, port: int) -> None:
    """Our client's ping and run, during the flood (connects may wait for SYN retransmits)."""
    computer = await connect("127.0.0.1", port, reactor=reactor, connect_timeout=T,
                             request_timeout=T)
    try:
        assert await computer.ping().addTimeout(T, reactor) >= 0
        result = await computer.run(0.02, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        [mac] = result.carriers
        got = result[mac]
        np.testing.assert_array_equal(got.samples, expected_decoded(0, 2, 0, 200, mac=mac))
        assert got.complete and got.chunk_gaps == 0 and got.states[-1] == "DONE"
    finally:
        await computer.close()


async def reference_ping(reactor, port: int) -> None:
    if not (REF_BIN / "pybrid").exists():
        return
    ping = spawn(reactor, "ref-ping", [str(REF_BIN / "pybrid"), "ping", "127.0.0.1", "-t",
                                       str(T / 2), "-p", str(port), "-c", "2"])
    killer = reactor.callLater(T, ping.signal, "KILL")
    try:
        code = await ping.ended
    finally:
        if killer.active():
            killer.cancel()
    assert code == 0, ping.tail()
    assert ping.stdout.count(b"Reply from") == 2, ping.tail()


def flood_report(flooder) -> dict:
    lines = [line for line in flooder.stdout.splitlines() if line.startswith(b"{")]
    return json.loads(lines[-1]) if lines else {}


async def metric(proxy, name: str) -> int:
    url = re.search(rb"status page on (http://[^\s]+/)", proxy.stdout).group(1).decode()

    def get() -> str:
        with urllib.request.urlopen(url + "metrics", timeout=10) as response:
            return response.read().decode()

    text = await threads.deferToThread(get)
    return int(float(re.search(rf"^{name} (\S+)$", text, re.M).group(1)))


@pytest_twisted.ensureDeferred
async def test_a_connect_and_close_flood_stays_bounded_and_a_client_still_runs(reactor):
    # the flood lasts until the test stops it (bounded by time, not by a count that a loaded
    # machine may reach before the client is through)
    async with flooded_proxy(reactor, "cycle", "--batch", "2000", "--max", "1000000000",
                             "--seconds", "900") as (proxy, flooder, peak):
        await legitimate_client(reactor, proxy.port)
        await reference_ping(reactor, proxy.port)
        assert flooder.running, flooder.tail()  # the client was served during the flood
        assert proxy.running
        await flooder.stop()
        report = flood_report(flooder)
        rss = rss_kib(proxy.pid)
        print(f"\ncycle flood: {report}; proxy fds {peak['before']} before, peak {peak['max']}"
              f"; RSS {peak['rss_before']} KiB before, {rss} KiB after")
        assert report["opened"] >= 2000
        assert peak["max"] <= peak["before"] + ALLOWED


@pytest_twisted.ensureDeferred
async def test_a_silent_hold_flood_closes_the_oldest_and_a_client_still_runs(reactor):
    async with flooded_proxy(reactor, "hold", "--batch", "500", "--max", "3000",
                             "--seconds", "900") as (
            proxy, flooder, peak):
        await flooder.wait_for_output(b"full", T)
        await legitimate_client(reactor, proxy.port)
        await reference_ping(reactor, proxy.port)
        assert flooder.running, flooder.tail()
        closed = await metric(proxy, "pybrid_proxy_pending_closed_total")
        print(f"\nhold flood: 3000 held; proxy fds {peak['before']} before, peak {peak['max']};"
              f" {closed} pending connections closed")
        assert closed > 0
        assert peak["max"] <= peak["before"] + ALLOWED

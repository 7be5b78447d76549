"""Discovery on loopback: ``twistd pybrid-proxy --advertise`` and ``twistd pybrid-device
--advertise`` found by our browser (TXT included), withdrawn at stop, and our client and
commands without a host (one target: connected; two: listed, nothing chosen, exit 2)."""

from __future__ import annotations

import pathlib
import sys
import uuid

import pytest_twisted
from support.discovery import Watcher
from support.optional import require
from support.reference import spawn
from support.waiting import until

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.discovery.browse import INTERFACES_ENV, browse

require("zeroconf", "discovery")

BIN = pathlib.Path(sys.executable).parent
LOOPBACK = {INTERFACES_ENV: "127.0.0.1"}


def unique(kind: str) -> str:
    return f"test-{kind}-{uuid.uuid4().hex[:8]}"


def twistd_proxy(reactor, backend_port, name, *more):
    argv = [str(BIN / "twistd"), "-n", "--pidfile=", "pybrid-proxy", "-b",
            f"127.0.0.1:{backend_port}", "--listen", "127.0.0.1", "--port", "0",
            "--advertise", "--advertise-name", name, *more]
    return spawn(reactor, "twistd-proxy", argv,
                 ready_pattern=rb"pybrid-proxy listening on [^\s:]+:(\d+)")


def twistd_device(reactor, name):
    argv = [str(BIN / "twistd"), "-n", "--pidfile=", "pybrid-device", "--port", "0",
            "--carriers", "2", "--mac", "00-00-00-00-0A-01", "--advertise",
            "--advertise-name", name]
    return spawn(reactor, "twistd-device", argv,
                 ready_pattern=rb"simulated device listening on [^\s:]+:(\d+)")


async def advertised(reactor, proc):
    await proc.ready.addTimeout(30, reactor)
    await proc.wait_for_output(b"zeroconf: advertising", 30)


@pytest_twisted.ensureDeferred
async def test_proxy_found_with_its_txt_used_without_host_and_withdrawn(reactor, monkeypatch):
    monkeypatch.setenv(INTERFACES_ENV, "127.0.0.1")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    name = unique("proxy")
    watcher = Watcher(reactor)
    proc = twistd_proxy(reactor, device.port, name)
    try:
        await advertised(reactor, proc)
        await proc.wait_for_output(b"run data by udp", 15)
        await until(reactor, lambda: watcher.saw("Added", name), "the proxy announced", 15)
        # the TXT record is refreshed once the lane has learnt the carriers
        found = await until(reactor, lambda: _with_macs(reactor, name), "its carriers", 30)
        assert (found.kind, found.host, found.port, found.auth) == (
            "proxy", "127.0.0.1", proc.port, False)
        assert found.ours and found.version
        assert set(found.macs) == {p.strip("/") for p in device.carrier_paths}

        computer = await connect(reactor=reactor)  # no host: the only target
        try:
            assert computer.target == f"127.0.0.1:{proc.port}"
            assert computer.carriers and await computer.ping() >= 0
        finally:
            await computer.close()
    finally:
        code = await proc.stop()
        try:
            await until(reactor, lambda: watcher.saw("Removed", name), "the withdrawal", 15)
        finally:
            watcher.close()
            await device.stop()
    assert code in (0, -15), proc.tail()
    assert b"zeroconf: withdrawn" in proc.stdout, proc.tail()


async def _with_macs(reactor, name):
    targets = await browse(reactor, 2.0, ["127.0.0.1"])
    return next((t for t in targets if t.name == name and t.macs), None)


@pytest_twisted.ensureDeferred
async def test_two_candidates_listed_proxy_first_and_nothing_chosen(reactor):
    device_name, proxy_name = unique("device"), unique("proxy")
    device = twistd_device(reactor, device_name)
    proxy = None
    try:
        await advertised(reactor, device)
        proxy = twistd_proxy(reactor, device.port, proxy_name)
        await advertised(reactor, proxy)

        detect = await run(reactor, "pybrid-ping", "--detect")
        assert detect.exit_code == 0, detect.tail()
        listing = detect.stdout.decode()
        assert listing.index(proxy_name) < listing.index(device_name)
        assert f"127.0.0.1:{proxy.port}" in listing and f"127.0.0.1:{device.port}" in listing
        assert "00-00-00-00-0A-01, 00-00-00-00-0A-02" in listing

        ping = await run(reactor, "pybrid-ping", "-c", "1")  # stdin is no terminal: no prompt
        assert ping.exit_code == 2, ping.tail()
        err = ping.stderr.decode()
        assert "choose one by giving its address as the host" in err
        assert err.index(proxy_name) < err.index(device_name)
        assert "bypasses a proxy's session management" in err
    finally:
        if proxy is not None:
            await proxy.stop()
        await device.stop()


async def run(reactor, command, *args):
    proc = spawn(reactor, command, [str(BIN / command), *args], env=dict(LOOPBACK))
    await proc.ended.addTimeout(60, reactor)
    return proc



@pytest_twisted.ensureDeferred
async def test_a_command_without_host_uses_the_only_simulated_device(reactor):
    name = unique("device")
    device = twistd_device(reactor, name)
    try:
        await advertised(reactor, device)
        extract = await run(reactor, "pybrid-extract")
        assert extract.exit_code == 0, extract.tail()
        out = extract.stdout.decode()
        assert f"discovered 127.0.0.1:{device.port}  {name!r} (device;" in out
        assert "00-00-00-00-0A-01" in out and "00-00-00-00-0A-02" in out
    finally:
        await device.stop()

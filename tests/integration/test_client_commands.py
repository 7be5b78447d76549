"""Scenarios: ``pybrid-ping``, ``pybrid-extract`` and ``pybrid-reset`` as subprocesses against
our simulated device behind our proxy (in the test's reactor): output, effect and exit codes,
the token from ``$PYBRID_AUTHENTICATION``, Ctrl-C."""

from __future__ import annotations

import pathlib
import sys

import pytest_twisted
from support.reference import free_port, spawn

from pybrid.client import connect, load_apb
from pybrid.client.topology import find_carriers
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

BIN = pathlib.Path(sys.executable).parent
MACS = ["00-00-00-00-00-01", "00-00-00-00-00-02"]
T = 60.0


async def command(reactor, name, *args, env=None, ready=None, on_ready=None):
    proc = spawn(reactor, name, [str(BIN / name), *map(str, args)], env=env,
                 ready_pattern=ready)
    proc.ready.addErrback(lambda _f: None)
    try:
        if on_ready is not None:
            await proc.ready.addTimeout(T, reactor)
            on_ready(proc)
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    return proc.exit_code, proc.stdout.decode(), proc.stderr.decode()


async def stack(reactor, **proxy):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    dev.listen(0, interface="127.0.0.1")
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", dev.port),),
                                       interface="127.0.0.1", port=0, **proxy), reactor)
    service.startService()
    await service.when_healthy().addTimeout(30, reactor)
    return dev, service


@pytest_twisted.ensureDeferred
async def test_ping_counts_answers_through_our_proxy(reactor):
    dev, service = await stack(reactor)
    port = service.address[1]
    try:
        code, out, err = await command(reactor, "pybrid-ping", "127.0.0.1",
                                       "-p", port, "-c", 3, "-i", 0.05)
    finally:
        await service.stopService()
        await dev.stop()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"pybrid-ping 127.0.0.1:{port}: proxy, carrier(s) {', '.join(MACS)}"
    assert [line.split(" time=")[0] for line in lines[1:4]] == [
        f"pong from 127.0.0.1:{port}: seq={n}" for n in (1, 2, 3)]
    assert "3 sent, 3 answered, 0 lost" in lines[4]
    assert lines[5].startswith("round trip min/median/max = ")


@pytest_twisted.ensureDeferred
async def test_ping_token_from_pybrid_authentication(reactor):
    dev, service = await stack(reactor, auth_token="s3cret")
    port = service.address[1]
    try:
        ok = await command(reactor, "pybrid-ping", f"127.0.0.1:{port}", "-c", 1,
                           env={"PYBRID_AUTHENTICATION": "s3cret"})
        missing = await command(reactor, "pybrid-ping", f"127.0.0.1:{port}", "-c", 1,
                                env={"PYBRID_AUTHENTICATION": "", "PYBRID_AUTH_TOKEN": ""})
    finally:
        await service.stopService()
        await dev.stop()
    assert ok[0] == 0, ok[2]
    assert missing[0] == 1 and "Authentication required" in missing[2], missing


@pytest_twisted.ensureDeferred
async def test_ping_ctrl_c_exits_130_with_a_summary(reactor):
    dev = SimulatedDevice(reactor=reactor)
    dev.listen(0, interface="127.0.0.1")
    try:
        code, out, err = await command(
            reactor, "pybrid-ping", f"127.0.0.1:{dev.port}", "-c", 1000, "-i", 0.2,
            ready=rb"seq=1 ", on_ready=lambda p: p.signal("INT"))
    finally:
        await dev.stop()
    assert code == 130, err
    assert err.endswith("pybrid-ping: interrupted\n")
    assert " lost ---" in out


@pytest_twisted.ensureDeferred
async def test_ping_refused_exits_2(reactor):
    port = free_port()
    code, out, err = await command(reactor, "pybrid-ping", "127.0.0.1", "-p", port)
    assert (code, out) == (2, "")
    assert err == f"pybrid-ping: cannot connect to 127.0.0.1:{port}: connection refused\n"


@pytest_twisted.ensureDeferred
async def test_extract_displays_the_tree_and_saves_apb(reactor, tmp_path):
    dev, service = await stack(reactor)
    apb = tmp_path / "cluster.apb"
    try:
        code, out, err = await command(reactor, "pybrid-extract", "127.0.0.1",
                                       "-p", service.address[1], "-o", apb)
    finally:
        await service.stopService()
        await dev.stop()
    assert code == 0, err
    assert "carriers (2):" in out
    for i, mac in enumerate(MACS):
        assert f"  {mac}  stack 0 carrier {i}" in out
        assert f"/{mac}/0/M0  M_BLOCK" in out
    assert f"saved {apb}" in out
    assert [c.mac for c in find_carriers(load_apb(apb))] == MACS


@pytest_twisted.ensureDeferred
async def test_extract_refuses_a_non_apb_output_before_connecting(reactor, tmp_path):
    code, _out, err = await command(reactor, "pybrid-extract", "127.0.0.1", "-p", free_port(),
                                    "-o", tmp_path / "x.txt")
    assert code == 1 and "must end in .apb" in err
    assert not (tmp_path / "x.txt").exists()


@pytest_twisted.ensureDeferred
async def test_reset_through_our_proxy_clears_the_device(reactor):
    dev, service = await stack(reactor)
    port = service.address[1]
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor).addTimeout(T, reactor)
        module = pb.Module()
        item = module.items.add()
        item.entity.path = f"/{MACS[0]}/0/M0"
        item.adc_config.channels.add(idx=1, gain=1.0, offset=0.0, probe=3)
        await c.configure(module).addTimeout(T, reactor)
        await c.calibrate().addTimeout(T, reactor)
        await c.close()
        assert dev.adc_channels(0) and dev.calibrated
        code, out, err = await command(reactor, "pybrid-reset", "127.0.0.1",
                                       "-p", port, "--drop-calibration")
        kept, calibrated = dev.adc_channels(0), dev.calibrated
    finally:
        await service.stopService()
        await dev.stop()
    assert code == 0, err
    assert out == f"reset 127.0.0.1:{port} ({', '.join(MACS)}; calibration dropped)\n"
    assert kept == () and not calibrated


@pytest_twisted.ensureDeferred
async def test_run_ic_time_out_of_range_says_the_unit(reactor):
    code, out, err = await command(reactor, "pybrid-run", "127.0.0.1", "-p", free_port(),
                                   "--ic-time", "100000")
    assert (code, out) == (64, "")
    assert "--ic-time is in seconds and must be between 1e-07 and 10 s, not 100000 s" in err
    assert "100000 ns would be 0.0001 s" in err

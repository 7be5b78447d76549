"""``pybrid-run`` as a subprocess (the console script next to sys.executable) against our
simulated device and proxy running in the test's reactor: output files, messages and exit codes.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest_twisted
from support.optional import require
from support.reference import free_port, spawn
from twisted.internet import task

from pybrid.client import connect, save_apb
from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected_decoded
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

PYBRID_RUN = str(pathlib.Path(sys.executable).parent / "pybrid-run")
MAC = "00-00-00-00-00-01"
T = 60.0


async def run_cli(reactor, *args, on_start=None):
    proc = spawn(reactor, "pybrid-run", [PYBRID_RUN, *map(str, args)])
    proc.ready.addErrback(lambda _f: None)  # no readiness line: only the exit matters
    try:
        if on_start is not None:
            await on_start(proc)
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    return proc.exit_code, proc.stdout.decode(), proc.stderr.decode()


async def device(reactor, **config):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(**config))
    dev.listen(0, interface="127.0.0.1")
    return dev


@pytest_twisted.ensureDeferred
async def test_unreachable_host_is_one_line_and_exit_2(reactor):
    port = free_port()
    code, out, err = await run_cli(reactor, "127.0.0.1", "-p", port)
    assert code == 2
    assert out == ""
    assert err == f"pybrid-run: cannot connect to 127.0.0.1:{port}: connection refused\n"


@pytest_twisted.ensureDeferred
async def test_run_saves_npz_and_reports(reactor, tmp_path):
    dev = await device(reactor)
    port = dev.port
    try:
        out_file = tmp_path / "result.npz"
        code, out, err = await run_cli(
            reactor, f"127.0.0.1:{port}", "-t", "0.02", "-n", "3", "-r", "10000",
            "-o", out_file, "--progress")
    finally:
        await dev.stop()
    assert code == 0, err
    assert f"connected to 127.0.0.1:{port}: 1 carrier {MAC} (topology 'direct': one" in out
    assert "done in" in out and "data by UDP (sent straight to this client)" in out
    assert f"{MAC}: 200 samples x 3 channels in 2 chunks, 0 missing" in out
    assert f"saved {out_file}" in out
    assert "samples 200/200 100%" in err  # the progress line
    with np.load(out_file) as z:
        np.testing.assert_array_equal(z[f"{MAC}/samples"], expected_decoded(0, 3, 0, 200))
        np.testing.assert_array_equal(z[f"{MAC}/final"], expected_decoded(0, 3, 200, 1)[0])
        meta = json.loads(str(z["meta"]))
    assert meta["data_lane"] == "udp" and meta["expected_samples"] == 200
    assert [s[3] for s in meta["states"]][-1] == "DONE"


@pytest_twisted.ensureDeferred
async def test_configure_from_apb(reactor, tmp_path):
    module = pb.Module()
    item = module.items.add()
    item.entity.path = f"/{MAC}/0/M0"
    item.adc_config.channels.add(idx=4, gain=2.0, offset=0.0, probe=9)
    apb = tmp_path / "circuit.apb"
    save_apb(module, apb)
    dev = await device(reactor)
    try:
        code, out, err = await run_cli(reactor, "127.0.0.1", "-p", dev.port, "-c", apb,
                                       "--reset", "--calibrate", "-n", "1",
                                       "-o", tmp_path / "x.npz", "--no-progress")
        kept = dev.adc_channels(0)
        calibrated = dev.calibrated
    finally:
        await dev.stop()
    assert code == 0, err
    assert f"configured from {apb}" in out
    assert [(k.idx, k.gain, k.probe) for k in kept] == [(4, 2.0, 9)]
    assert calibrated
    with np.load(tmp_path / "x.npz") as z:
        assert list(z[f"{MAC}/probes"]) == [9]
        np.testing.assert_array_equal(z[f"{MAC}/samples"], 2.0 * expected_decoded(0, 1, 0, 100))


@pytest_twisted.ensureDeferred
async def test_unreadable_apb_exits_1_before_connecting(reactor, tmp_path):
    bad = tmp_path / "broken.apb"
    bad.write_bytes(b"\xff\xff\xff")
    code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", free_port(), "-c", bad)
    assert code == 1
    assert err.startswith("pybrid-run: ") and "broken.apb" in err and err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_run_error_exits_4(reactor, tmp_path):
    dev = await device(reactor, faults=Faults(error_after_chunks=1))
    try:
        code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", dev.port, "-t", "0.05",
                                       "-o", tmp_path / "x.npz")
    finally:
        await dev.stop()
    assert code == 4
    assert err.startswith("pybrid-run: run ") and f"failed on carrier {MAC}" in err
    assert not (tmp_path / "x.npz").exists()


@pytest_twisted.ensureDeferred
async def test_busy_timeout_exits_3(reactor, tmp_path):
    dev = await device(reactor)
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", dev.port),),
                                       interface="127.0.0.1", port=0), reactor)
    service.startService()
    holder = None
    try:
        await service.when_healthy().addTimeout(30, reactor)
        holder = await connect("127.0.0.1", service.address[1], reactor=reactor)
        await holder.run(0.01, channels=1)  # holds the proxy's session
        code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", service.address[1],
                                       "--busy-timeout", "0.3", "-o", tmp_path / "x.npz")
    finally:
        if holder is not None:
            await holder.close()
        await service.stopService()
        await dev.stop()
    assert code == 3
    assert "still busy after" in err and err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_interrupt_stops_the_run_and_exits_130(reactor, tmp_path):
    dev = await device(reactor)

    async def interrupt_once_running(proc):
        for _ in range(int(T / 0.02)):
            if dev.run is not None and dev.counters.chunks_sent > 0:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        proc.signal("INT")

    try:
        code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", dev.port, "-t", "10",
                                       "-r", "1000", "-o", tmp_path / "x.npz",
                                       on_start=interrupt_once_running)
        stopped = dev.counters.runs_stopped
    finally:
        await dev.stop()
    assert code == 130, err
    assert "interrupted" in err
    assert stopped == 1


@pytest_twisted.ensureDeferred
async def test_plot_needs_matplotlib_or_writes_a_png(reactor, tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", free_port(),
                                       "--plot", tmp_path / "x.png")
        assert code == 1 and "--plot needs matplotlib" in err
        return
    dev = await device(reactor)
    try:
        code, _out, err = await run_cli(reactor, "127.0.0.1", "-p", dev.port, "-n", "2",
                                       "-o", tmp_path / "x.npz", "--plot", tmp_path / "x.png")
    finally:
        await dev.stop()
    assert code == 0, err
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest_twisted.ensureDeferred
async def test_plot_window_plots_a_part_of_a_long_h5_run(reactor, tmp_path):
    require("matplotlib", "plot")
    require("h5py", "hdf5")
    dev = await device(reactor)
    try:
        code, out, err = await run_cli(reactor, "127.0.0.1", "-p", dev.port, "-n", "2",
                                       "-t", "0.5", "-r", "20000", "-o", tmp_path / "x.h5",
                                       "--plot", tmp_path / "x.png", "--plot-window", "0.1:0.2")
    finally:
        await dev.stop()
    assert code == 0, err
    assert f"plotted {tmp_path / 'x.png'}" in out
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest_twisted.ensureDeferred
async def test_bad_plot_window_exits_64(reactor, tmp_path):
    code, out, err = await run_cli(reactor, "127.0.0.1", "--plot", tmp_path / "x.png",
                                   "--plot-window", "0.5:0.2")
    assert (code, out) == (64, "")
    assert err.splitlines()[0] == ("pybrid-run: error: argument --plot-window: the window's end "
                                   "0.2 must be after its start 0.5")
    assert len(err.splitlines()) == 2


@pytest_twisted.ensureDeferred
async def test_bad_command_line_exits_64(reactor):
    code, _out, err = await run_cli(reactor, "127.0.0.1", "--op-time", "-1")
    assert code == 64 and "must be positive" in err

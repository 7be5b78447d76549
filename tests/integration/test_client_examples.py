"""The client examples in examples/ run (as subprocesses) against our simulated device."""

from __future__ import annotations

import pathlib
import sys

import pytest_twisted
from support.reference import ROOT, spawn

from pybrid.device import DeviceConfig, SimulatedDevice

T = 60.0


async def run_example(reactor, name, *args):
    proc = spawn(reactor, name, [sys.executable, str(ROOT / "examples" / name), *map(str, args)])
    proc.ready.addErrback(lambda _f: None)  # no readiness line: only the exit matters
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    return proc.exit_code, proc.stdout.decode(), proc.stderr.decode()


@pytest_twisted.ensureDeferred
async def test_run_and_plot(reactor, tmp_path):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    dev.listen(0, interface="127.0.0.1")
    try:
        code, out, err = await run_example(reactor, "run_and_plot.py", "127.0.0.1", dev.port,
                                           "--out", tmp_path / "run.png")
    finally:
        await dev.stop()
    assert code == 0, err
    assert "00-00-00-00-00-01: 1000 samples x 4 channels, 0 gaps" in out
    assert ("plotted" in out) == pathlib.Path(tmp_path / "run.png").exists()
    if "plotted" in out:  # the x label is inside the image: its bottom rows are background
        import matplotlib.image

        image = matplotlib.image.imread(str(tmp_path / "run.png"))
        assert (image[-3:, :, :3] > 0.95).all()
        assert (image[-40:-3, :, :3] < 0.5).any()  # ... and the label is drawn above them


@pytest_twisted.ensureDeferred
async def test_streaming_callback_with_an_early_stop(reactor):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    dev.listen(0, interface="127.0.0.1")
    try:
        code, out, err = await run_example(reactor, "streaming_callback.py", "127.0.0.1",
                                           dev.port, "--op-time", "5", "--stop-after", "0.4")
        stopped = dev.counters.runs_stopped
    finally:
        await dev.stop()
    assert code == 0, err
    assert "chunk     0 of 00-00-00-00-00-01" in out
    assert "stopped early after" in out
    assert stopped == 1

"""Honest sample timing and streaming recordings end to end: a simulated device dropping 20 %
of its chunks, the API, ``pybrid-run -o FILE.npz|FILE.h5 --plot`` as a child, and a recording
child killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest_twisted
from support.optional import require
from support.reference import spawn
from twisted.internet import task

from pybrid.client import connect
from pybrid.client.plot import figure
from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected_decoded
from pybrid.version import version

h5py = require("h5py", "hdf5")
require("matplotlib", "plot")

PYBRID_RUN = str(pathlib.Path(sys.executable).parent / "pybrid-run")
MAC = "00-00-00-00-00-01"
T = 60.0


def nan_rows_exactly_at(samples: np.ndarray, missing: list[int], channels: int) -> None:
    """Rows of missing chunks are NaN, every other row is the device's exact value."""
    assert samples.shape == (1000, channels)
    lost = np.zeros(1000, dtype=bool)
    for n in missing:
        lost[100 * n : 100 * n + 100] = True
    assert np.isnan(samples[lost]).all()
    want = expected_decoded(0, channels, 0, 1000)
    np.testing.assert_array_equal(samples[~lost], want[~lost])


async def run_cli(reactor, *args):
    proc = spawn(reactor, "pybrid-run", [PYBRID_RUN, *map(str, args)])
    proc.ready.addErrback(lambda _f: None)
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    return proc.exit_code, proc.stdout.decode(), proc.stderr.decode()


@pytest_twisted.ensureDeferred
async def test_dropped_chunks_keep_sample_times_in_api_npz_h5_and_plot(reactor, tmp_path):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(faults=Faults(drop=0.2, seed=3)))
    dev.listen(0, interface="127.0.0.1")
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor).addTimeout(T, reactor)
        before = reactor.seconds()
        try:
            result = await c.run(0.1, channels=4, sample_rate=10_000,
                                 settle=0.1).addTimeout(T, reactor)
        finally:
            await c.close()
        dropped = dev.counters.chunks_dropped
        npz, h5, png = tmp_path / "drop.npz", tmp_path / "drop.h5", tmp_path / "drop.png"
        png_h5 = tmp_path / "drop-h5.png"
        outcomes = [await run_cli(reactor, f"127.0.0.1:{dev.port}", "-t", "0.1", "-n", "4",
                                  "-o", out, "--plot", plot)
                    for out, plot in ((npz, png), (h5, png_h5))]
    finally:
        await dev.stop()
    # the API
    r = result[MAC]
    missing = list(r.missing_chunks)
    assert dropped > 0 and len(missing) == dropped  # the seed drops the same chunks every run
    nan_rows_exactly_at(r.samples, missing, 4)
    assert r.samples.dtype == np.float32 and not r.complete
    assert result.sample_rate == 10_000 and result.meta is not None
    assert before <= result.meta.start_time <= reactor.seconds()
    assert result.start_time_utc.endswith("Z") and result.meta.software_version == version()
    np.testing.assert_allclose(result.time()[[0, -1]], [0.0, 0.0999])
    for code, _out, err in outcomes:
        assert code == 0, err
        assert f"{len(missing)} missing chunk(s)" in err
    # the .npz
    with np.load(npz) as z:
        nan_rows_exactly_at(z[f"{MAC}/samples"], missing, 4)
        assert z[f"{MAC}/missing_chunks"].tolist() == missing
        assert int(z[f"{MAC}/start_index"]) == 0
        meta = json.loads(str(z["meta"]))
        series = {MAC: z[f"{MAC}/samples"]}
    assert (meta["sample_rate"], meta["channels"], meta["carriers"]) == (10_000, 4, [MAC])
    assert meta["software_version"] == version() and meta["start_time_utc"].endswith("Z")
    # the .h5
    with h5py.File(h5, "r") as f:
        nan_rows_exactly_at(f[f"{MAC}/samples"][()], missing, 4)
        assert f[f"{MAC}/missing_chunks"][()].tolist() == missing
        assert f.attrs["sample_rate"] == 10_000 and f.attrs["software_version"] == version()
        assert f.attrs["run_id"] and f[MAC].attrs["start_index"] == 0
    # the plot: the time axis spans 0.1 s and the lost chunks are breaks in the lines
    assert png.read_bytes()[:4] == b"\x89PNG" and png_h5.read_bytes()[:4] == b"\x89PNG"
    fig = figure(series, 10_000)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 0.1)
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert len(x) == 1000 and x[-1] == 0.0999
    lost = np.isnan(y).reshape(10, 100).all(axis=1)
    assert np.flatnonzero(lost).tolist() == missing


@pytest_twisted.ensureDeferred
async def test_sigkill_mid_recording_leaves_a_readable_h5(reactor, tmp_path):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    dev.listen(0, interface="127.0.0.1")
    out = tmp_path / "killed.h5"
    proc = spawn(reactor, "pybrid-run", [PYBRID_RUN, f"127.0.0.1:{dev.port}", "-t", "30",
                                         "-r", "20000", "-n", "4", "-o", str(out)])
    proc.ready.addErrback(lambda _f: None)
    try:
        for _ in range(int(T / 0.05)):  # until ~2 s of samples went out (4 flush intervals)
            if dev.counters.chunks_sent >= 2 * 2 * 200 or not proc.running:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert proc.running, proc.tail()
        proc.signal("KILL")
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
        await dev.stop()
    assert proc.exit_code == -9
    with h5py.File(out, "r") as f:
        assert f.attrs["sample_rate"] == 20_000 and f.attrs["expected_samples"] == 600_000
        for i, mac in enumerate(("00-00-00-00-00-01", "00-00-00-00-00-02")):
            got = f[f"{mac}/samples"][()]
            assert got.shape[0] >= 10_000, got.shape  # at least 0.5 s of the run is on disk
            assert got.shape[0] < 600_000
            ok = ~np.isnan(got).any(axis=1)
            assert ok.mean() > 0.9  # rows written and flushed (a chunk may be lost)
            want = expected_decoded(i, 4, 0, got.shape[0], mac=mac)
            np.testing.assert_array_equal(got[ok], want[ok])


@pytest_twisted.ensureDeferred
async def test_api_run_streams_into_an_h5_recorder_instead_of_ram(reactor, tmp_path):
    from pybrid.recording import H5Recorder

    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    dev.listen(0, interface="127.0.0.1")
    path = tmp_path / "api.h5"
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor).addTimeout(T, reactor)
        try:
            result = await c.run(0.05, channels=3, sample_rate=20_000,
                                 sink=H5Recorder(str(path), clock=reactor)).addTimeout(T, reactor)
        finally:
            await c.close()
    finally:
        await dev.stop()
    assert result.complete
    with h5py.File(path, "r") as f:
        assert f.attrs["run_id"] == result.run_id
        for i, (mac, carrier) in enumerate(result.carriers.items()):
            assert carrier.samples.shape == (0, 3)  # nothing held in RAM
            assert carrier.received_samples == 1000
            np.testing.assert_array_equal(f[f"{mac}/samples"][()],
                                          expected_decoded(i, 3, 0, 1000, mac=mac))
            np.testing.assert_array_equal(f[f"{mac}/final"][()], carrier.final)

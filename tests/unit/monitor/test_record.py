"""Monitor recordings: one file per run, pybrid-run's layout, chunks placed by number."""

from __future__ import annotations

import pathlib

import numpy as np
from support import monitor_sim as sim
from support.optional import require
from twisted.internet import task

from pybrid.monitor.decode import decode_datagram
from pybrid.monitor.record import Recorder, carrier_name
from pybrid.wire.monitor_header import encode_datagram

h5py = require("h5py", "hdf5")

PATHS = ("/00-00-00-00-00-0A", "/00-00-00-00-00-0B")


def feed(recorder: Recorder, run_id: str, chunks: list[int], carrier: int = 0) -> None:
    run = sim.simulated_run(run_id, PATHS[carrier], carrier, max(chunks) + 1)
    for n, envelope in enumerate(run):
        _header, event = decode_datagram(encode_datagram(envelope, carrier, n, 0))
        if hasattr(event, "chunk") and not event.end and event.chunk not in chunks:
            continue  # this chunk was lost on the way
        if hasattr(event, "chunk"):
            recorder.add(event)
        else:
            recorder.state(event)


def test_each_run_gets_its_own_h5_file_in_the_pybrid_run_layout(tmp_path: pathlib.Path) -> None:
    clock = task.Clock()
    recorder = Recorder(str(tmp_path / "mon.h5"), clock, sample_rate=10_000)
    feed(recorder, "run-1", [0, 1, 3], carrier=0)
    feed(recorder, "run-1", [0, 1, 2, 3], carrier=1)
    feed(recorder, "run-2", [1, 0])  # run-1 is over on all its carriers: its file is closed
    assert [p for p, _s in recorder.written] == [str(tmp_path / "mon.h5")]
    written = recorder.close()
    assert [p for p, _s in written] == [str(tmp_path / "mon.h5"), str(tmp_path / "mon-2.h5")]
    assert recorder.samples == 300 + 400 + 200
    with h5py.File(tmp_path / "mon.h5", "r") as f:
        assert f.attrs["run_id"] == "run-1" and f.attrs["sample_rate"] == 10_000
        assert sorted(f.attrs["carriers"]) == ["00-00-00-00-00-0A", "00-00-00-00-00-0B"]
        a = f["00-00-00-00-00-0A/samples"][()]
        assert a.shape == (400, 2) and a.dtype == np.float32
        assert np.isnan(a[200:300]).all()
        for n in (0, 1, 3):
            np.testing.assert_array_equal(a[100 * n : 100 * n + 100], sim.chunk_values(0, n))
        assert f["00-00-00-00-00-0A/missing_chunks"][()].tolist() == [2]
        assert f["00-00-00-00-00-0A/final"].shape == (2,)
        b = f["00-00-00-00-00-0B/samples"][()]
        np.testing.assert_array_equal(b, sim.expected_samples(1, 4))
    with h5py.File(tmp_path / "mon-2.h5", "r") as f:
        assert f.attrs["run_id"] == "run-2"
        np.testing.assert_array_equal(f["00-00-00-00-00-0A/samples"][()],
                                      sim.expected_samples(0, 2))


def test_carriers_without_a_path_are_named_by_index() -> None:
    assert carrier_name(3, "") == "carrier-3"
    assert carrier_name(0, "/00-00-00-00-00-01/0/M0") == "00-00-00-00-00-01"

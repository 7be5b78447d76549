"""The streaming HDF5 recorder on a Clock: layout, NaN gaps, bounded buffers, periodic flush."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from support.optional import require
from twisted.internet import task

from pybrid.recording.hdf5 import H5Recorder
from pybrid.recording.meta import CarrierSummary, RunMeta

h5py = require("h5py", "hdf5")

F32 = np.dtype(np.float32)


def meta() -> RunMeta:
    return RunMeta("run-x", 1_800_000_000.25, 10_000, 2, ("A", "B"), expected_samples=500,
                   extra={"op_time": 0.05})


def values(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float64)[:, None] * np.array([1.0, -1.0])


def test_layout_nan_gaps_and_attributes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "r.h5"
    rec = H5Recorder(str(path), clock=task.Clock())
    rec.begin(meta())
    rec.write("A", 0, values(0, 100), F32)
    rec.write("A", 300, values(300, 100), F32)  # not contiguous: the buffer goes out first
    rec.write("A", 100, values(100, 100), F32)  # late: lands in its place
    rec.final("A", np.array([0.5, -0.5]))
    rec.finish({
        "A": CarrierSummary((0, 1), 3, (2, 4), 0, 500, 100),
        "B": CarrierSummary((), 0, (0, 1, 2, 3, 4), 0, 500, 0),  # nothing arrived
    })
    with h5py.File(path, "r") as f:
        assert f.attrs["run_id"] == "run-x" and f.attrs["sample_rate"] == 10_000
        assert f.attrs["start_time_utc"] == "2027-01-15T08:00:00.250000Z"
        assert f.attrs["software_version"] and f.attrs["unit"] == "machine units"
        assert list(f.attrs["carriers"]) == ["A", "B"] and f.attrs["op_time"] == 0.05
        a = f["A/samples"]
        assert a.shape == (500, 2) and a.dtype == np.float32 and a.chunks is not None
        got = a[()]
        np.testing.assert_array_equal(got[:200], values(0, 200))
        np.testing.assert_array_equal(got[300:400], values(300, 100))
        assert np.isnan(got[200:300]).all() and np.isnan(got[400:]).all()
        assert f["A/missing_chunks"][()].tolist() == [2, 4]
        assert f["A/probes"][()].tolist() == [0, 1]
        np.testing.assert_array_equal(f["A/final"][()], [0.5, -0.5])
        assert f["A"].attrs["start_index"] == 0 and f["A"].attrs["chunk_size"] == 100
        assert f["B/samples"].shape == (500, 2) and np.isnan(f["B/samples"][()]).all()


def test_buffers_are_bounded_and_the_file_is_flushed_on_the_clock(tmp_path: pathlib.Path) -> None:
    clock = task.Clock()
    rec = H5Recorder(str(tmp_path / "r.h5"), clock=clock, flush_interval=0.5, buffer_rows=250)
    rec.begin(meta())
    for n in range(5):
        rec.write("A", 100 * n, values(100 * n, 100), F32)
        pending = rec._tracks["A"].pending_rows
        assert pending < 250  # never more than buffer_rows held
    assert rec.flushes == 0
    clock.advance(0.5)
    rec.write("A", 500, values(500, 100), F32)
    assert rec.flushes == 1 and rec._tracks["A"].pending_rows == 0
    assert rec._tracks["A"].dataset.shape[0] == 600
    rec.close()


def test_write_before_begin_is_an_error(tmp_path: pathlib.Path) -> None:
    rec = H5Recorder(str(tmp_path / "r.h5"))
    with pytest.raises(RuntimeError, match="before begin"):
        rec.write("A", 0, values(0, 1), F32)

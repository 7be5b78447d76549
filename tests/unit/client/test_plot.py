"""The run plot (Agg backend): time axis over the whole run, gaps as gaps, labels, legend."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from support.optional import require

from pybrid.client.plot import figure, save_plot

require("matplotlib", "plot")


def series_with_gap() -> dict[str, np.ndarray]:
    values = np.sin(np.arange(1000, dtype=np.float32) / 50)[:, None] * np.ones((1, 3), np.float32)
    values[0:100] = np.nan  # chunk 0 lost
    values[900:] = np.nan  # the last chunk lost
    return {"00-00-00-00-00-01": values, "00-00-00-00-00-02": values[:, :2] * 0.5}


def test_time_axis_spans_the_run_and_nan_rows_break_the_lines() -> None:
    import matplotlib.pyplot as plt

    fig = figure(series_with_gap(), 10_000)
    try:
        top, bottom = fig.axes[0], fig.axes[1]
        assert len(top.lines) == 3 and len(bottom.lines) == 2
        x, y = top.lines[0].get_xdata(), top.lines[0].get_ydata()
        np.testing.assert_allclose(x, np.arange(1000) / 10_000)  # sample i at i / rate
        assert np.isnan(y[:100]).all() and np.isnan(y[900:]).all()  # drawn as gaps
        assert bottom.get_xlim() == (0.0, 0.1)  # the whole 0.1 s, lost end included
        assert bottom.get_xlabel() == "time since OP began [s]"
        assert top.get_ylabel() == "value [machine units]"
        assert top.get_title() == "carrier 00-00-00-00-00-01"
        fig.canvas.draw()
        legend = top.get_legend()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        box, axes_box = legend.get_window_extent(renderer), top.get_window_extent(renderer)
        assert box.x0 >= axes_box.x1  # the legend sits beside the data, not over it
        assert [t.get_text() for t in legend.get_texts()] == ["ch 0", "ch 1", "ch 2"]
    finally:
        plt.close(fig)


def test_save_plot_writes_a_png(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.png"
    save_plot(series_with_gap(), 10_000, str(path), title="run r")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


RATE = 20_000


def long_run() -> np.ndarray:
    """10 s at 20 kHz: a 1 kHz carrier whose amplitude swells and fades once (0.1 .. 1.0)."""
    t = np.arange(10 * RATE) / RATE
    amplitude = 0.55 - 0.45 * np.cos(2 * np.pi * t / 10)
    return (amplitude * np.sin(2 * np.pi * 1000 * t))[:, None].astype(np.float32)


def test_a_long_run_is_drawn_as_its_envelope_per_pixel_column() -> None:
    import matplotlib.pyplot as plt

    from pybrid.client.plot import COLUMNS

    values = long_run()
    values[150_000, 0] = 1.5  # one sample: must not vanish between drawn points
    values[100_000:120_000] = np.nan  # one second of lost chunks
    fig = figure({"A": values}, RATE, "run")
    try:
        ax = fig.axes[0]
        x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
        assert len(x) <= 2 * COLUMNS  # a point pair per column, not 200 000 points
        assert ax.get_xlim() == (0.0, 10.0)
        assert "min/max of 182 samples per column" in fig._suptitle.get_text()
        lo, hi, middle = y[0::2], y[1::2], x[0::2]
        assert np.nanmax(hi) == pytest.approx(1.5)  # the spike
        spike = int(np.nanargmax(hi))
        assert middle[spike] == pytest.approx(7.5, abs=0.01)
        gap = (middle > 5.01) & (middle < 5.99)
        assert np.isnan(hi[gap]).all() and np.isnan(lo[gap]).all()
        assert not np.isnan(hi[~gap & ((middle < 4.99) | (middle > 6.01))]).any()
        # the envelope has the shape of the amplitude: max ≈ +a(t), min ≈ -a(t)
        keep = ~np.isnan(hi)
        keep[spike] = False
        want = 0.55 - 0.45 * np.cos(2 * np.pi * middle[keep] / 10)
        np.testing.assert_allclose(hi[keep], want, atol=0.02)
        np.testing.assert_allclose(lo[keep], -want, atol=0.02)
    finally:
        plt.close(fig)


def test_the_saved_image_of_a_long_run_shows_its_shape(tmp_path: pathlib.Path) -> None:
    """In the PNG, the height of the drawn band in each pixel column follows the amplitude
    (every 10th sample of a 1 kHz carrier at 20 kHz would be a flat line at 0)."""
    import matplotlib.image

    path = tmp_path / "long.png"
    save_plot({"A": long_run()}, RATE, str(path))
    image = matplotlib.image.imread(str(path))[:, :, :3]
    blue = np.abs(image - np.array([0x1F, 0x77, 0xB4]) / 255).sum(axis=2) < 0.25  # ch 0
    columns = np.flatnonzero(blue.any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    data = max(runs, key=len)  # the plot area (the legend's line is a short run apart)
    assert len(data) > 600
    height = np.array([np.ptp(np.flatnonzero(blue[:, c])) for c in data])
    t = (data - data[0]) / (data[-1] - data[0]) * 10
    amplitude = 0.55 - 0.45 * np.cos(2 * np.pi * t / 10)
    assert height.max() > 100  # a band as tall as the signal, not a line
    assert np.corrcoef(height, amplitude)[0, 1] > 0.98
    assert height[np.argmin(np.abs(t - 5))] > 5 * height[np.argmin(np.abs(t - 0.2))]


def test_a_window_plots_those_seconds_sample_by_sample() -> None:
    import matplotlib.pyplot as plt

    fig = figure({"A": long_run()}, RATE, "run", window=(2.0, 2.01))
    try:
        ax = fig.axes[0]
        x = ax.lines[0].get_xdata()
        assert ax.get_xlim() == pytest.approx((2.0, 2.01005))
        np.testing.assert_allclose(x, np.arange(40_000, 40_201) / RATE)
        assert "min/max" not in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_plot_h5_reads_the_envelope_block_by_block(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    h5py = require("h5py", "hdf5")
    import matplotlib.pyplot as plt

    from pybrid.client import plot

    values = long_run()
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f.attrs["sample_rate"] = RATE
        f.create_group("A").create_dataset("samples", data=values)
    made = []
    real = plot.envelope_figure
    monkeypatch.setattr(plot, "envelope_figure",
                        lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    plot.plot_h5(str(path), str(tmp_path / "r.png"), window=(1.0, None))
    fig = made[0]
    try:
        y, want = fig.axes[0].lines[0].get_ydata(), plot.figure({"A": values}, RATE,
                                                                 window=(1.0, None))
        np.testing.assert_array_equal(y, want.axes[0].lines[0].get_ydata())
        assert fig.axes[0].get_xlim() == (1.0, 10.0)
        plt.close(want)
    finally:
        plt.close(fig)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"

"""The run plot (Agg backend): time axis over the whole run, gaps as gaps, labels, legend."""

from __future__ import annotations

import pathlib

import numpy as np
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


def test_long_runs_are_drawn_from_every_kth_sample_over_the_whole_time(
    tmp_path: pathlib.Path,
) -> None:
    import matplotlib.pyplot as plt

    from pybrid.client.plot import step_for

    rows = 100_000
    values = np.zeros((rows, 1), np.float32)
    values[50_000:50_500] = np.nan  # five lost chunks: wider than the step, still a gap
    step = step_for(rows, 10_000)
    assert step == 10
    fig = figure({"A": values[::step]}, 100_000, "run", step, rows)
    try:
        ax = fig.axes[0]
        x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
        assert len(x) == 10_000 and x[1] == 10 / 100_000
        assert ax.get_xlim() == (0.0, 1.0)
        assert np.isnan(y[5_000:5_050]).all() and not np.isnan(y[:5_000]).any()
        assert "every 10th sample" in fig._suptitle.get_text()
    finally:
        plt.close(fig)

"""Plots of a run's samples (``pybrid-run --plot``): one panel per carrier, time on x.

Time is ``row / sample_rate`` seconds after OP began, so lost chunks (NaN rows) appear as gaps
in the lines and the axis always spans the whole run.  Values are in machine units (1.0 = full
scale).  The legend sits to the right of the axes, never over the data.  Runs longer than
:data:`MAX_POINTS` samples are drawn from every k-th sample (said in the title).  Needs
matplotlib (the ``plot`` extra); uses the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pybrid.recording.meta import UNIT, time_axis

#: Longer runs are plotted from every k-th sample, at most this many points per line.
MAX_POINTS = 20_000


def step_for(rows: int, max_points: int = MAX_POINTS) -> int:
    """The sample step that keeps a run of ``rows`` within ``max_points`` points per line."""
    return max(1, -(-rows // max_points))


def figure(series: Mapping[str, np.ndarray], sample_rate: int, title: str = "",
           step: int = 1, rows: int | None = None) -> Any:
    """A matplotlib Figure with one panel per carrier of ``series`` (MAC → rows × channels).

    ``series`` may hold every ``step``-th sample of a run of ``rows`` samples (row *i* is then
    sample ``i × step``); by default every sample, and ``rows`` is the longest series.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.2 * n), squeeze=False, sharex=True)
    longest = 0
    for ax, (mac, values) in zip(axes[:, 0], series.items(), strict=False):
        t = time_axis(values.shape[0], sample_rate) * step
        longest = max(longest, values.shape[0] * step)
        for k in range(values.shape[1]):
            ax.plot(t, values[:, k], label=f"ch {k}", linewidth=0.9)
        ax.set_title(f"carrier {mac}", fontsize="medium")
        ax.set_ylabel(f"value [{UNIT}]")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        if values.shape[1]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                      fontsize="small", frameon=False)
    rows = longest if rows is None else rows
    end = rows / sample_rate if sample_rate > 0 else float(rows)
    axes[-1, 0].set_xlim(0.0, end if end > 0 else 1.0)
    axes[-1, 0].set_xlabel("time since OP began [s]" if sample_rate > 0 else "sample")
    if step > 1:
        title = f"{title} (every {step}th sample)".strip()
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def save_plot(series: Mapping[str, np.ndarray], sample_rate: int, path: str,
              title: str = "", max_points: int = MAX_POINTS) -> None:
    """Write :func:`figure` as an image to ``path`` (the format from its extension), thinned
    to every k-th sample for long runs."""
    import matplotlib.pyplot as plt

    rows = max((v.shape[0] for v in series.values()), default=0)
    step = step_for(rows, max_points)
    fig = figure({mac: v[::step] for mac, v in series.items()}, sample_rate, title, step, rows)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_h5(path: str, out: str, title: str = "", max_points: int = MAX_POINTS) -> None:
    """Plot a recording written by :mod:`pybrid.recording.hdf5` reading only the samples
    shown (every k-th row), so a long recording is never loaded whole."""
    import h5py
    import matplotlib.pyplot as plt

    with h5py.File(path, "r") as f:
        rate = int(f.attrs.get("sample_rate", 0))
        groups = {name: g["samples"] for name, g in f.items()
                  if isinstance(g, h5py.Group) and "samples" in g}
        rows = max((d.shape[0] for d in groups.values()), default=0)
        step = step_for(rows, max_points)
        series = {name: d[::step] for name, d in groups.items()}
    fig = figure(series, rate, title, step, rows)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)

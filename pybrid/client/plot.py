"""Plots of a run's samples (``pybrid-run --plot``): one panel per carrier, time on x.

Time is ``row / sample_rate`` seconds after OP began, so lost chunks (NaN rows) appear as gaps
in the lines and the axis always spans the whole run.  Values are in machine units (1.0 = full
scale).  The legend sits to the right of the axes, never over the data.  Needs matplotlib (the
``plot`` extra); uses the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pybrid.recording.meta import UNIT, time_axis


def figure(series: Mapping[str, np.ndarray], sample_rate: int, title: str = "") -> Any:
    """A matplotlib Figure with one panel per carrier of ``series`` (MAC → rows × channels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.2 * n), squeeze=False, sharex=True)
    rows = 0
    for ax, (mac, values) in zip(axes[:, 0], series.items(), strict=False):
        t = time_axis(values.shape[0], sample_rate)
        rows = max(rows, values.shape[0])
        for k in range(values.shape[1]):
            ax.plot(t, values[:, k], label=f"ch {k}", linewidth=0.9)
        ax.set_title(f"carrier {mac}", fontsize="medium")
        ax.set_ylabel(f"value [{UNIT}]")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        if values.shape[1]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                      fontsize="small", frameon=False)
    end = rows / sample_rate if sample_rate > 0 else float(rows)
    axes[-1, 0].set_xlim(0.0, end if end > 0 else 1.0)
    axes[-1, 0].set_xlabel("time since OP began [s]" if sample_rate > 0 else "sample")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def save_plot(series: Mapping[str, np.ndarray], sample_rate: int, path: str,
              title: str = "") -> None:
    """Write :func:`figure` as an image to ``path`` (the format from its extension)."""
    import matplotlib.pyplot as plt

    fig = figure(series, sample_rate, title)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def read_h5_series(path: str) -> tuple[dict[str, np.ndarray], int]:
    """``(MAC → samples, sample_rate)`` of a recording written by :mod:`pybrid.recording.hdf5`."""
    import h5py

    with h5py.File(path, "r") as f:
        rate = int(f.attrs.get("sample_rate", 0))
        series = {name: g["samples"][()] for name, g in f.items()
                  if isinstance(g, h5py.Group) and "samples" in g}
    return series, rate

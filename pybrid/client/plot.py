"""Plots of a run's samples (``pybrid-run --plot``): one panel per carrier, time on x.

Drawn like an oscilloscope: a long run is the min/max envelope of the rows under each pixel
column of the image (:mod:`pybrid.recording.envelope`), so its shape shows and no spike is
hidden; a run with fewer rows than pixel columns is drawn sample by sample.  Time is
``row / sample_rate`` seconds after OP began, so lost chunks (NaN rows) are gaps in the lines
and the axis spans the whole run, or the ``window`` (START, END seconds) asked for.  Values are
in machine units (1.0 = full scale).  The legend sits to the right of the axes, never over the
data.  Needs matplotlib (the ``plot`` extra); uses the non-interactive Agg backend unless
pyplot was imported before (a notebook's inline backend stays).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from pybrid.recording.envelope import (
    Envelope,
    envelope,
    envelope_blocks,
    polyline,
    rows_per_column,
    window_rows,
)
from pybrid.recording.meta import UNIT

#: Width of the figure [in] and resolution of the saved image [dpi].
WIDTH, DPI = 10.0, 110
#: Envelope columns: one per pixel of the image's width, so none is wider than a pixel.
COLUMNS = int(WIDTH * DPI)

Window = tuple[float, float | None]


def envelopes(series: Mapping[str, np.ndarray], sample_rate: int,
              window: Window | None = None,
              columns: int = COLUMNS) -> tuple[dict[str, Envelope], int, int]:
    """The envelope of each carrier's rows in ``window``, and the window's rows (first, stop)
    over the longest series."""
    rows = max((v.shape[0] for v in series.values()), default=0)
    first, stop = window_rows(window, rows, sample_rate)
    per = rows_per_column(stop - first, columns)
    return ({mac: envelope(v[first:stop], columns, first, per) for mac, v in series.items()},
            first, stop)


def figure(series: Mapping[str, np.ndarray], sample_rate: int, title: str = "",
           window: Window | None = None) -> Any:
    """A matplotlib Figure with one panel per carrier of ``series`` (MAC → rows × channels)."""
    envs, first, stop = envelopes(series, sample_rate, window)
    return envelope_figure(envs, sample_rate, first, stop, title)


def envelope_figure(envs: Mapping[str, Envelope], sample_rate: int, first: int, stop: int,
                    title: str = "") -> Any:
    """The figure of envelopes of rows ``first … stop-1`` (the x range)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # a caller with pyplot (a notebook) chose one
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(envs))
    fig, axes = plt.subplots(n, 1, figsize=(WIDTH, 3.2 * n), squeeze=False, sharex=True)
    per = 1
    for ax, (mac, env) in zip(axes[:, 0], envs.items(), strict=False):
        x, y = polyline(env, sample_rate)
        per = max(per, env.per)
        for k in range(y.shape[1]):
            ax.plot(x, y[:, k], label=f"ch {k}", linewidth=0.9)
        ax.set_title(f"carrier {mac}", fontsize="medium")
        ax.set_ylabel(f"value [{UNIT}]")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        if y.shape[1]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                      fontsize="small", frameon=False)
    scale = 1.0 / sample_rate if sample_rate > 0 else 1.0
    low, high = first * scale, stop * scale
    axes[-1, 0].set_xlim(low, high if high > low else low + 1.0)
    axes[-1, 0].set_xlabel("time since OP began [s]" if sample_rate > 0 else "sample")
    if per > 1:
        title = f"{title} (min/max of {per} samples per column)".strip()
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def _save(fig: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def save_plot(series: Mapping[str, np.ndarray], sample_rate: int, path: str,
              title: str = "", window: Window | None = None) -> None:
    """Write :func:`figure` as an image to ``path`` (the format from its extension)."""
    _save(figure(series, sample_rate, title, window), path)


def _rows(dataset: Any, a: int, b: int) -> np.ndarray:
    return np.asarray(dataset[a:b])


def plot_h5(path: str, out: str, title: str = "", window: Window | None = None) -> None:
    """Plot a recording written by :mod:`pybrid.recording.hdf5`, reading it block by block
    into the envelope, so a long recording is never loaded whole."""
    import h5py

    with h5py.File(path, "r") as f:
        rate = int(f.attrs.get("sample_rate", 0))
        groups = {name: g["samples"] for name, g in f.items()
                  if isinstance(g, h5py.Group) and "samples" in g}
        rows = max((d.shape[0] for d in groups.values()), default=0)
        first, stop = window_rows(window, rows, rate)
        envs = {name: envelope_blocks(partial(_rows, d), first, min(stop, d.shape[0]),
                                      COLUMNS)
                for name, d in groups.items()}
    _save(envelope_figure(envs, rate, first, stop, title), out)

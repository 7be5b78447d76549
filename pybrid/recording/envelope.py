"""Min/max envelopes of sample rows, as an oscilloscope draws a long record (numpy only).

A run of ``rows`` samples shown on ``columns`` pixel columns is cut into runs of
``per = ceil(rows / columns)`` consecutive rows; each such column keeps the smallest and the
largest value of every channel, so the shape of a long run shows and no single-sample spike is
lost.  NaN rows (lost chunks) are ignored within a column; a column of NaN rows only stays NaN
— a gap.  No matplotlib here: ``pybrid-run --plot``, the notebook and a browser view served by
the proxy draw the same envelope (:func:`polyline` is the one line that draws it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Envelope(NamedTuple):
    """Columns of rows ``start[i] … stop[i]-1``: their per-channel ``lo`` and ``hi``."""

    start: np.ndarray  # first row of each column (int64; rows of the whole run)
    stop: np.ndarray  # row after its last
    lo: np.ndarray  # columns × channels, float64 (float32 for float32 rows); NaN: all gap
    hi: np.ndarray
    per: int  # rows per column (the last column may have fewer)


def rows_per_column(rows: int, columns: int) -> int:
    """The rows each column covers so ``rows`` fit in at most ``columns`` columns."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1, not {columns}")
    return max(1, -(-rows // columns))


def envelope(values: np.ndarray, columns: int, first_row: int = 0,
             per: int | None = None) -> Envelope:
    """The envelope of ``values`` (rows × channels, or rows) in at most ``columns`` columns.

    ``first_row`` is the run's row number of ``values[0]`` (for a window); ``per`` forces the
    rows per column (blocks of one long record, :func:`envelope_blocks`).
    """
    data = np.asarray(values)
    if data.dtype != np.float32:  # float32 (the live view's rings) stays: no copy to widen
        data = data.astype(np.float64, copy=False)
    if data.ndim == 1:
        data = data[:, None]
    rows, channels = data.shape
    per = rows_per_column(rows, columns) if per is None else per
    count = -(-rows // per)
    padded = count * per
    if padded != rows:  # the last column is short: pad it with gap rows
        data = np.concatenate([data, np.full((padded - rows, channels), np.nan, data.dtype)])
    blocks = data.reshape(count, per, channels)
    start = first_row + np.arange(count, dtype=np.int64) * per
    stop = np.minimum(start + per, first_row + rows)
    # fmin/fmax skip NaN and give NaN only for an all-NaN column (no warning, unlike nanmin)
    return Envelope(start, stop, halve(np.fmin, blocks), halve(np.fmax, blocks), per)


def halve(op: np.ufunc, block: np.ndarray) -> np.ndarray:
    """``op`` over axis 1 of ``block`` by halving it (an odd last row folded into the first):
    a few long elementwise passes, several times faster than ``op.reduce(axis=1)``."""
    while block.shape[1] > 1:
        n = block.shape[1]
        half = n // 2
        out = op(block[:, :half], block[:, half : 2 * half])
        if n % 2:
            op(out[:, :1], block[:, 2 * half :], out=out[:, :1])
        block = out
    return block[:, 0]


def groups(op: np.ufunc, data: np.ndarray, group: int) -> np.ndarray:
    """``op`` over each ``group`` consecutive rows of ``data`` (the last group padded with
    NaN), by :func:`halve`."""
    count = -(-len(data) // group)
    if count * group != len(data):
        pad = np.full((count * group - len(data), *data.shape[1:]), np.nan, data.dtype)
        data = np.concatenate([data, pad])
    return halve(op, data.reshape((count, group, *data.shape[1:])))


def envelope_blocks(read: Callable[[int, int], np.ndarray], start: int, stop: int,
                    columns: int, block_columns: int = 1024) -> Envelope:
    """The envelope of rows ``start … stop-1`` of a record read piecewise by ``read(a, b)``
    (e.g. an HDF5 dataset's slice), ``block_columns`` columns at a time: bounded memory."""
    rows = max(0, stop - start)
    per = rows_per_column(rows, columns)
    step = per * block_columns
    parts = [envelope(read(a, min(a + step, stop)), columns, a, per)
             for a in range(start, stop, step)]
    if not parts:
        return envelope(np.empty((0, 0)), columns, start, per)
    return Envelope(np.concatenate([p.start for p in parts]),
                    np.concatenate([p.stop for p in parts]),
                    np.concatenate([p.lo for p in parts]),
                    np.concatenate([p.hi for p in parts]), per)


def polyline(env: Envelope, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """x (seconds after OP began, or rows without a rate) and y (points × channels) of a line
    that draws the envelope: each column's min then max at its middle, so the column is a
    vertical stroke; with one row per column, the samples themselves."""
    scale = 1.0 / sample_rate if sample_rate > 0 else 1.0
    if env.per == 1:
        return env.start * scale, env.lo
    middle = (env.start + env.stop - 1) * (0.5 * scale)
    x = np.repeat(middle, 2)
    y = np.empty((2 * env.lo.shape[0], env.lo.shape[1]))
    y[0::2], y[1::2] = env.lo, env.hi
    return x, y


def parse_window(text: str) -> tuple[float, float | None]:
    """``"START:END"`` in seconds after OP began → (start, end); either may be left out
    (``"2:"`` from 2 s to the end, ``":0.5"`` the first half second)."""
    head, sep, tail = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not START:END (seconds, e.g. 0.5:1.5)")
    try:
        start = float(head) if head.strip() else 0.0
        end = float(tail) if tail.strip() else None
    except ValueError:
        raise ValueError(f"{text!r} is not START:END with numbers of seconds") from None
    if not np.isfinite(start) or start < 0:
        raise ValueError(f"the window's start {head.strip()} must be 0 or more seconds")
    if end is not None and not (np.isfinite(end) and end > start):
        raise ValueError(f"the window's end {tail.strip()} must be after its start {start:g}")
    return start, end


def window_rows(window: tuple[float, float | None] | None, rows: int,
                sample_rate: int) -> tuple[int, int]:
    """Rows ``(first, stop)`` of a run of ``rows`` that lie in ``window`` (seconds; rows
    ``t * rate`` … up to and including ``end * rate``), clipped to the run."""
    if window is None:
        return 0, rows
    if sample_rate <= 0:
        raise ValueError("a time window needs the sample rate")
    start, end = window
    first = min(rows, int(np.ceil(start * sample_rate - 1e-9)))
    stop = rows if end is None else min(rows, int(np.floor(end * sample_rate + 1e-9)) + 1)
    return first, max(first, stop)

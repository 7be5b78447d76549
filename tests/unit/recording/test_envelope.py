"""Min/max envelopes: spikes survive, gaps stay gaps, odd lengths, blocks, windows in seconds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pybrid.recording.envelope import (
    envelope,
    envelope_blocks,
    groups,
    parse_window,
    polyline,
    rows_per_column,
    window_rows,
)


def test_a_single_sample_spike_survives_into_its_columns_max() -> None:
    values = np.zeros((100_000, 2), np.float32)
    values[12_345, 1] = 5.0
    values[99_999, 0] = -3.0  # the very last sample
    env = envelope(values, 1000)
    assert env.per == 100 and env.lo.shape == env.hi.shape == (1000, 2)
    assert np.flatnonzero(env.hi[:, 1]).tolist() == [123] and env.hi[123, 1] == 5.0
    assert np.flatnonzero(env.lo[:, 0]).tolist() == [999] and env.lo[999, 0] == -3.0
    assert (env.start[123], env.stop[123]) == (12_300, 12_400)


def test_a_length_not_divisible_by_the_columns() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(1003, 3))
    env = envelope(values, 10)
    assert env.per == 101 and len(env.lo) == 10
    assert (env.start[-1], env.stop[-1]) == (909, 1003)  # the short last column
    np.testing.assert_array_equal(env.hi[-1], values[909:].max(axis=0))
    np.testing.assert_array_equal(env.lo[3], values[303:404].min(axis=0))


def test_nan_rows_are_skipped_and_an_all_nan_column_is_a_gap() -> None:
    values = np.arange(1000, dtype=np.float64)[:, None]
    values[200:300] = np.nan  # lost chunks: columns 20..29
    values[305:309] = np.nan  # part of column 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "All-NaN slice" warning either
        env = envelope(values, 100)
    gaps = np.flatnonzero(np.isnan(env.hi[:, 0])).tolist()
    assert gaps == list(range(20, 30))
    assert np.isnan(env.lo[20:30]).all()
    assert (env.lo[30, 0], env.hi[30, 0]) == (300.0, 309.0)


def test_fewer_rows_than_columns_keeps_every_sample() -> None:
    values = np.array([[1.0], [np.nan], [3.0]])
    env = envelope(values, 1100)
    assert env.per == 1
    x, y = polyline(env, 10)
    np.testing.assert_array_equal(x, [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(y, values)


def test_polyline_draws_each_column_as_its_min_then_its_max() -> None:
    values = np.array([0.0, 4.0, -1.0, 2.0, 5.0, 5.0])
    env = envelope(values, 3, first_row=10)
    x, y = polyline(env, 100)
    np.testing.assert_allclose(x, [0.105, 0.105, 0.125, 0.125, 0.145, 0.145])
    np.testing.assert_array_equal(y[:, 0], [0.0, 4.0, -1.0, 2.0, 5.0, 5.0])


@pytest.mark.parametrize("rows", [0, 1, 999, 10_000, 123_457])
def test_blocks_give_the_envelope_of_the_whole(rows: int) -> None:
    values = np.sin(np.arange(rows) / 77.0)[:, None] * [1.0, -2.0]
    values[rows // 3: rows // 3 + 500] = np.nan
    whole = envelope(values[100:], 700, first_row=100)
    parts = envelope_blocks(lambda a, b: values[a:b], 100, rows, 700, block_columns=16)
    if rows <= 100:
        assert len(parts.lo) == 0
        return
    assert parts.per == whole.per
    for got, want in zip(parts, whole, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rows_per_column() -> None:
    assert (rows_per_column(0, 5), rows_per_column(5, 5), rows_per_column(6, 5)) == (1, 1, 2)
    with pytest.raises(ValueError, match="at least 1"):
        rows_per_column(10, 0)


def test_window_selection_in_seconds() -> None:
    assert window_rows(None, 1000, 1000) == (0, 1000)
    assert window_rows((0.5, 0.75), 1000, 1000) == (500, 751)  # both ends included
    assert window_rows((0.25, None), 1000, 1000) == (250, 1000)
    assert window_rows((0.9, 5.0), 1000, 1000) == (900, 1000)  # clipped to the run
    assert window_rows((2.0, 3.0), 1000, 1000) == (1000, 1000)  # after the run: empty
    assert window_rows((0.1, 0.2), 200_000, 20_000) == (2000, 4001)
    with pytest.raises(ValueError, match="sample rate"):
        window_rows((0.0, 1.0), 10, 0)


def test_parse_window() -> None:
    assert parse_window("0.5:1.5") == (0.5, 1.5)
    assert parse_window(":0.5") == (0.0, 0.5)
    assert parse_window("2:") == (2.0, None)
    assert parse_window(" 1 : 2 ") == (1.0, 2.0)


@pytest.mark.parametrize(("text", "message"), [
    ("1.5", "not START:END"),
    ("a:b", "numbers of seconds"),
    ("-1:2", "start -1 must be 0 or more"),
    ("2:1", "end 1 must be after its start 2"),
    ("1:1", "must be after"),
    ("nan:1", "must be 0 or more"),
    ("0:inf", "must be after"),
])
def test_parse_window_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(text)


def test_groups_by_halving_equal_numpys_reduce_for_every_group_size_nan_included():
    rng = np.random.default_rng(11)
    data = rng.standard_normal((1000, 3))
    data[rng.random(data.shape) < 0.2] = np.nan
    data[100:160] = np.nan  # whole groups of gap
    for dtype in (np.float32, np.float64):
        rows = data.astype(dtype)
        for group in (*range(1, 40), 64, 100, 129, 1000, 1001):
            count = -(-len(rows) // group)
            padded = np.full((count * group, 3), np.nan, dtype)
            padded[: len(rows)] = rows
            want = padded.reshape(count, group, 3)
            lo = groups(np.fmin, rows, group)
            assert lo.dtype == dtype
            np.testing.assert_array_equal(lo, np.fmin.reduce(want, axis=1))
            np.testing.assert_array_equal(groups(np.fmax, rows, group),
                                          np.fmax.reduce(want, axis=1))

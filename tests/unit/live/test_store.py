"""The live store: rows placed by chunk number, NaN gaps for lost chunks, a bounded overview."""

from __future__ import annotations

import numpy as np

from pybrid.live.store import BIN, OVERVIEW, LiveStore, Trace


def chunk(number: int, rows: int = 100, channels: int = 2) -> np.ndarray:
    n = np.arange(number * rows, (number + 1) * rows, dtype=np.float64)
    return np.stack([np.sin(n / 37.0), np.cos(n / 53.0)][:channels], axis=1)


def test_a_window_is_the_envelope_of_the_rows_received():
    t = Trace(2, 1000)
    for k in range(5):
        t.add(k, chunk(k))
    env = t.window(300, 500, 10)
    rows = np.concatenate([chunk(k) for k in range(5)])[300:500]
    assert env.per == 20 and env.start[0] == 300
    np.testing.assert_allclose(env.lo, rows.reshape(10, 20, 2).min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(env.hi, rows.reshape(10, 20, 2).max(axis=1), rtol=1e-6)


def test_a_missing_chunk_is_a_gap_in_the_window_and_the_overview_and_counted():
    t = Trace(2, 1000)
    for k in (0, 1, 3, 4):
        t.add(k, chunk(k))
    assert t.missing == 1 and t.chunks == 4 and t.rows == 500
    env = t.window(0, 500, 50)  # 10 rows a column: columns 20 … 29 are chunk 2
    assert np.isnan(env.lo[20:30]).all() and np.isnan(env.hi[20:30]).all()
    assert not np.isnan(env.lo[:20]).any() and not np.isnan(env.lo[30:]).any()
    over = t.window(0, 500, 4)
    assert not np.isnan(over.lo).any()  # a column partly filled shows what it has


def test_chunks_before_the_first_one_watched_are_not_missing():
    t = Trace(2, 1000)
    t.add(5, chunk(5))
    t.add(7, chunk(7))
    assert (t.first_chunk, t.missing, t.rows) == (5, 1, 800)
    assert np.isnan(t.window(0, 800, 800).lo[:500]).all()  # not watched: no values either


def test_the_ring_forgets_old_rows_and_the_overview_takes_over():
    t = Trace(1, 1024)
    for k in range(50):
        t.add(k, chunk(k, channels=1))
    assert t.rows == 5000
    recent = t.window(4000, 5000, 1000)
    assert recent.per == 1
    last = np.concatenate([chunk(k, channels=1) for k in range(40, 50)])[:, 0]
    np.testing.assert_allclose(recent.lo[:, 0], last, rtol=1e-6)
    whole = t.window(0, 5000, 100)  # beyond the ring: from the overview
    rows = np.concatenate([chunk(k, channels=1) for k in range(50)])[:, 0]
    assert whole.start[0] == 0 and whole.stop[-1] == 5000
    for i in (0, 17, len(whole.lo) - 1):
        a, b = whole.start[i], whole.stop[i]
        assert np.isclose(whole.lo[i, 0], rows[a:b].min())
        assert np.isclose(whole.hi[i, 0], rows[a:b].max())


def test_a_window_of_many_rows_a_column_comes_from_the_bins_exactly_across_the_wrap():
    t = Trace(2, 4096)
    for k in (*range(0, 60), *range(61, 100)):  # chunk 60 lost; 10 000 rows wrap the ring
        t.add(k, chunk(k))
    rows = np.concatenate([chunk(k) for k in range(100)])
    rows[6000:6100] = np.nan
    env = t.window(6000, 10_000, 50)  # 80 rows a column: from the bins
    assert env.per % BIN == 0 and env.per >= 80
    for i in range(len(env.lo)):
        a, b = env.start[i], env.stop[i]
        part = rows[a:b]
        if np.isnan(part).all():
            assert np.isnan(env.lo[i]).all()
            continue
        np.testing.assert_allclose(env.lo[i], np.nanmin(part, axis=0), rtol=1e-6)
        np.testing.assert_allclose(env.hi[i], np.nanmax(part, axis=0), rtol=1e-6)
    assert np.isnan(env.lo[:, 0]).any()  # the lost chunk's bins are a gap


def test_the_overview_stays_bounded_and_keeps_every_spike():
    t = Trace(1, 1024)
    rows = OVERVIEW * 8 + 123
    spike = 20_001
    data = np.zeros((rows, 1))
    data[spike] = 5.0
    for k in range(-(-rows // 1000)):
        t.add(k, data[k * 1000 : (k + 1) * 1000] if (k + 1) * 1000 <= rows else
              np.concatenate([data[k * 1000 :], np.zeros(((k + 1) * 1000 - rows, 1))]))
    assert t.per >= 8 and t.lo.shape == (OVERVIEW, 1)
    whole = t.window(0, t.rows, 500)
    assert whole.hi.max() == 5.0  # the one-sample spike survives every merge
    col = int(np.searchsorted(whole.start, spike, side="right") - 1)
    assert whole.hi[col, 0] == 5.0


def test_runs_are_kept_bounded_and_the_next_run_frees_the_ended_rings():
    store = LiveStore(runs_kept=2)
    for i in range(3):
        store.start(f"r{i}", i + 1, 1000, float(i))
        store.add(f"r{i}", "/c", 0, chunk(0), float(i))
    assert list(store.runs) == ["r1", "r2"]
    store.add("gone", "/c", 0, chunk(0), 5.0)
    assert store.dropped == 1
    store.end("r2", "DONE", 1, 0, 9.0)
    run = store.runs["r2"]
    assert run.traces["/c"].ring is not None and run.summary(10.0)["duration"] == 7.0
    assert store.current() is store.runs["r1"]  # the run still going
    store.end("r1", "ERROR", 1, 0, 9.5)
    assert store.current() is run  # no run going: the newest
    store.start("r3", 4, 1000, 11.0)  # the next run frees the ended runs' rings
    assert run.traces["/c"].ring is None
    assert run.traces["/c"].window(0, 100, 10).lo.shape == (10, 2)  # the overview stays


def test_the_overview_folded_from_the_bins_equals_the_overview_of_the_rows():
    # blocks of uneven size (several chunks at once), lost chunks, columns longer than the
    # ring: every column must be the exact min/max of its rows, NaN only where no row came
    rng = np.random.default_rng(7)
    size = 16
    t = Trace(2, 128)
    kept: dict[int, np.ndarray] = {}
    number = 0
    for step in range(12_000):
        count = int(rng.integers(1, 7))
        block = rng.standard_normal((count * size, 2)).astype(np.float32)
        if step % 997 != 5:  # else chunks number … number+count-1 lost
            t.add(number, block, count)
            kept.update({number + i: block[i * size : (i + 1) * size] for i in range(count)})
        number += count
    assert t.per > t.ring_rows  # columns reach back beyond the ring's bins
    rows = np.full((number * size, 2), np.nan, np.float32)
    for k, v in kept.items():
        rows[k * size : (k + 1) * size] = v
    cols = -(-len(rows) // t.per)
    pad = np.full((cols * t.per - len(rows), 2), np.nan, np.float32)
    blocks = np.concatenate([rows, pad]).reshape(cols, t.per, 2)
    np.testing.assert_array_equal(t.lo[:cols], np.fmin.reduce(blocks, axis=1))
    np.testing.assert_array_equal(t.hi[:cols], np.fmax.reduce(blocks, axis=1))
    assert np.isnan(t.lo[cols:]).all()


def test_a_window_longer_than_the_ring_comes_from_the_bins_exactly_gaps_included():
    # 100 ms of 8 channels at 3 MHz does not fit 8 MB of rows: the bins reach further
    t = Trace(1, 1024)
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((OVERVIEW * 300, 1)).astype(np.float32)  # overview: coarse
    lost = set(range(12_260, 12_275))  # 1500 rows lost: more than the ring holds
    for k in range(len(rows) // 100):
        if k not in lost:
            t.add(k, rows[k * 100 : (k + 1) * 100])
    for k in lost:
        rows[k * 100 : (k + 1) * 100] = np.nan
    assert t.per >= 512 and t.ring_rows == 1024
    first = len(rows) - 3200  # three ring lengths back, the gap in it
    env = t.window(first, len(rows), 50)
    assert env.per == 4 * BIN  # 64 rows a column: the bins, not the overview's 512
    for i in range(len(env.lo)):
        part = rows[env.start[i] : env.stop[i]]
        if np.isnan(part).all():
            assert np.isnan(env.lo[i]).all() and np.isnan(env.hi[i]).all()
        else:
            assert env.lo[i, 0] == np.nanmin(part) and env.hi[i, 0] == np.nanmax(part)
    assert np.isnan(env.lo[:, 0]).sum() >= 1500 // 64 - 1  # the lost chunks: a gap, not stale


def _exact(env, rows: np.ndarray, channel: int) -> bool:
    """Every column of ``env``'s ``channel`` is the min/max of its rows (NaN: all NaN)."""
    for i in range(len(env.lo)):
        part = rows[env.start[i] : env.stop[i], channel]
        lo, hi = env.lo[i, channel], env.hi[i, channel]
        if np.isnan(part).all():
            if not (np.isnan(lo) and np.isnan(hi)):
                return False
        elif not (np.isclose(lo, np.nanmin(part)) and np.isclose(hi, np.nanmax(part))):
            return False
    return True


def test_only_the_watched_channels_are_binned_and_a_channel_watched_later_from_the_ring():
    t = Trace(2, 2048)
    t.watch(frozenset({0}))
    for k in range(100):  # 10 000 rows: the ring holds the last 2 048, the bins 8 192
        t.add(k, chunk(k))
    rows = np.concatenate([chunk(k) for k in range(100)])
    env = t.window(2000, 10_000, 100)  # 80 rows a column: from the bins
    assert env.per % BIN == 0
    assert _exact(env, rows, 0)
    assert np.isnan(env.lo[:, 1]).all() and np.isnan(env.hi[:, 1]).all()  # nobody watched 1
    t.watch(frozenset({0, 1}))
    env = t.window(2000, 10_000, 100)
    assert _exact(env, rows, 0)
    ring_from = 10_000 - 2048
    late = env.start >= -(-ring_from // BIN) * BIN  # columns wholly in the ring: binned now
    assert late.any() and not np.isnan(env.lo[late, 1]).any()
    spans = zip(env.start[late], env.stop[late], strict=True)
    np.testing.assert_allclose(env.lo[late, 1], [rows[a:b, 1].min() for a, b in spans],
                               rtol=1e-6)
    assert np.isnan(env.lo[env.stop <= ring_from, 1]).all()  # before: not watched, a gap
    for k in range(100, 120):  # from now on both are binned as they come
        t.add(k, chunk(k))
    rows = np.concatenate([chunk(k) for k in range(120)])
    env = t.window(10_000, 12_000, 50)
    assert _exact(env, rows, 0) and _exact(env, rows, 1)


def test_a_store_bins_what_is_watched_in_new_and_running_traces():
    store = LiveStore(ring_bytes=4 * 2 * 2048)
    store.start("r", 1, 1000, 0.0)
    store.watch(frozenset({1}))
    for k in range(4):
        store.add("r", "/c", k, np.ones((1000, 2), np.float32), 0.0)
    trace = store.runs["r"].traces["/c"]
    assert trace.binned == [1]
    env = trace.window(0, 4000, 50)  # 80 rows a column: from the bins
    assert np.isnan(env.lo[:, 0]).all() and (env.lo[:, 1] == 1).all()
    store.watch(None)
    assert trace.binned is None

"""Chunk placement: sample i always lands in row i, whatever was lost, late or repeated."""

from __future__ import annotations

import numpy as np

from pybrid.recording.meta import RunMeta
from pybrid.recording.placement import ChunkPlacer
from pybrid.recording.sinks import MemorySink


def block(start: int, count: int, channels: int = 2) -> np.ndarray:
    n = np.arange(start, start + count, dtype=np.float64)[:, None]
    return n + np.arange(channels)[None, :] / 4  # exact in float32


def placed(arrivals: list[tuple[int, np.ndarray]], expected: int) -> tuple[ChunkPlacer, np.ndarray]:
    sink = MemorySink()
    sink.begin(RunMeta("r", 0.0, 10_000, 2, ("A",), expected_samples=expected))
    placer = ChunkPlacer(lambda start, values: sink.write("A", start, values,
                                                          np.dtype(np.float32)))
    for number, values in arrivals:
        placer.add(number, values)
    out = sink.samples("A")
    assert out is not None
    return placer, out


def test_late_chunks_land_in_their_place_and_lost_ones_are_nan_rows() -> None:
    arrivals = [(1, block(100, 100)), (3, block(300, 100)), (0, block(0, 100)),
                (9, block(900, 50))]
    placer, rows = placed(arrivals, expected=950)
    assert rows.shape == (950, 2) and rows.dtype == np.float32
    for n in (0, 1, 3):
        np.testing.assert_array_equal(rows[100 * n : 100 * n + 100], block(100 * n, 100))
    np.testing.assert_array_equal(rows[900:], block(900, 50))
    assert np.isnan(rows[200:300]).all() and np.isnan(rows[400:900]).all()
    assert placer.missing(950).tolist() == [2, 4, 5, 6, 7, 8]
    assert placer.gaps() == 6 and placer.size == 100


def test_lost_chunks_after_the_last_received_are_missing_too() -> None:
    placer, rows = placed([(0, block(0, 100)), (1, block(100, 100))], expected=1000)
    assert rows.shape == (1000, 2)
    assert np.isnan(rows[200:]).all()
    assert placer.missing(1000).tolist() == list(range(2, 10))
    assert placer.gaps() == 0  # none below the highest received
    assert placer.missing(0).tolist() == []  # an unknown expected count tells nothing more


def test_a_short_last_chunk_arriving_first_is_moved_when_the_chunk_size_is_learnt() -> None:
    # chunks of 100; the 30-sample last chunk (number 4) arrives before any other
    arrivals = [(4, block(400, 30)), (2, block(200, 100)), (0, block(0, 100))]
    placer, rows = placed(arrivals, expected=430)
    assert placer.relocations == 1 and placer.size == 100
    np.testing.assert_array_equal(rows[400:430], block(400, 30))
    np.testing.assert_array_equal(rows[200:300], block(200, 100))
    assert np.isnan(rows[100:200]).all() and np.isnan(rows[300:400]).all()
    assert not np.isnan(rows[:100]).any()
    assert placer.missing(430).tolist() == [1, 3]


def test_duplicates_are_counted_and_not_written_again() -> None:
    placer, rows = placed([(0, block(0, 100)), (0, block(5000, 100))], expected=100)
    assert placer.duplicates == 1 and placer.chunks == 1
    np.testing.assert_array_equal(rows, block(0, 100))


def test_more_samples_than_expected_grow_the_rows() -> None:
    placer, rows = placed([(0, block(0, 100)), (5, block(500, 100))], expected=200)
    assert rows.shape == (600, 2) and placer.rows == 600
    np.testing.assert_array_equal(rows[500:], block(500, 100))
    assert placer.missing(200).tolist() == [1, 2, 3, 4]


def test_memory_grows_from_a_bounded_start_and_pads_lost_rows_at_the_end() -> None:
    from pybrid.recording import sinks

    sink = MemorySink()
    sink.begin(RunMeta("r", 0.0, 1, 1, ("A",), expected_samples=5 * sinks.INITIAL_ROWS))
    f32 = np.dtype(np.float32)
    sink.write("A", 0, np.ones((10, 1)), f32)
    assert sink._rows["A"].data.shape[0] == sinks.INITIAL_ROWS  # not the whole run at once
    sink.write("A", sinks.INITIAL_ROWS, np.full((10, 1), 2.0), f32)
    assert sink._rows["A"].data.shape[0] == 2 * sinks.INITIAL_ROWS
    rows = sink.samples("A")
    assert rows is not None and rows.shape == (5 * sinks.INITIAL_ROWS, 1)
    assert rows[0, 0] == 1.0 and rows[sinks.INITIAL_ROWS, 0] == 2.0
    assert np.isnan(rows[10 : sinks.INITIAL_ROWS]).all() and np.isnan(rows[-10:]).all()


def test_without_an_expected_count_memory_doubles() -> None:
    sink = MemorySink()
    sink.begin(RunMeta("r", 0.0, 0, 1, ()))  # a monitor: the run's length is unknown
    f32 = np.dtype(np.float32)
    sizes = set()
    for n in range(50):
        sink.write("A", 100 * n, np.ones((100, 1)), f32)
        sizes.add(sink._rows["A"].data.shape[0])
    assert sorted(sizes) == [100, 200, 400, 800, 1600, 3200, 6400]
    rows = sink.samples("A")
    assert rows is not None and rows.shape == (5000, 1) and not np.isnan(rows).any()

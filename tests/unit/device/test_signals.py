"""The simulator's sample generator: exact, documented, sensitive to carrier/channel/index."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybrid.device.signals import (
    PERIOD,
    SAMPLE_DTYPES,
    ChunkSignal,
    default_mac,
    expected,
    expected_decoded,
    mac_hash,
)


def _closed_form(c: int, k: int, n: int, mac: str) -> float:
    """docs/simulator.md's formula, evaluated independently in float64 scalars."""
    h = mac_hash(mac)
    p, r = k // 2, n % PERIOD
    period = 200 + 60 * p + 25 * c + 50 * h
    if p % 2:
        period = PERIOD / max(round(PERIOD / period), 1)
        envelope = 1.0
    else:
        envelope = math.exp(-r / (900 + 300 * h + 100 * (p % 3)))
    angle = 2 * math.pi * r / period + 2 * math.pi * (h + c / 7 + 0.37 * p)
    wave = math.cos(angle) if k % 2 == 0 else math.sin(angle)
    return (0.9 - 0.1 * (p % 4)) * envelope * wave


@pytest.mark.parametrize(("c", "n", "mac"), [(0, 0, None), (1, 12345, None),
                                             (3, 4095, "04-E9-E5-14-74-BF")])
def test_values_follow_the_documented_oscillators(c: int, n: int, mac: str | None) -> None:
    got = expected(c, 8, n, 1, mac=mac)[0]
    for k in range(8):
        assert got[k] == pytest.approx(_closed_form(c, k, n, mac or default_mac(c)), abs=1e-6)


def test_shape_dtype_and_range() -> None:
    v = expected(0, 8, 0, 100)
    assert v.shape == (100, 8)
    assert v.dtype == np.float32
    assert -1.0 <= v.min() and v.max() < 1.0
    for name, dt in SAMPLE_DTYPES.items():
        assert expected(0, 3, 5, 7, name).dtype == dt


def test_float_values_are_exact_in_float32_and_float64() -> None:
    v = expected(3, 16, 1_000_000, 5000).astype(np.float64)
    assert np.array_equal(v.astype(np.float32).astype(np.float64), v)
    assert np.array_equal(expected(3, 16, 1_000_000, 5000, "f64"), v)


def test_values_depend_on_carrier_mac_channel_and_sample_index() -> None:
    base = expected(0, 8, 0, 200)
    assert np.mean(base[:100] == base[100:200]) < 0.01  # a duplicated chunk would not match
    assert np.mean(expected(1, 8, 0, 200) == base) < 0.01  # carriers differ
    other_device = expected(0, 8, 0, 200, mac="00-00-00-00-00-43")  # carrier 0 of another device
    assert np.mean(other_device == base) < 0.01
    assert len(np.unique(base[0])) == 8  # channels differ


def test_the_circuit_repeats_every_period_and_damped_pairs_decay() -> None:
    v = expected(2, 8, 0, 2 * PERIOD)
    assert np.array_equal(v[:PERIOD], v[PERIOD:])  # repetitive operation
    early, late = np.abs(v[:200]).max(axis=0), np.abs(v[PERIOD - 200 : PERIOD]).max(axis=0)
    assert (late[[0, 1, 4, 5]] < 0.1 * early[[0, 1, 4, 5]]).all()  # damped oscillators
    assert (np.abs(late[[2, 3, 6, 7]] - early[[2, 3, 6, 7]]) < 0.05).all()  # undamped ones
    # cosine and sine of one oscillator: their squares sum to the squared envelope
    radius = np.hypot(v[:, 2], v[:, 3])
    np.testing.assert_allclose(radius, 0.8, atol=1e-6)


def test_windows_are_consistent() -> None:
    whole = expected(2, 4, 0, 1000)
    assert np.array_equal(expected(2, 4, 250, 300), whole[250:550])


def test_integer_types_decode_to_truncated_float_values() -> None:
    f = expected_decoded(1, 8, 777, 400, "f32")
    for name in ("i16", "u16"):
        d = expected_decoded(1, 8, 777, 400, name)
        assert np.array_equal(d, np.floor(f * 2**15) / 2**15)
    assert np.array_equal(expected_decoded(1, 8, 777, 400, "f64"), f)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown sample type"):
        expected(0, 1, 0, 1, "f16")
    with pytest.raises(ValueError):
        expected(-1, 1, 0, 1)
    with pytest.raises(ValueError):
        expected(0, 1, -5, 1)


@settings(max_examples=40, deadline=None)
@given(
    carrier=st.integers(0, 63),
    channels=st.integers(1, 20),
    per_chunk=st.integers(1, 5000),
    first=st.integers(0, 2**33),
    count=st.integers(1, 5),
    dtype=st.sampled_from(sorted(SAMPLE_DTYPES)),
    mac=st.sampled_from([None, "00-00-00-00-00-43", "FF-FF-FF-FF-FF-FF"]),
)
def test_chunk_signal_equals_expected(carrier, channels, per_chunk, first, count, dtype,
                                      mac) -> None:
    sig = ChunkSignal(carrier, channels, per_chunk, dtype, mac=mac)
    want = expected(carrier, channels, first * per_chunk, count * per_chunk, dtype, mac=mac)
    assert np.array_equal(sig.block(first, count), want)
    itemsize = SAMPLE_DTYPES[dtype].itemsize
    rows = np.zeros((count, 3 + per_chunk * channels * itemsize + 2), dtype=np.uint8)
    sig.fill(first, count, rows[:, 3:-2])  # strided, unaligned destination
    assert np.array_equal(rows[:, 3:-2].tobytes(), want.tobytes())
    assert not rows[:, :3].any() and not rows[:, -2:].any()

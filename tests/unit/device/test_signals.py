"""The simulator's sample generator: exact, documented, sensitive to carrier/channel/index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybrid.device.signals import (
    SAMPLE_DTYPES,
    ChunkSignal,
    expected,
    expected_decoded,
)


def test_formula_matches_the_documented_weyl_sequence() -> None:
    # docs/simulator.md: u = a*n + b mod 2**32, value = (int32(u) >> 8) / 2**23
    c, k, n = 1, 2, 12345
    a = (0x9E3779B1 * (1 + k + 16 * c)) % 2**32 | 1
    b = (0x85EBCA77 * (1 + k) + 0xC2B2AE3D * (1 + c)) % 2**32
    u = (a * n + b) % 2**32
    s = u - 2**32 if u >= 2**31 else u
    assert expected(c, 3, n, 1)[0, k] == (s >> 8) / 2**23


def test_shape_dtype_and_range() -> None:
    v = expected(0, 8, 0, 100)
    assert v.shape == (100, 8)
    assert v.dtype == np.float32
    assert -1.0 <= v.min() and v.max() < 1.0
    for name, dt in SAMPLE_DTYPES.items():
        assert expected(0, 3, 5, 7, name).dtype == dt


def test_float_values_are_dyadic_and_exact_in_float32() -> None:
    v = expected(3, 16, 1_000_000, 5000).astype(np.float64)
    scaled = v * 2**23
    assert np.array_equal(scaled, np.round(scaled))  # multiples of 2**-23
    assert np.array_equal(v.astype(np.float32).astype(np.float64), v)
    assert np.array_equal(expected(3, 16, 1_000_000, 5000, "f64"), v)


def test_values_depend_on_carrier_channel_and_sample_index() -> None:
    base = expected(0, 8, 0, 200)
    assert not np.any(base[:100] == base[100:200])  # a duplicated chunk would differ everywhere
    assert not np.any(expected(1, 8, 0, 200) == base)
    assert len(np.unique(base[0])) == 8  # channels differ


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
    per_chunk=st.integers(1, 150),
    first=st.integers(0, 2**33),
    count=st.integers(1, 5),
    dtype=st.sampled_from(sorted(SAMPLE_DTYPES)),
)
def test_chunk_signal_equals_expected(carrier, channels, per_chunk, first, count, dtype) -> None:
    sig = ChunkSignal(carrier, channels, per_chunk, dtype)
    want = expected(carrier, channels, first * per_chunk, count * per_chunk, dtype)
    assert np.array_equal(sig.block(first, count), want)
    itemsize = SAMPLE_DTYPES[dtype].itemsize
    rows = np.zeros((count, 3 + per_chunk * channels * itemsize + 2), dtype=np.uint8)
    sig.fill(first, count, rows[:, 3:-2])  # strided, unaligned destination
    assert np.array_equal(rows[:, 3:-2].tobytes(), want.tobytes())
    assert not rows[:, :3].any() and not rows[:, -2:].any()

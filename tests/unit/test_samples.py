"""DaqData ⇄ numpy for f32, f64, i16, u16 with gain, offset and probes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybrid import samples
from pybrid.proto import pb


@pytest.mark.parametrize("name", ["f32", "f64", "i16", "u16"])
def test_round_trip_with_gain_and_offset(name: str) -> None:
    dt = samples.DTYPES[name]
    raw = (np.arange(300 * 3).reshape(300, 3) % 200).astype(dt)
    gains, offsets = [0.5, 2.0, -1.0], [0.0, 1.5, 10.0]
    daq = samples.encode(raw, name, gains=gains, offsets=offsets, probes=[0, 1, 1])
    wire = pb.DaqData()
    wire.ParseFromString(daq.SerializeToString())
    assert wire.sample_count == 300 and wire.channel_stride == 3
    assert len(wire.data) == 300 * 3 * dt.itemsize
    values = samples.decode(wire)
    np.testing.assert_array_equal(values, raw.astype(np.float64) * gains + offsets)
    grouped = samples.by_probe(wire, values)
    assert sorted(grouped) == [0, 1]
    np.testing.assert_array_equal(grouped[1], values[:, 1:3])


def test_layout_is_sample_major_little_endian() -> None:
    raw = np.array([[1, 2], [3, 4]], dtype="<i2")
    daq = samples.encode(raw, "i16")
    assert daq.data == b"\x01\x00\x02\x00\x03\x00\x04\x00"
    assert daq.type.integer.bitwidth == 16
    assert daq.type.integer.signess == pb.IntegerType.Signed
    assert samples.encode(raw.astype("<u2"), "u16").type.integer.signess == pb.IntegerType.Unsigned


def test_negative_i16_and_default_gain() -> None:
    daq = pb.DaqData(
        data=np.array([-32768, 32767], dtype="<i2").tobytes(),
        type=samples.data_type_for("i16"),
        sample_count=1,
        channel_stride=2,
    )
    # No AdcChannel entries: gain 1, offset 0.
    np.testing.assert_array_equal(samples.decode(daq), [[-32768.0, 32767.0]])


def test_length_mismatch_is_a_clear_error() -> None:
    daq = samples.encode(np.zeros((10, 2), dtype="<f4"), "f32")
    daq.sample_count = 11
    with pytest.raises(samples.SampleFormatError, match="80 bytes; 11 samples"):
        samples.decode(daq)


def test_missing_type_is_a_clear_error() -> None:
    with pytest.raises(samples.SampleFormatError, match="no data type"):
        samples.decode(pb.DaqData(sample_count=0))


@given(
    st.integers(min_value=1, max_value=120),
    st.integers(min_value=1, max_value=9),
    st.sampled_from(["f32", "f64", "i16", "u16"]),
)
def test_shape_property(count: int, channels: int, name: str) -> None:
    raw = np.arange(count * channels).reshape(count, channels).astype(samples.DTYPES[name])
    out = samples.decode(samples.encode(raw, name))
    assert out.shape == (count, channels)
    np.testing.assert_array_equal(out, raw.astype(np.float64))

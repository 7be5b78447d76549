"""``DaqData`` ⇄ numpy.

``DaqData.data`` is little-endian and sample-major (interleaved): s0c0 s0c1 … s0c(N-1) s1c0 …
with ``channel_stride`` = N (docs/protocol.md#samples).  The value of a sample is ``raw × gain
+ offset`` with the gain and offset of ``channels[i]`` for column ``i``; ``channels[i].probe``
names the output list a column belongs to.  Everything here is whole-array numpy: no per-sample
loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from pybrid.proto import pb
from pybrid.recording.meta import storage_dtype

#: The four sample types a device may send, by name.
DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "i16": np.dtype("<i2"),
    "u16": np.dtype("<u2"),
}


class SampleFormatError(ValueError):
    """A DaqData whose type, stride or length do not describe its bytes."""


def numpy_dtype(data_type: pb.DataType) -> np.dtype:
    """The numpy dtype a ``DataType`` describes; raises :class:`SampleFormatError` otherwise."""
    kind = data_type.WhichOneof("kind")
    if kind == "float_":
        width = data_type.float_.bitwidth
        if width == 32:
            return DTYPES["f32"]
        if width == 64:
            return DTYPES["f64"]
        raise SampleFormatError(f"unsupported float bitwidth {width}")
    if kind == "integer":
        width = data_type.integer.bitwidth
        signed = data_type.integer.signess == pb.IntegerType.Signed
        if width in (8, 16, 32, 64):
            return np.dtype(f"<{'i' if signed else 'u'}{width // 8}")
        raise SampleFormatError(f"unsupported integer bitwidth {width}")
    raise SampleFormatError("DaqData has no data type")


def data_type_for(dtype: np.dtype | str) -> pb.DataType:
    """The ``DataType`` message for a numpy dtype (or one of the names in :data:`DTYPES`)."""
    dt = DTYPES[dtype] if isinstance(dtype, str) and dtype in DTYPES else np.dtype(dtype)
    msg = pb.DataType()
    if dt.kind == "f":
        msg.float_.bitwidth = dt.itemsize * 8
    elif dt.kind in "iu":
        msg.integer.bitwidth = dt.itemsize * 8
        msg.integer.signess = pb.IntegerType.Signed if dt.kind == "i" else pb.IntegerType.Unsigned
    else:
        raise SampleFormatError(f"unsupported dtype {dt}")
    return msg


def raw_array(daq: pb.DaqData) -> np.ndarray:
    """The raw samples as a read-only ``(sample_count, channels)`` array, no gain applied."""
    dt = numpy_dtype(daq.type)
    stride = daq.channel_stride or len(daq.channels) or 1
    count = daq.sample_count
    expected = count * stride * dt.itemsize
    if len(daq.data) != expected:
        raise SampleFormatError(
            f"DaqData holds {len(daq.data)} bytes; {count} samples × {stride} channels × "
            f"{dt.itemsize} bytes = {expected}"
        )
    return np.frombuffer(daq.data, dtype=dt).reshape(count, stride)


def gains_offsets(daq: pb.DaqData, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column gain and offset (1.0 and 0.0 for columns without an ``AdcChannel``)."""
    gain = np.ones(columns)
    offset = np.zeros(columns)
    n = min(columns, len(daq.channels))
    if n:
        channels = daq.channels
        gain[:n] = [channels[i].gain for i in range(n)]
        offset[:n] = [channels[i].offset for i in range(n)]
    return gain, offset


@attrs.frozen(eq=False)
class ChunkFormat:
    """How to turn the sample bytes of one kind of ``DaqData`` into values: dtype, shape,
    per-column gain and offset — built once per channel layout (:func:`format_of`) and reused
    for every chunk of that layout (the client's fast path, :mod:`pybrid.client.fastdata`)."""

    dtype: np.dtype
    count: int
    stride: int
    gain: np.ndarray
    offset: np.ndarray
    #: Every gain 1.0 and every offset +0.0: ``raw × gain + offset`` is ``raw + 0`` exactly.
    identity: bool
    #: The dtype a run stores these values in (:func:`pybrid.recording.meta.storage_dtype`).
    storage: np.dtype
    #: ``channels[i].probe`` of the columns that have an ``AdcChannel``.
    probes: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return self.count * self.stride * self.dtype.itemsize

    def raw(self, buffer: bytes, at: int = 0) -> np.ndarray:
        """The raw ``(count, stride)`` samples that start at byte ``at`` of ``buffer``
        (a read-only view of it)."""
        return np.ndarray((self.count, self.stride), self.dtype, buffer, at)

    def values(self, buffer: bytes, at: int = 0) -> np.ndarray:
        """``raw × gain + offset``, equal to ``decode(…)`` (float64; in :attr:`storage` with
        identity gains).

        With identity gains the float64 round trip is skipped: adding zero in the sample's own
        float type (or an exact integer → float conversion) gives the same values, −0.0 → +0.0
        included."""
        raw = np.ndarray((self.count, self.stride), self.dtype, buffer, at)
        if not self.identity:
            out = raw * self.gain
            out += self.offset
            return out
        if raw.dtype.kind == "f":
            return raw + raw.dtype.type(0)
        return raw.astype(self.storage)


def format_of(daq: pb.DaqData) -> ChunkFormat:
    """The :class:`ChunkFormat` of ``daq`` (its bytes checked as :func:`raw_array` does)."""
    raw = raw_array(daq)
    gain, offset = gains_offsets(daq, raw.shape[1])
    identity = bool(np.all(gain == 1.0) and np.all(offset == 0.0) and not np.signbit(offset).any())
    probes = tuple(int(c.probe) for c in daq.channels[: raw.shape[1]])
    return ChunkFormat(raw.dtype, raw.shape[0], raw.shape[1], gain, offset, identity,
                       storage_dtype(raw.dtype), probes)


def decode(daq: pb.DaqData) -> np.ndarray:
    """Samples as float64 ``(sample_count, channels)`` with ``raw × gain + offset`` applied."""
    raw = raw_array(daq)
    gain, offset = gains_offsets(daq, raw.shape[1])
    return raw * gain + offset


def by_probe(daq: pb.DaqData, values: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Columns grouped by ``channels[i].probe`` (in channel order within each probe)."""
    if values is None:
        values = decode(daq)
    probes = np.array([c.probe for c in daq.channels[: values.shape[1]]], dtype=np.int64)
    return {int(p): values[:, probes == p] for p in np.unique(probes)}


def encode(
    raw: np.ndarray,
    dtype: np.dtype | str,
    *,
    gains: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    probes: Sequence[int] | None = None,
    idx: Sequence[int] | None = None,
) -> pb.DaqData:
    """Build a ``DaqData`` from raw ``(samples, channels)`` values already in ``dtype``'s units.

    ``gains`` default to 1.0 (proto3's default of 0 would zero every sample), offsets to 0.0,
    probes to 0 and channel indices to 0..N-1.
    """
    dt = DTYPES[dtype] if isinstance(dtype, str) and dtype in DTYPES else np.dtype(dtype)
    arr = np.asarray(raw)
    if arr.ndim != 2:
        raise SampleFormatError("raw samples must be a 2-D (samples, channels) array")
    count, n = arr.shape
    msg = pb.DaqData(
        data=np.ascontiguousarray(arr, dtype=dt.newbyteorder("<")).tobytes(),
        type=data_type_for(dt),
        sample_count=count,
        channel_stride=n,
    )
    for i in range(n):
        msg.channels.add(
            idx=idx[i] if idx is not None else i,
            gain=gains[i] if gains is not None else 1.0,
            offset=offsets[i] if offsets is not None else 0.0,
            probe=probes[i] if probes is not None else 0,
        )
    return msg

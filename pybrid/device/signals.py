"""The simulated device's deterministic sample values.

Design note
-----------
Every sample the simulator emits is a pure function of ``(carrier, channel, n)`` where
``carrier`` is the carrier's index in the device (its ``location_v0.carrier``), ``channel`` the
column in ``DaqData`` (0 … num_channels-1) and ``n`` the sample index within the run
(0, 1, 2 … across chunks: chunk ``j`` holds samples ``100 j … 100 j + 99``).  Tests in every
area recompute the values with :func:`expected` and compare exactly, so a lost, duplicated,
reordered or mis-attributed chunk shows up as a value mismatch.

The generator is a Weyl sequence on 32-bit unsigned integers (all arithmetic mod 2**32)::

    a(c, k) = (0x9E3779B1 * (1 + k + 16 c)) | 1            odd multiplier per carrier/channel
    b(c, k) = 0x85EBCA77 * (1 + k) + 0xC2B2AE3D * (1 + c)  offset per carrier/channel
    u(c, k, n) = a(c, k) * n + b(c, k)
    s(c, k, n) = int32(u) >> 8                              signed 24-bit integer
    f32/f64 value = s / 2**23                               in [-1, 1), a multiple of 2**-23

``u`` has period 2**32 in ``n`` and successive values jump far apart, so two chunks of the same
carrier and channel are equal only if their starts differ by a multiple of 2**24 samples.  The
float values are dyadic rationals with at most 24 significant bits: exact in float32 and in
float64, so the reference client (which decodes float32 into float64) reproduces them exactly.

Integer sample types carry the top 16 bits: ``i16`` raw = ``int32(u) >> 16`` (wire gain 2**-15,
offset 0) and ``u16`` raw = ``(u >> 16) XOR 0x8000``, i.e. i16 raw + 32768 (wire gain 2**-15,
offset -1.0); both decode to ``floor(value × 2**15) / 2**15``.  :func:`expected` returns raw
values in the wire type; :func:`expected_decoded` returns what a client computes
(raw × gain + offset) with the simulator's default channel gain 1.0 and offset 0.0.

Everything is whole-array numpy (no per-sample Python).
"""

from __future__ import annotations

import numpy as np

#: Sample types the simulator can emit, and their little-endian numpy dtypes.
SAMPLE_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "i16": np.dtype("<i2"),
    "u16": np.dtype("<u2"),
}

#: ``(gain, offset)`` put on the wire per sample type so that decoded values lie in [-1, 1).
WIRE_SCALE: dict[str, tuple[float, float]] = {
    "f32": (1.0, 0.0),
    "f64": (1.0, 0.0),
    "i16": (2.0**-15, 0.0),
    "u16": (2.0**-15, -1.0),
}

_A = 0x9E3779B1
_B = 0x85EBCA77
_C = 0xC2B2AE3D
_M32 = 0xFFFFFFFF
_F24 = np.float32(2.0**-23)


def coefficients(carrier: int, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of the Weyl sequence for each channel of ``carrier`` as uint32 arrays."""
    if carrier < 0 or n_channels < 0:
        raise ValueError("carrier and n_channels must be non-negative")
    k = np.arange(n_channels, dtype=np.uint64)
    a = ((np.uint64(_A) * (np.uint64(1 + 16 * carrier) + k)) & np.uint64(_M32)) | np.uint64(1)
    b = (np.uint64(_B) * (k + np.uint64(1)) + np.uint64((_C * (1 + carrier)) & _M32)) & np.uint64(
        _M32
    )
    return a.astype(np.uint32), b.astype(np.uint32)


def weyl(carrier: int, n_channels: int, start: int, count: int) -> np.ndarray:
    """The raw 32-bit state ``u`` as a ``(count, n_channels)`` uint32 array."""
    if start < 0 or count < 0:
        raise ValueError("start and count must be non-negative")
    a, b = coefficients(carrier, n_channels)
    n = np.arange(start, start + count, dtype=np.uint64).astype(np.uint32)
    with np.errstate(over="ignore"):
        u = n[:, None] * a[None, :]
        u += b[None, :]
    return u


def expected(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32"
) -> np.ndarray:
    """Raw samples ``(count, n_channels)`` in the wire type ``dtype`` for samples
    ``start … start+count-1`` of ``carrier`` (see the module note for the formula)."""
    _check_dtype(dtype)
    return _convert(weyl(carrier, n_channels, start, count), dtype)


def _check_dtype(dtype: str) -> None:
    if dtype not in SAMPLE_DTYPES:
        raise ValueError(f"unknown sample type {dtype!r}; choose one of {sorted(SAMPLE_DTYPES)}")


def _convert(u: np.ndarray, dtype: str) -> np.ndarray:
    """Weyl states (uint32, modified in place) → raw samples in ``dtype``."""
    if dtype == "u16":
        return ((u >> 16) ^ np.uint32(0x8000)).astype(np.uint16)
    s = u.view(np.int32)
    if dtype == "i16":
        return (s >> 16).astype(np.int16)
    s >>= 8
    out = np.empty(s.shape, np.float32)
    np.multiply(s, _F24, out=out, casting="unsafe")
    if dtype == "f64":
        return out.astype(np.float64)
    return out


class ChunkSignal:
    """Fast generator of whole chunks for one carrier: ``block(first_chunk, count)`` returns
    the samples of chunks ``first_chunk … first_chunk+count-1`` (``count × per_chunk`` rows),
    identical to :func:`expected` but reusing the first chunk's states (one add per value)."""

    def __init__(self, carrier: int, n_channels: int, per_chunk: int, dtype: str = "f32") -> None:
        _check_dtype(dtype)
        self.carrier = carrier
        self.n_channels = n_channels
        self.per_chunk = per_chunk
        self.dtype = dtype
        a, _ = coefficients(carrier, n_channels)
        self._a_row = np.tile(a, per_chunk)  # a(c, k) at every position of a flattened chunk
        self._base = weyl(carrier, n_channels, 0, per_chunk).reshape(-1)

    def _states(self, first_chunk: int, count: int) -> np.ndarray:
        if first_chunk < 0 or count < 0:
            raise ValueError("first_chunk and count must be non-negative")
        starts = (np.arange(first_chunk, first_chunk + count, dtype=np.uint64)
                  * np.uint64(self.per_chunk)).astype(np.uint32)
        with np.errstate(over="ignore"):
            u = starts[:, None] * self._a_row[None, :]
            u += self._base[None, :]
        return u.reshape(count, self.per_chunk, self.n_channels)

    def block(self, first_chunk: int, count: int) -> np.ndarray:
        u = self._states(first_chunk, count)
        return _convert(u.reshape(count * self.per_chunk, self.n_channels), self.dtype)

    def fill(self, first_chunk: int, count: int, out: np.ndarray) -> None:
        """Write the chunks' little-endian samples into ``out``, a ``(count, bytes per chunk)``
        uint8 array whose rows may be strided (the sample area of encoded messages)."""
        u = self._states(first_chunk, count)
        typed = out.view(SAMPLE_DTYPES[self.dtype]).reshape(u.shape)
        if self.dtype == "f32":
            s = u.view(np.int32)
            s >>= 8
            np.multiply(s, _F24, out=typed, casting="unsafe")
        else:
            typed[...] = _convert(u, self.dtype)


def expected_decoded(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32"
) -> np.ndarray:
    """Float64 values a client decodes (raw × wire gain + wire offset, default channel config)."""
    gain, offset = WIRE_SCALE[dtype]
    return expected(carrier, n_channels, start, count, dtype).astype(np.float64) * gain + offset


def chunk_bytes(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32"
) -> bytes:
    """The little-endian, sample-major ``DaqData.data`` for the given samples."""
    return expected(carrier, n_channels, start, count, dtype).tobytes()


__all__ = [
    "SAMPLE_DTYPES",
    "WIRE_SCALE",
    "ChunkSignal",
    "chunk_bytes",
    "coefficients",
    "expected",
    "expected_decoded",
    "weyl",
]

"""The simulated device's deterministic sample values: damped and undamped oscillators.

Design note
-----------
The simulator plays an analog computer in *repetitive operation*: every ``PERIOD`` (4096)
samples the circuit restarts from its initial conditions.  Each pair of channels is one
oscillator — channel ``2p`` its displacement, channel ``2p + 1`` its (scaled) velocity, a
cosine and a sine.  Pairs with even ``p`` are damped oscillators, pairs with odd ``p``
undamped harmonic oscillators (a whole number of cycles per period, so they run on smoothly).
For carrier ``c`` with MAC ``m`` and channel ``k`` (``p = k // 2``), with ``h = hash(m)`` in
[0, 1) and ``r = n mod PERIOD`` for sample index ``n`` (0, 1, 2 … across chunks)::

    T     = 200 + 60 p + 25 c + 50 h                        samples per cycle
    tau   = 900 + 300 h + 100 (p mod 3)                     decay time (damped pairs)
    A     = 0.9 − 0.1 (p mod 4)                             amplitude
    phi   = 2 pi (h + c / 7 + 0.37 p)                       phase
    x(r)  = A e^(−r / tau) cos(2 pi r / T + phi)            channel 2p
    y(r)  = A e^(−r / tau) sin(2 pi r / T + phi)            channel 2p + 1
    (undamped pairs: no e^(−r/tau), and T rounded so PERIOD / T is a whole number)

``hash(m) = ((m × 0x9E3779B97F4A7C15) mod 2**64 >> 40) / 2**24`` of the 48-bit MAC integer,
so carriers of different devices behind one proxy (all carrier index 0) differ too.  The
carrier's MAC defaults to that of :class:`~pybrid.device.config.DeviceConfig`'s default,
``00-00-00-00-00-01`` + ``c``.

**Exactness.**  The values are computed once per (carrier, MAC, channels) as a float64 table of
``PERIOD`` rows and rounded to float32; the device (:class:`ChunkSignal`) and every test
(:func:`expected`) read the *same* table by ``n mod PERIOD``, so they agree bit for bit
whatever numpy's float32 kernels do.  float32 values decode exactly into float64 (the
reference client's decoding).  Integer sample types carry ``floor(value × 2**15)``: ``i16``
raw (wire gain 2**-15, offset 0) and ``u16`` raw = i16 raw + 32768 (wire gain 2**-15,
offset −1.0); both decode to ``floor(value × 2**15) / 2**15``.  :func:`expected` returns raw
values in the wire type; :func:`expected_decoded` what a client computes (raw × gain + offset)
with the simulator's default channel gain 1.0 and offset 0.0.

Everything is whole-array numpy: a chunk batch is one gather from the table.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

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

#: Samples per repetition of the simulated circuit.
PERIOD = 4096
_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def mac_int(mac: str) -> int:
    """``00-00-00-00-00-01`` → 1."""
    return int(mac.replace("-", "").replace(":", ""), 16)


def default_mac(carrier: int) -> str:
    """The MAC the default device configuration gives carrier ``carrier``."""
    h = f"{1 + carrier:012X}"
    return "-".join(h[i : i + 2] for i in range(0, 12, 2))


def mac_hash(mac: str) -> float:
    """The MAC's contribution to the signal, in [0, 1) (see the module note)."""
    return (((mac_int(mac) * _GOLDEN) & _M64) >> 40) / 2.0**24


def _check(carrier: int, n_channels: int, dtype: str) -> None:
    if carrier < 0 or n_channels < 0:
        raise ValueError("carrier and n_channels must be non-negative")
    if dtype not in SAMPLE_DTYPES:
        raise ValueError(f"unknown sample type {dtype!r}; choose one of {sorted(SAMPLE_DTYPES)}")


@lru_cache(maxsize=256)
def _float_table(carrier: int, mac: str, n_channels: int) -> np.ndarray:
    h = mac_hash(mac)
    r = np.arange(PERIOD, dtype=np.float64)[:, None]
    p = np.arange(n_channels, dtype=np.int64) // 2
    period = 200.0 + 60.0 * p + 25.0 * carrier + 50.0 * h
    damped = p % 2 == 0
    period = np.where(damped, period, PERIOD / np.maximum(np.round(PERIOD / period), 1.0))
    tau = 900.0 + 300.0 * h + 100.0 * (p % 3)
    amplitude = 0.9 - 0.1 * (p % 4)
    phi = 2 * np.pi * (h + carrier / 7.0 + 0.37 * p)
    angle = 2 * np.pi * r / period[None, :] + phi
    envelope = np.where(damped[None, :], np.exp(-r / tau[None, :]), 1.0) * amplitude[None, :]
    wave = np.where((np.arange(n_channels) % 2 == 0)[None, :], np.cos(angle), np.sin(angle))
    table = (envelope * wave).astype(np.float32)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=256)
def table(carrier: int, mac: str, n_channels: int, dtype: str) -> np.ndarray:
    """One period of raw samples, ``(PERIOD, n_channels)`` in the wire type (read-only)."""
    f = _float_table(carrier, mac, n_channels)
    if dtype == "f32":
        return f
    out: np.ndarray
    if dtype == "f64":
        out = f.astype(np.float64)
    else:
        i16 = np.floor(f * np.float32(2.0**15)).astype(np.int16)
        out = i16 if dtype == "i16" else (i16.view(np.uint16) ^ np.uint16(0x8000))
    out.flags.writeable = False
    return out


def expected(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32",
    mac: str | None = None,
) -> np.ndarray:
    """Raw samples ``(count, n_channels)`` in the wire type ``dtype`` for samples
    ``start … start+count-1`` of ``carrier`` (MAC ``mac``, default :func:`default_mac`)."""
    _check(carrier, n_channels, dtype)
    if start < 0 or count < 0:
        raise ValueError("start and count must be non-negative")
    t = table(carrier, mac or default_mac(carrier), n_channels, dtype)
    rows = (np.arange(count, dtype=np.int64) + start % PERIOD) % PERIOD
    return t[rows]


class ChunkSignal:
    """Fast generator of whole chunks for one carrier: ``block(first_chunk, count)`` returns
    the samples of chunks ``first_chunk … first_chunk+count-1`` (``count × per_chunk`` rows),
    identical to :func:`expected` (the same table, extended so a chunk never wraps)."""

    def __init__(self, carrier: int, n_channels: int, per_chunk: int, dtype: str = "f32",
                 mac: str | None = None) -> None:
        _check(carrier, n_channels, dtype)
        self.carrier = carrier
        self.n_channels = n_channels
        self.per_chunk = per_chunk
        self.dtype = dtype
        self.mac = mac or default_mac(carrier)
        base = table(carrier, self.mac, n_channels, dtype)
        ext = np.ascontiguousarray(base[np.arange(PERIOD + per_chunk) % PERIOD])
        self._ext = ext
        # window w = rows w … w+per_chunk-1 of the extended table: a chunk is one window
        row, item = ext.strides
        self._windows = as_strided(ext, shape=(PERIOD, per_chunk, n_channels),
                                   strides=(row, row, item), writeable=False)

    def _starts(self, first_chunk: int, count: int) -> np.ndarray:
        if first_chunk < 0 or count < 0:
            raise ValueError("first_chunk and count must be non-negative")
        step = self.per_chunk % PERIOD
        first = (first_chunk % PERIOD) * step % PERIOD
        return (first + np.arange(count, dtype=np.int64) * step) % PERIOD

    def block(self, first_chunk: int, count: int) -> np.ndarray:
        chunks = self._windows[self._starts(first_chunk, count)]
        return chunks.reshape(count * self.per_chunk, self.n_channels)

    def fill(self, first_chunk: int, count: int, out: np.ndarray) -> None:
        """Write the chunks' little-endian samples into ``out``, a ``(count, bytes per chunk)``
        uint8 array whose rows may be strided (the sample area of encoded messages)."""
        typed = out.view(SAMPLE_DTYPES[self.dtype]).reshape(count, self.per_chunk,
                                                            self.n_channels)
        typed[...] = self._windows[self._starts(first_chunk, count)]


def expected_decoded(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32",
    mac: str | None = None,
) -> np.ndarray:
    """Float64 values a client decodes (raw × wire gain + wire offset, default channel config)."""
    gain, offset = WIRE_SCALE[dtype]
    raw = expected(carrier, n_channels, start, count, dtype, mac)
    return raw.astype(np.float64) * gain + offset


def chunk_bytes(
    carrier: int, n_channels: int, start: int, count: int, dtype: str = "f32",
    mac: str | None = None,
) -> bytes:
    """The little-endian, sample-major ``DaqData.data`` for the given samples."""
    return expected(carrier, n_channels, start, count, dtype, mac).tobytes()


__all__ = [
    "PERIOD",
    "SAMPLE_DTYPES",
    "WIRE_SCALE",
    "ChunkSignal",
    "chunk_bytes",
    "default_mac",
    "expected",
    "expected_decoded",
    "mac_hash",
    "table",
]

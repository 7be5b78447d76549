"""What a recording says about its run (:class:`RunMeta`) and how values are stored.

Every recording — the API's in-memory result, ``.npz`` and ``.h5`` files of ``pybrid-run`` and
``pybrid-monitor`` — keeps sample ``i`` of a carrier at time ``start_index / sample_rate + i /
sample_rate`` after OP began (``start_index`` is 0 for a run recorded from its start): rows of
chunks that never arrived are NaN and listed in ``missing_chunks``.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import numpy as np

from pybrid.version import version

#: Raw sample types whose values (with unit gain) fit a float32 exactly: stored as float32.
NARROW_KINDS = frozenset({np.dtype("<f4"), np.dtype("<i2"), np.dtype("<u2"), np.dtype("i1"),
                          np.dtype("u1")})
#: What the values mean: machine units, where 1.0 is the computer's full scale.
UNIT = "machine units"


def storage_dtype(raw: np.dtype) -> np.dtype:
    """float32 for samples that arrive as float32 or narrower integers, float64 otherwise."""
    return np.dtype(np.float32) if np.dtype(raw) in NARROW_KINDS else np.dtype(np.float64)


def utc_text(seconds: float) -> str:
    """``seconds`` since the epoch (from the injected clock) as ISO 8601 UTC text."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@attrs.frozen
class RunMeta:
    """The facts a recording stores about its run (HDF5 root attributes, ``.npz`` ``meta``).

    ``start_time`` is seconds since the epoch on the client's (injected) clock when the run was
    started; ``sample_rate`` 0 means unknown (a monitor sees no run configuration);
    ``expected_samples`` 0 means unknown (then trailing lost chunks cannot be told).
    """

    run_id: str
    start_time: float
    sample_rate: int
    channels: int
    carriers: tuple[str, ...]
    expected_samples: int = 0
    software_version: str = attrs.field(factory=version)
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def start_time_utc(self) -> str:
        return utc_text(self.start_time)

    def attributes(self) -> dict[str, Any]:
        """Flat, JSON- and HDF5-friendly attributes (``extra`` entries included)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            run_id=self.run_id, start_time=self.start_time, start_time_utc=self.start_time_utc,
            sample_rate=self.sample_rate, channels=self.channels, carriers=list(self.carriers),
            expected_samples=self.expected_samples, software_version=self.software_version,
            unit=UNIT, time_unit="s", start_index=0,
        )
        return out


@attrs.frozen
class CarrierSummary:
    """What a recording notes per carrier when the run is over."""

    probes: tuple[int, ...]
    chunks: int
    missing_chunks: tuple[int, ...]
    duplicate_chunks: int
    rows: int
    chunk_size: int


def time_axis(rows: int, sample_rate: int, start_index: int = 0) -> np.ndarray:
    """Seconds after OP began of rows ``0 … rows-1`` (``arange`` when the rate is unknown)."""
    n = np.arange(start_index, start_index + rows, dtype=np.float64)
    return n / sample_rate if sample_rate > 0 else n

"""``.npz`` recordings: the same names as the HDF5 layout, written once the run is over.

Arrays ``<MAC>/samples`` (rows × channels, NaN rows for lost chunks), ``<MAC>/final``,
``<MAC>/probes``, ``<MAC>/missing_chunks``, ``<MAC>/start_index`` and ``meta`` (a JSON string:
the :class:`~pybrid.recording.meta.RunMeta` attributes plus per-carrier summaries under
``carrier_summaries``).  A zip archive cannot grow while a run streams: the rows are held in
RAM until :meth:`NpzRecorder.finish` (use ``.h5`` for long runs).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np

from pybrid.recording.meta import CarrierSummary, RunMeta
from pybrid.recording.sinks import MemorySink


def carrier_arrays(mac: str, samples: np.ndarray, final: np.ndarray | None,
                   probes: tuple[int, ...], missing: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The arrays of one carrier, named as in every recording."""
    out = {f"{mac}/samples": samples}
    if final is not None:
        out[f"{mac}/final"] = final
    out[f"{mac}/probes"] = np.asarray(probes, dtype=np.int64)
    out[f"{mac}/missing_chunks"] = np.asarray(missing, dtype=np.int64)
    out[f"{mac}/start_index"] = np.asarray(0, dtype=np.int64)
    return out


def write_npz(path: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` plus ``meta`` (as JSON) to ``path``."""
    arrays = dict(arrays, meta=np.array(json.dumps(meta)))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


@attrs.define(eq=False)
class NpzRecorder:
    """A sink that keeps rows in a :class:`MemorySink` and writes the ``.npz`` at the end."""

    path: str
    memory: MemorySink = attrs.field(factory=MemorySink)
    finals: dict[str, np.ndarray] = attrs.field(factory=dict)
    summaries: dict[str, CarrierSummary] = attrs.field(factory=dict)

    def begin(self, meta: RunMeta) -> None:
        self.memory.begin(meta)

    def write(self, carrier: str, start: int, values: np.ndarray, dtype: np.dtype) -> None:
        self.memory.write(carrier, start, values, dtype)

    def final(self, carrier: str, values: np.ndarray) -> None:
        self.finals[carrier] = values

    def finish(self, summaries: dict[str, CarrierSummary]) -> None:
        self.summaries = summaries
        meta = self.memory.meta
        attributes = meta.attributes() if meta is not None else {}
        attributes["carriers"] = list(summaries)
        arrays: dict[str, np.ndarray] = {}
        for mac, s in summaries.items():
            values = self.memory.samples(mac)
            if values is None:
                values = np.full((s.rows, meta.channels if meta else 0), np.nan, np.float32)
            elif values.shape[0] < s.rows:
                pad = np.full((s.rows - values.shape[0], values.shape[1]), np.nan, values.dtype)
                values = np.concatenate([values, pad])
            arrays.update(carrier_arrays(mac, values, self.finals.get(mac), s.probes,
                                         s.missing_chunks))
        attributes["carrier_summaries"] = {mac: attrs.asdict(s) for mac, s in summaries.items()}
        write_npz(self.path, arrays, attributes)

    def samples(self, carrier: str) -> np.ndarray | None:
        return self.memory.samples(carrier)

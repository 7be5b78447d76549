"""Recording of monitored samples into a numpy ``.npz`` file.

A :class:`Recorder` keeps the decoded chunks of each (carrier, run) and, on :meth:`save`,
writes one float64 ``(samples, channels)`` array per carrier and run, chunks in chunk order
(a duplicate chunk number keeps the first copy), plus ``<key>_end`` with the final values a
``run_data_end_message`` carried, and ``meta``: a JSON string describing every key.  Keys look
like ``c0_00-00-00-00-00-01_<run id>`` (carrier index, carrier path, run id).  Everything is
kept in memory until saved.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

import attrs
import numpy as np

from pybrid.monitor.decode import MonitorChunk

_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def record_key(carrier_index: int, carrier_path: str, run_id: str) -> str:
    """The array name for one carrier's samples of one run."""
    parts = [f"c{carrier_index}"]
    for text in (carrier_path, run_id):
        safe = _UNSAFE.sub("-", text).strip("-")
        if safe:
            parts.append(safe)
    return "_".join(parts)


@attrs.define
class _Track:
    carrier_index: int
    carrier_path: str
    run_id: str
    chunks: dict[int, np.ndarray] = attrs.Factory(dict)
    probes: tuple[int, ...] = ()
    end: np.ndarray | None = None
    duplicates: int = 0


@attrs.define
class Recorder:
    """Collects chunks per carrier and run; :meth:`save` writes them as one ``.npz``."""

    _tracks: dict[tuple[int, str, str], _Track] = attrs.Factory(dict)

    @property
    def empty(self) -> bool:
        return not self._tracks

    def add(self, chunk: MonitorChunk) -> None:
        key = (chunk.carrier_index, chunk.carrier_path, chunk.run_id)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(*key, probes=chunk.probes)
        if chunk.end:
            track.end = chunk.samples
        elif chunk.chunk in track.chunks:
            track.duplicates += 1
        else:
            track.chunks[chunk.chunk] = chunk.samples

    def arrays(self) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """``(arrays by key, metadata list)`` as :meth:`save` writes them."""
        arrays: dict[str, np.ndarray] = {}
        meta: list[dict[str, Any]] = []
        for track in self._tracks.values():
            key = record_key(track.carrier_index, track.carrier_path, track.run_id)
            numbers = sorted(track.chunks)
            width = len(track.probes)
            parts = [track.chunks[n] for n in numbers if track.chunks[n].shape[1] == width]
            data = np.concatenate(parts) if parts else np.zeros((0, width))
            arrays[key] = data
            if track.end is not None:
                arrays[key + "_end"] = track.end
            missing = (numbers[-1] + 1 - len(numbers)) if numbers else 0
            meta.append(
                {
                    "key": key,
                    "carrier_index": track.carrier_index,
                    "carrier_path": track.carrier_path,
                    "run_id": track.run_id,
                    "samples": int(data.shape[0]),
                    "channels": width,
                    "probes": list(track.probes),
                    "chunks": len(numbers),
                    "missing_chunks": missing,
                    "duplicate_chunks": track.duplicates,
                    "inconsistent_chunks": len(numbers) - len(parts),
                    "end": track.end is not None,
                }
            )
        return arrays, meta

    def save(self, file: str | IO[bytes]) -> list[dict[str, Any]]:
        """Write the ``.npz`` (to a path exactly as given, or an open binary file)."""
        arrays, meta = self.arrays()
        arrays["meta"] = np.array(json.dumps(meta))
        if isinstance(file, str):
            with open(file, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(file, **arrays)  # type: ignore[arg-type]
        return meta

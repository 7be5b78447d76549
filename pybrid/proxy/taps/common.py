"""What the feeds of several taps share: carrier indexes, yielding to the intake, states."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from pybrid.proto import pb
from pybrid.proxy.taps.base import RunInfo
from pybrid.wire import shm_frames as F

#: Data messages between two looks at the intakes' backlog (a system call per intake).
GAUGE_EVERY = 256
#: Backlog (fraction of the intake's receive buffer) at which a feed yields by default.
YIELD_AT = 0.5
#: protobuf final state -> the end flags byte (documented in pybrid.wire.shm_frames).
FINAL: dict[int, int] = {pb.DONE: F.END_DONE, pb.ERROR: F.END_ERROR}


@attrs.define(eq=False)
class Yielding:
    """Whether a feed skips run data now: from ``yield_at`` of the intakes' backlog until it
    is below half that again (the client's data first).  The feed counts down ``countdown``
    per data message and calls :meth:`look` at 0."""

    backlog: Callable[[], float] | None = None
    yield_at: float = YIELD_AT
    yielding: bool = False
    yields: int = 0  # episodes
    countdown: int = GAUGE_EVERY

    def look(self) -> None:
        self.countdown = GAUGE_EVERY
        if self.backlog is None or self.yield_at <= 0:
            self.countdown = 1 << 62
            return
        fill = self.backlog()
        if self.yielding:
            self.yielding = fill > self.yield_at / 2
        elif fill >= self.yield_at:
            self.yielding = True
            self.yields += 1


@attrs.define(eq=False)
class CarrierIndex:
    """A carrier's index by (lane, carrier path) from the metadata's carrier list
    (``index``, ``lane``, ``path``), called when needed; unknown carriers from 0x8000."""

    carriers: Callable[[], list[dict[str, Any]]] = list
    _index: dict[tuple[int, str], int] = attrs.Factory(dict)

    def __call__(self, lane: int, path: str) -> int:
        key = (lane, carrier_path(path))
        index = self._index.get(key)
        if index is None:
            for c in self.carriers():
                self._index.setdefault((c["lane"], c["path"]), c["index"])
            index = self._index.get(key)
            if index is None:
                index = self._index[key] = 0x8000 + len(self._index)
        return index


def carrier_path(path: str) -> str:
    """``/<carrier>`` of an entity path (``""`` for none)."""
    stripped = path.strip("/")
    return "/" + stripped.split("/", 1)[0] if stripped else ""


def chunks_seen(run: RunInfo, path: str) -> int:
    """Chunks the router saw of ``path``'s carrier so far (its numbers: 0 … n - 1)."""
    key = carrier_path(path)
    return max((n for p, n in run.chunks_seen.items()
                if carrier_path(p.decode(errors="replace")) == key), default=0)


def state_name(state: int) -> str:
    try:
        return str(pb.RunState.Name(state))  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def lane_carriers(lanes: Iterable[Any]) -> list[dict[str, Any]]:
    """The metadata's carrier list from the proxy's backend lanes: one entry per carrier
    path (``/<MAC>``) with its lane index, backend name and configured location."""
    out: list[dict[str, Any]] = []
    for lane in lanes:
        backend = getattr(lane, "backend", None)
        location = getattr(backend, "location", None)
        for path in getattr(lane, "carriers", ()) or ():
            out.append({"index": len(out), "lane": lane.index, "backend": lane.name,
                        "path": path, "mac": path.strip("/"),
                        "location": None if location is None else str(location)})
    return out

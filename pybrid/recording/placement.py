"""Where a chunk's rows belong: sample ``i`` always at row ``i``, whatever was lost.

Design note
-----------
``Run.chunk`` numbers the data messages 0, 1, 2 … per carrier (docs/protocol.md); every chunk
holds the same number of samples ``P`` except the last, which may be shorter.  No message says
``P``, so a :class:`ChunkPlacer` learns it from the chunks: ``P`` is the largest chunk seen, and
chunk ``j`` starts at row ``j × P``.  Only the short last chunk can mislead it — when it is the
first to arrive (all earlier ones lost or late).  The placer keeps that first chunk until a
second one confirms or corrects ``P``; on a correction the sink gets the first chunk again at
its right place and NaN where it was put (``relocations`` counts it).  Nothing else is kept: the
placer remembers only the chunk numbers seen.

After the run, :meth:`ChunkPlacer.missing` lists every chunk number not received below
``max(ceil(expected / P), highest + 1)``: lost chunks at the end are missing too when the run's
expected sample count is known.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np

#: Samples per chunk assumed when no chunk arrived at all (the devices' default).
DEFAULT_CHUNK = 100

Write = Callable[[int, np.ndarray], None]


@attrs.define(eq=False)
class ChunkPlacer:
    """Turns ``(chunk number, values)`` of one carrier into row writes; see the module note."""

    write: Write
    size: int = 0
    rows: int = 0
    top: int = -1
    duplicates: int = 0
    relocations: int = 0
    _seen: set[int] = attrs.field(factory=set)
    _first: tuple[int, np.ndarray] | None = None
    _confirmed: bool = False

    @property
    def chunks(self) -> int:
        return len(self._seen)

    def add(self, number: int, values: np.ndarray) -> bool:
        """Place one chunk; False (and nothing written) for a duplicate number."""
        if number in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(number)
        self.top = max(self.top, number)
        n = values.shape[0]
        if not self.size:
            self.size = max(n, 1)
            self._first = (number, values.copy())
        elif not self._confirmed:
            if n > self.size:
                self._relocate(n)
            self._confirmed = True
            self._first = None
        self._put(number * self.size, values)
        return True

    def _relocate(self, size: int) -> None:
        assert self._first is not None
        number, values = self._first
        self.write(number * self.size, np.full(values.shape, np.nan))
        self.size = size
        self.relocations += 1
        self._put(number * size, values)

    def _put(self, start: int, values: np.ndarray) -> None:
        self.write(start, values)
        self.rows = max(self.rows, start + values.shape[0])

    def expected_chunks(self, expected_samples: int) -> int:
        size = self.size or DEFAULT_CHUNK
        return -(-expected_samples // size) if expected_samples > 0 else 0

    def missing(self, expected_samples: int) -> np.ndarray:
        """Chunk numbers not received (int64), trailing ones included when the count is known."""
        total = max(self.expected_chunks(expected_samples), self.top + 1)
        absent = np.ones(total, dtype=bool)
        if self._seen:
            seen = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
            absent[seen[seen < total]] = False
        return np.flatnonzero(absent).astype(np.int64)

    def gaps(self) -> int:
        """Chunk numbers missing below the highest one received."""
        return self.top + 1 - len(self._seen)

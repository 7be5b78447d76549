"""Connections waiting for their first frame: at most ``--max-pending``, the oldest closed first.

Design note
-----------
A connection is *pending* from its accept until its first complete frame (with ``--auth``:
until it authenticates) or its first-frame deadline (:mod:`pybrid.proxy.clients.front`, 1a). It
holds no session slot, but a descriptor, a session object, a sender and two timers. A connect
flood — connections opened and closed, or opened and held silent — would otherwise hold as many
as the open-file limit allows for up to the deadline. :class:`PendingLimit` keeps them in
arrival order; when a new one would pass the limit, the *oldest* is closed (the front counts it
as ``pending_closed``). Closing the oldest rather than refusing the newest keeps a legitimate
client able to connect during a flood: it sends its first frame at once and leaves the pending
set, while a flooder must keep ``limit`` connections arriving faster than a client's first
frame to push it out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)

#: Connections waiting for their first frame at once, at most (``--max-pending``).
DEFAULT_MAX_PENDING = 1024


@attrs.define(eq=False)
class PendingLimit(Generic[K]):
    """Pending connections, oldest first; see the module note."""

    limit: int = DEFAULT_MAX_PENDING
    _waiting: dict[K, None] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, key: object) -> bool:
        return key in self._waiting

    def add(self, key: K) -> list[K]:
        """``key`` is waiting; return the oldest ones that must be closed to make room."""
        self._waiting[key] = None
        evicted: list[K] = []
        while len(self._waiting) > self.limit:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            evicted.append(oldest)
        return evicted

    def text(self) -> str:
        """What a closed connection is told."""
        return f"more than {self.limit} connections without a request: the oldest are closed"

    def discard(self, key: K) -> None:
        """``key`` sent its first frame, was closed or is gone."""
        self._waiting.pop(key, None)

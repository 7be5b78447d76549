"""Requests of each session forwarded to the backends (or held) and not yet answered.

One object, given to the dispatcher (which counts) and to the front (which stops reading a
session at ``max_outstanding`` and reads it again when told one settled) when they are built.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import attrs
from twisted.logger import Logger

K = TypeVar("K", bound=Hashable)


@attrs.define(eq=False)
class InFlight(Generic[K]):
    """Per-session count of unanswered forwarded requests; see the module note."""

    counts: dict[K, int] = attrs.field(factory=dict)
    _listeners: list[Callable[[K], None]] = attrs.field(factory=list)

    log = Logger()

    def count(self, session: K) -> int:
        return self.counts.get(session, 0)

    def subscribe(self, listener: Callable[[K], None]) -> None:
        """Call ``listener(session)`` after each answer."""
        self._listeners.append(listener)

    def began(self, session: K) -> None:
        self.counts[session] = self.counts.get(session, 0) + 1

    def settled(self, session: K) -> None:
        n = self.counts.get(session, 0) - 1
        if n > 0:
            self.counts[session] = n
        else:
            self.counts.pop(session, None)
        for listener in list(self._listeners):
            try:
                listener(session)
            except Exception:
                self.log.failure("a listener of settled requests failed")

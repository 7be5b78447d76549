"""The last runs that ended, as frozen records for the status page (and a later live view).

Design note
-----------
The :class:`~pybrid.proxy.runs.coordinator.RunCoordinator` records one :class:`RunRecord`
when a run's barrier finishes — every carrier DONE or ERROR, or the run cancelled because its
session ended or a backend refused the start — into a bounded :class:`RunHistory` (a deque:
the oldest record goes when a new one comes).  Times are the coordinator's injected clock.
The status collector passes the records on unchanged (``ServiceStatus.recent_runs`` →
``ProxyStatus.recent_runs``): the HTML page, ``/status.json``.

A record names the run as the client knows it (``id``) and as the backends know it
(``proxy_id``, the proxy's own id since issue 15), and the client by session id and peer.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import attrs

#: How a run ended: every carrier DONE; some carrier ERROR (the first one's reason); or the
#: proxy cancelled it (the session ended mid-run, the start was refused).
Result = Literal["done", "error", "aborted"]

#: Records kept by default.
HISTORY = 10


@attrs.frozen
class RunRecord:
    """One run that ended: whose, how long, how much data, how it ended."""

    #: The id the client named the run with.
    id: str
    #: The id the proxy gave the run towards the backends.
    proxy_id: str
    #: The session (its id) and the client's address, as the page names sessions.
    session: str
    peer: str
    #: Proxy clock: the start was registered; the last carrier finished.
    started: float
    ended: float
    carriers: int
    #: Chunk positions reached, summed over the carriers (missing ones included).
    chunks: int
    #: Chunks never received (lost before the proxy), summed over the carriers.
    missing: int
    result: Result
    #: Why it failed or was aborted; None when done.
    reason: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


@attrs.define
class RunHistory:
    """The last ``capacity`` :class:`RunRecord` s, oldest first."""

    capacity: int = HISTORY
    _records: deque[RunRecord] = attrs.field(init=False)
    #: Runs recorded since start (also those no longer kept).
    total: int = 0

    def __attrs_post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"a run history keeps at least one run, not {self.capacity}")
        self._records = deque(maxlen=self.capacity)

    def add(self, record: RunRecord) -> None:
        self._records.append(record)
        self.total += 1

    def records(self) -> tuple[RunRecord, ...]:
        return tuple(self._records)


__all__ = ["HISTORY", "Result", "RunHistory", "RunRecord"]

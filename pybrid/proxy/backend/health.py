"""Cluster health: may a session own the backends now?

Design note
-----------
Each :class:`~pybrid.proxy.backend.lane.BackendLane` knows its own health (READY or not: connected,
handshake done, heard from within ``unhealthy_after``).  The cluster is *ready* — the scheduler
may promote a session — only when

* every backend lane is READY (a late backend joins when it appears: its lane keeps
  reconnecting, and its readiness promotes the head of the queue), and
* the backends' cached descriptions do not contradict each other
  (:func:`pybrid.proxy.backend.cache.conflicts`: one carrier path reported by two backends, one
  location given to two carriers).  Such a cluster is refused, not served half-right: the
  reason is logged as an error naming both backends (once, until it changes) and the cached
  extract answers with it.

Losing a backend while a session is active is the service's business: the session's runs fail
on that backend's carriers (:mod:`pybrid.proxy.runs.coordinator`), then it gets an id-less
``error_message`` "Cluster degraded: backend HOST:PORT lost (…)" and is closed
(:meth:`~pybrid.proxy.clients.scheduler.Scheduler.degrade`; ``Timing.degrade_grace`` later
if a run was failing, so that the client takes in the run errors first); the next one waits
for readiness.

**One verdict.**  :func:`readiness` is the only judge: the scheduler promotes a session when
its :class:`Readiness` is ready, and the status page, ``/status.json`` and
``pybrid_proxy_healthy`` show that same record (``ServiceStatus.readiness``), so a cluster the
scheduler refuses is never shown as "all backends ready".
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.logger import Logger

from pybrid.proxy.backend.cache import conflicts
from pybrid.proxy.backend.lane import BackendLane
from pybrid.proxy.backend.model import Readiness


def readiness(lanes: Sequence[BackendLane]) -> Readiness:
    """May a session own the backends now?  The one function the scheduler and the status
    page both ask (see the module note)."""
    return Readiness(
        down=tuple(f"backend {lane.name} is {lane.state.value}" for lane in lanes
                   if not lane.healthy),
        conflicts=tuple(conflicts(lanes)), empty=not lanes,
    )


def degraded_text(lane: BackendLane, reason: str) -> str:
    """What a session is told when ``lane`` is lost."""
    return f"Cluster degraded: backend {lane.name} lost ({reason})"


@attrs.define(eq=False)
class ClusterHealth:
    """Readiness of the whole cluster for a session; see the module note."""

    lanes: Sequence[BackendLane]
    _reported: tuple[str, ...] = ()

    log = Logger()

    def verdict(self) -> Readiness:
        return readiness(self.lanes)

    def ready(self) -> bool:
        return self.verdict().ready

    def problems(self) -> list[str]:
        """Why the cluster is not ready (empty when it is), one sentence each."""
        return list(self.verdict().problems)

    def check(self) -> list[str]:
        """Log conflicts once when they appear (as errors) and when they are gone."""
        found = tuple(conflicts(self.lanes))
        if found != self._reported:
            for text in found:
                if text not in self._reported:
                    self.log.error("backends conflict, no session will be served: {problem}",
                                   problem=text)
            if not found:
                self.log.info("backend conflicts resolved")
            self._reported = found
        return list(found)

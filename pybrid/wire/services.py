"""A part with ``start()`` and ``stop()`` as a child service of a ``MultiService``."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer


class Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> Any: ...


class PartService(service.Service):
    """Starts ``part`` with its parent, stops it with its parent (waiting for what ``stop``
    returns, a Deferred or nothing).  ``privileged``: start it in ``privilegedStartService``
    (a part that binds a socket, so that a failure stops start-up before the daemon forks)."""

    def __init__(self, part: Startable, name: str | None = None, *,
                 privileged: bool = False) -> None:
        self.part = part
        self.privileged = privileged
        if name is not None:
            self.setName(name)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.privileged:
            self.part.start()

    def startService(self) -> None:
        super().startService()
        if not self.privileged:
            self.part.start()

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        return defer.maybeDeferred(self.part.stop)

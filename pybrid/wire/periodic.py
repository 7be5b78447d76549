"""Periodic work on the injected clock, with one lifecycle for every user.

:class:`Periodic` wraps :class:`twisted.internet.task.LoopingCall`: ``start`` (idempotent; an
interval of 0 or less means "never"), ``stop`` (idempotent, safe before ``start``), and a body
that cannot kill the loop — an exception is logged with the job's name and the next call comes
as planned.  A bare ``LoopingCall`` stops for good at its body's first exception, silently
unless someone holds its Deferred.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


@attrs.define(eq=False)
class Periodic:
    """Calls ``work()`` every ``interval`` seconds of ``clock`` between :meth:`start` and
    :meth:`stop` (first call at once if ``now``, else after one interval)."""

    clock: IReactorTime
    interval: float
    work: Callable[[], object]
    #: Names the job in the log line of a failed call.
    what: str
    now: bool = False
    _loop: task.LoopingCall | None = attrs.field(init=False, default=None)

    log = Logger()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        if self._loop is not None or self.interval <= 0:
            return
        loop = self._loop = task.LoopingCall(self._call)
        loop.clock = self.clock
        loop.start(self.interval, now=self.now)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def _call(self) -> None:
        try:
            self.work()
        except Exception:
            self.log.failure("{what} failed; it runs again in {interval:g} s", what=self.what,
                             interval=self.interval)


__all__ = ["Periodic"]

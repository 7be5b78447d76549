"""Deferreds waiting for one event: the one place that keeps a list of them.

:class:`OneShotObserver` replaces the hand-written ``waiters, self._waiters = self._waiters, []``
loops: :meth:`~OneShotObserver.when_fired` before or after :meth:`~OneShotObserver.fire` gives
the result (a late waiter fires at once); :meth:`~OneShotObserver.fire_waiting` serves a
condition that can come back (fires who waits now, remembers nothing).  A waiter cancelled by
its caller leaves the list; one given a ``timeout`` fails with ``defer.TimeoutError`` on the
observer's clock.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

T = TypeVar("T")

_NOT_YET: Any = object()


@attrs.define(eq=False)
class OneShotObserver(Generic[T]):
    """Waiters for one result; see the module note."""

    #: For :meth:`when_fired` timeouts (None: no timeouts possible).
    clock: IReactorTime | None = None
    _waiters: list[defer.Deferred[T]] = attrs.field(init=False, factory=list)
    _result: Any = attrs.field(init=False, default=_NOT_YET)

    @property
    def fired(self) -> bool:
        return self._result is not _NOT_YET

    @property
    def waiting(self) -> int:
        """How many Deferreds wait now."""
        return len(self._waiters)

    def when_fired(self, timeout: float | None = None) -> defer.Deferred[T]:
        """A Deferred with the result: at once once fired, else when :meth:`fire` is called."""
        if self._result is not _NOT_YET:
            return defer.fail(self._result) if isinstance(self._result, Failure) else (
                defer.succeed(self._result))
        if timeout is not None and self.clock is None:
            raise ValueError("a timeout needs the observer's clock")
        d: defer.Deferred[T] = defer.Deferred(self._cancelled)
        self._waiters.append(d)
        if timeout is not None and self.clock is not None:
            d.addTimeout(timeout, self.clock)
        return d

    def fire(self, result: T | Failure) -> None:
        """Remember ``result`` and give it to every waiter (once; later calls are errors)."""
        if self._result is not _NOT_YET:
            raise RuntimeError("this observer has fired already")
        self._result = result
        self.fire_waiting(result)

    def fire_waiting(self, result: T | Failure) -> None:
        """Give ``result`` to those waiting now, without remembering it."""
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def forget(self, d: defer.Deferred[Any]) -> None:
        """Drop a waiter nobody waits for any more (it never fires)."""
        if d in self._waiters:
            self._waiters.remove(d)

    def _cancelled(self, d: defer.Deferred[Any]) -> None:
        self.forget(d)

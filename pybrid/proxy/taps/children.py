"""What the proxy's child processes share (the NATS bridge, the live process): restarting
and stopping one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer, error
from twisted.logger import Logger

_log = Logger()
#: Seconds a child has after SIGTERM before it gets SIGKILL.
GRACE = 5.0


def terminate(reactor: Any, transport: Any, ended: defer.Deferred[None],
              grace: float = GRACE) -> defer.Deferred[None]:
    """SIGTERM to the child, SIGKILL after ``grace`` seconds; fires once it ended."""
    try:
        transport.signalProcess("TERM")
    except error.ProcessExitedAlready:
        return defer.succeed(None)
    killer = reactor.callLater(grace, _kill, transport)

    def done(result: Any) -> Any:
        if killer.active():
            killer.cancel()
        return result

    return ended.addBoth(done)


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess("KILL")
    except error.ProcessExitedAlready:
        pass


class RestartingChild:
    """Restarts with backoff for a service that runs a child process (the NATS bridge, the
    live process); the fields are the service's own."""

    reactor: Any
    backoff: float
    backoff_max: float
    restarts: int
    _delay: float
    _retry: Any
    _stopping: bool

    if TYPE_CHECKING:
        def _spawn(self) -> None: ...

    def __attrs_post_init__(self) -> None:
        self._delay = self.backoff

    def startService(self) -> None:
        super().startService()  # type: ignore[misc]  # the Service beside us in the MRO
        self._stopping = False
        self._spawn()

    def _restart_later(self, what: str, reason: Any) -> None:
        """``what`` exited: spawn it again after the current delay, which doubles."""
        self.restarts += 1
        _log.warn("{what} exited ({reason}); restarting in {delay:g} s", what=what,
                  reason=str(reason), delay=self._delay)
        self._retry = self.reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, self.backoff_max)

    def _stop_restarting(self) -> None:
        self._stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()

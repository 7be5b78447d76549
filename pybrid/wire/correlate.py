"""Request/response correlation by ``MessageV1.id`` with timeouts on an injected clock."""

from __future__ import annotations

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from pybrid.proto import pb


class RequestTimeout(Exception):
    """No response to a request within its timeout."""

    def __init__(self, kind: str, request_id: str, seconds: float, peer: str = "") -> None:
        self.kind = kind
        self.request_id = request_id
        self.seconds = seconds
        self.peer = peer
        where = f" from {peer}" if peer else ""
        super().__init__(f"no reply to {kind} (id {request_id}){where} within {seconds:g} s")


class ConnectionGone(Exception):
    """The connection closed while a request was outstanding."""


@attrs.define
class _Pending:
    kind: str
    deferred: defer.Deferred[pb.Envelope]
    timer: IDelayedCall


@attrs.define
class RequestTracker:
    """Matches responses to outstanding requests by ``MessageV1.id``.

    ``expect(id, kind)`` returns a Deferred that fires with the response Envelope, or fails
    with :class:`RequestTimeout` after ``timeout`` seconds of ``clock`` time.  ``resolve``
    is called with every incoming v1 Envelope and returns True when it answered a request.
    ``fail_all`` errbacks everything outstanding (call it from ``connectionLost``).
    """

    clock: IReactorTime
    timeout: float = 5.0
    peer: str = ""
    _pending: dict[str, _Pending] = attrs.field(factory=dict)

    def expect(self, request_id: str, kind: str, timeout: float | None = None) -> defer.Deferred:
        if request_id in self._pending:
            raise ValueError(f"request id {request_id} is already outstanding")
        seconds = self.timeout if timeout is None else timeout

        def cancel(d: defer.Deferred) -> None:
            self._forget(request_id)

        d: defer.Deferred[pb.Envelope] = defer.Deferred(cancel)
        timer = self.clock.callLater(seconds, self._expire, request_id, seconds)
        self._pending[request_id] = _Pending(kind, d, timer)
        return d

    def resolve(self, envelope: pb.Envelope) -> bool:
        msg = envelope.message_v1
        if not msg.HasField("id"):
            return False
        pending = self._forget(msg.id)
        if pending is None:
            return False
        pending.deferred.callback(envelope)
        return True

    def outstanding(self) -> int:
        return len(self._pending)

    def fail_all(self, reason: Exception) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.timer.active():
                p.timer.cancel()
            p.deferred.errback(reason)

    def _forget(self, request_id: str) -> _Pending | None:
        pending = self._pending.pop(request_id, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()
        return pending

    def _expire(self, request_id: str, seconds: float) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.deferred.errback(RequestTimeout(pending.kind, request_id, seconds, self.peer))

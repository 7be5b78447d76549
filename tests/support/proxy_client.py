"""A minimal real-socket client for proxy integration tests and benchmarks.

:func:`connect` opens a TCP connection and returns a :class:`FrameClient`, which records every
Envelope it receives; :meth:`FrameClient.request` sends a v1 request and fires with the reply
carrying its id; :meth:`FrameClient.expect` waits for the next frame matching a predicate.
Every wait has a timeout on the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import EnvelopeReceiver

Predicate = Callable[[pb.Envelope], bool]


def kind_is(*kinds: str) -> Predicate:
    return lambda env: messages.kind_of(env) in kinds


class FrameClient(EnvelopeReceiver):
    """Records received Envelopes; see the module note."""

    def __init__(self, reactor: Any, timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.frames: list[pb.Envelope] = []
        self.times: list[float] = []
        self._taken: set[int] = set()
        self._waiters: list[tuple[Predicate, defer.Deferred]] = []
        self.closed: defer.Deferred = defer.Deferred()
        self.on_connect: Callable[[FrameClient], None] | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        if self.on_connect is not None:
            self.on_connect(self)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        index = len(self.frames)
        self.frames.append(envelope)
        self.times.append(self.reactor.seconds())
        for waiter in list(self._waiters):
            predicate, d = waiter
            if not d.called and predicate(envelope):
                self._waiters.remove(waiter)
                self._taken.add(index)
                d.callback(envelope)
                return

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def expect(self, predicate: Predicate, timeout: float | None = None) -> defer.Deferred:
        """The first frame not yet returned by ``expect`` that matches ``predicate``."""
        for index, env in enumerate(self.frames):
            if index not in self._taken and predicate(env):
                self._taken.add(index)
                return defer.succeed(env)
        d: defer.Deferred = defer.Deferred()
        waiter = (predicate, d)
        self._waiters.append(waiter)

        def forget(result: Any) -> Any:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return result

        d.addBoth(forget)
        return d.addTimeout(self.timeout if timeout is None else timeout, self.reactor)

    def request(self, kind: str, body: Any = None, timeout: float | None = None) -> defer.Deferred:
        rid, env = messages.request(kind, body)
        d = self.expect(lambda e: messages.request_id(e) == rid, timeout)
        self.sendEnvelope(env)
        return d

    def close(self) -> defer.Deferred:
        if self.transport is not None and not self.closed.called:
            self.transport.loseConnection()
        return self.closed.addTimeout(self.timeout, self.reactor)


class _Factory(protocol.Factory):
    noisy = False

    def __init__(self, reactor: Any, on_connect: Callable[[FrameClient], None] | None) -> None:
        self.reactor = reactor
        self.on_connect = on_connect

    def buildProtocol(self, addr: Any) -> FrameClient:
        client = FrameClient(self.reactor)
        client.on_connect = self.on_connect
        return client


async def connect(
    reactor: Any, port: int, on_connect: Callable[[FrameClient], None] | None = None,
    timeout: float = 5.0,
) -> FrameClient:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=int(timeout))
    d = endpoint.connect(_Factory(reactor, on_connect))
    return await d.addTimeout(timeout, reactor)

"""A deliberately small device-protocol client for loopback tests of the simulated device.

It correlates replies by id (:class:`~pybrid.wire.correlate.RequestTracker`), collects run
notifications from TCP and from its own UDP port, and fires :attr:`MiniClient.finished` when
every expected carrier reported DONE or ERROR.  Every wait has a timeout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import Message
from twisted.internet import defer, protocol

from pybrid import samples
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.correlate import RequestTracker
from pybrid.wire.framing import EnvelopeReceiver, parse_datagram

RUN_KINDS = frozenset({"run_state_change_message", "run_data_message", "run_data_end_message"})


class _Datagrams(protocol.DatagramProtocol):
    def __init__(self, client: MiniClient) -> None:
        self.client = client

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.client.udp_datagrams += 1
        self.client.notification(parse_datagram(datagram), "udp")


class MiniClient(EnvelopeReceiver):
    """Requests with timeouts, notifications by lane, DONE/ERROR tracking per carrier."""

    def __init__(self, reactor: Any, timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.tracker = RequestTracker(reactor, timeout=timeout)
        self.notifications: list[tuple[str, pb.Envelope]] = []
        self.udp_datagrams = 0
        self.udp_port: Any = None
        self.lost: defer.Deferred = defer.Deferred()
        self.finished: defer.Deferred = defer.Deferred()
        self.expect_carriers = 1
        self._ended: set[str] = set()

    @classmethod
    async def connect(cls, reactor: Any, port: int, timeout: float = 30.0) -> MiniClient:
        client = cls(reactor, timeout)
        await protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port, timeout=timeout
        )
        return client

    def request(self, kind: str, body: Message | None = None) -> defer.Deferred:
        rid, env = messages.request(kind, body)
        d = self.tracker.expect(rid, kind)
        self.sendEnvelope(env)
        return d

    async def open_udp(self) -> int:
        self.udp_port = self.reactor.listenUDP(0, _Datagrams(self), interface="127.0.0.1",
                                               maxPacketSize=65536)
        return int(self.udp_port.getHost().port)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        if messages.kind_of(envelope) in RUN_KINDS:
            self.notification(envelope, "tcp")
        else:
            self.tracker.resolve(envelope)

    def notification(self, env: pb.Envelope, lane: str) -> None:
        self.notifications.append((lane, env))
        if messages.kind_of(env) == "run_state_change_message":
            m = env.message_v1.run_state_change_message
            if m.new_ in (pb.DONE, pb.ERROR):
                self._ended.add(m.entity.path)
                if len(self._ended) >= self.expect_carriers and not self.finished.called:
                    self.finished.callback(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.tracker.fail_all(ConnectionError("connection lost"))
        if not self.lost.called:
            self.lost.callback(None)

    async def close(self) -> None:
        if self.udp_port is not None:
            await defer.maybeDeferred(self.udp_port.stopListening)
        if self.transport is not None and not self.lost.called:
            self.transport.loseConnection()
            await self.lost.addTimeout(5, self.reactor)

    # -- results --------------------------------------------------------------------------

    def of_kind(self, kind: str, lane: str | None = None) -> list[pb.Envelope]:
        return [e for ln, e in self.notifications
                if messages.kind_of(e) == kind and (lane is None or ln == lane)]

    def chunks(self, path: str) -> list[pb.RunDataMessage]:
        return [e.message_v1.run_data_message for e in self.of_kind("run_data_message")
                if e.message_v1.run_data_message.entity.path == path]

    def values(self, path: str) -> np.ndarray:
        """Decoded samples of carrier ``path`` in chunk order."""
        chunks = sorted(self.chunks(path), key=lambda m: m.run.chunk)
        return np.concatenate([samples.decode(m.data) for m in chunks])

    def states(self) -> list[tuple[str, str, str]]:
        out = []
        for e in self.of_kind("run_state_change_message"):
            m = e.message_v1.run_state_change_message
            out.append((pb.RunState.Name(m.old), pb.RunState.Name(m.new_), m.entity.path))
        return out


__all__ = ["MiniClient"]

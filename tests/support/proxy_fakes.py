"""Fakes for the proxy's unit tests: a memory reactor with UDP, frame readers, fake backends.

Everything is synchronous: :class:`~support.reactor.FakeReactor` is the memory reactor with
UDP; :class:`FakeBackend` plays a device on the far side of a lane's StringTransport;
:func:`~support.frames.read_frames` parses what a protocol wrote (both re-exported here).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import frame
from support.frames import read_frames
from support.reactor import FakeReactor


def carrier_entity(mac: str, index: int = 0) -> pb.Entity:
    entity = pb.Entity(id=f"/{mac}", class_=pb.Entity.CARRIER, type=1)
    entity.location_v0.stack = 0
    entity.location_v0.carrier = index
    return entity


def spec_reply(rid: str, macs: list[str]) -> pb.Envelope:
    """An extract reply like the reference mock's: a DEVICE root holding carriers."""
    root = pb.Entity(id=f"/{macs[0]}", class_=pb.Entity.DEVICE)
    for i, mac in enumerate(macs):
        root.children.append(carrier_entity(mac, i))
    response = pb.ExtractResponse()
    response.module.items.add().entity_specification.entity.CopyFrom(root)
    return messages.v1("extract_response", response, id=rid)


def as_device(router: Any, env: pb.Envelope) -> pb.Envelope:
    """``env`` as the device would send it: a run the client named gets the proxy's id for it
    (the id the device was given in its start_run), looked up in ``router``'s registered runs.

    Tests write run traffic with the client's run ids; a real device echoes what it was sent.
    An id no registered run has as its client id is left as it is.
    """
    msg = env.message_v1
    kind = msg.WhichOneof("kind") if env.HasField("message_v1") else None
    if router is None or kind not in ("run_data_message", "run_data_end_message",
                                      "run_state_change_message"):
        return env
    body = getattr(msg, kind)
    for track in getattr(router, "runs", {}).values():
        if body.run.id and track.client_id == body.run.id and track.run_id != body.run.id:
            out = pb.Envelope()
            out.CopyFrom(env)
            getattr(out.message_v1, kind).run.id = track.run_id
            return out
    return env


def device_bytes(router: Any, payload: bytes) -> bytes:
    """:func:`as_device` for a datagram's bytes (damaged ones too: an id of the same length
    is replaced in place; otherwise a parseable message is re-serialized)."""
    for track in getattr(router, "runs", {}).values():
        client, own = track.client_id.encode(), track.run_id.encode()
        if client != own and client in payload:
            if len(client) == len(own):
                return payload.replace(client, own)
            env = pb.Envelope()
            try:
                env.ParseFromString(payload)
            except Exception:
                return payload
            return as_device(router, env).SerializeToString()
    return payload


@attrs.define(eq=False)
class FakeBackend:
    """The device end of one lane connection: reads what the lane sent, answers it."""

    proto: Any
    transport: StringTransport
    macs: list[str] = attrs.field(factory=lambda: ["00-00-00-00-00-00"])
    accept_udp: bool = True
    inbox: list[pb.Envelope] = attrs.field(factory=list)

    def received(self) -> list[pb.Envelope]:
        self.inbox.extend(read_frames(self.transport))
        return self.inbox

    def take(self, kind: str) -> pb.Envelope:
        """Remove and return the first received message of ``kind``."""
        self.received()
        for i, env in enumerate(self.inbox):
            if messages.kind_of(env) == kind:
                return self.inbox.pop(i)
        raise AssertionError(f"no {kind} received; got {[messages.kind_of(e) for e in self.inbox]}")

    def send(self, env: pb.Envelope) -> None:
        router = getattr(getattr(self.proto, "lane", None), "router", None)
        self.proto.dataReceived(frame(as_device(router, env).SerializeToString()))

    def answer(self, kind: str, reply_kind: str, body: Any = None) -> pb.Envelope:
        request = self.take(kind)
        self.send(messages.v1(reply_kind, body, id=request.message_v1.id))
        return request

    def handshake(self) -> None:
        """Answer extract, reset and the UDP request the way a healthy device does."""
        request = self.take("extract_command")
        self.send(spec_reply(request.message_v1.id, self.macs))
        self.answer("reset_command", "reset_response")
        if self.accept_udp:
            self.answer("udp_data_streaming_command", "success_message")
        else:
            self.answer("udp_data_streaming_command", "udp_data_streaming_refused_response")


def connect_backend(reactor: FakeReactor, index: int = -1, **kwargs: Any) -> FakeBackend:
    """Complete the lane's pending ``connectTCP`` number ``index`` with a StringTransport."""
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        peerAddress=IPv4Address("TCP", host, port),
    )
    proto.makeConnection(transport)
    return FakeBackend(proto, transport, **kwargs)


# -- a whole proxy on a memory reactor ------------------------------------------------------


@attrs.define(eq=False)
class FakeClient:
    """A client connection to a ProxyService, driven through its StringTransport."""

    proto: Any
    transport: StringTransport
    inbox: list[pb.Envelope] = attrs.field(factory=list)

    def send(self, env: pb.Envelope) -> None:
        router = getattr(getattr(self.proto, "lane", None), "router", None)
        self.proto.dataReceived(frame(as_device(router, env).SerializeToString()))

    def request(self, kind: str, body: Any = None, id: str | None = "req-1") -> None:
        self.send(messages.v1(kind, body, id=id))

    def frames(self) -> list[pb.Envelope]:
        """Everything received since the last call."""
        new = read_frames(self.transport)
        self.inbox.extend(new)
        return new

    def kinds(self) -> list[str]:
        return [messages.kind_of(e) for e in self.frames()]

    def close(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


def connect_client(service: Any, port: int = 41000) -> FakeClient:
    addr = IPv4Address("TCP", "127.0.0.1", port)
    proto = service.factory.buildProtocol(addr)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 5732), peerAddress=addr)
    proto.makeConnection(transport)
    return FakeClient(proto, transport)


def make_proxy(
    reactor: FakeReactor,
    carriers: list[list[str]] | None = None,
    accept_udp: bool = True,
    **config: Any,
) -> tuple[Any, list[FakeBackend]]:
    """A started ProxyService with one healthy FakeBackend per entry of ``carriers``."""
    from pybrid.proxy.backendfile import Backend
    from pybrid.proxy.config import ProxyConfig
    from pybrid.proxy.service import ProxyService

    carriers = carriers or [["00-00-00-00-00-00"]]
    backends = tuple(Backend("127.0.0.1", 6000 + i) for i in range(len(carriers)))
    config.setdefault("interface", "127.0.0.1")
    config.setdefault("port", 0)
    service = ProxyService(ProxyConfig(backends=backends, **config), reactor)
    service.startService()
    fakes = []
    for i, macs in enumerate(carriers):
        fake = connect_backend(reactor, index=i, macs=macs, accept_udp=accept_udp)
        fake.handshake()
        fakes.append(fake)
    return service, fakes

"""Drive a :class:`~pybrid.device.SimulatedDevice` synchronously: ``task.Clock`` for time,
``StringTransport`` for the client connection and a recording fake for UDP sockets."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import frame, parse_datagram
from support.frames import split_frames


@attrs.define
class FakeDatagramSender:
    """Records what the device sends on one UDP lane."""

    local: str
    peer: str
    port: int
    datagrams: list[bytes] = attrs.field(factory=list)
    closed: bool = False
    fail: OSError | None = None

    def send(self, data: Any) -> int:
        if self.fail is not None:
            raise self.fail
        self.datagrams.append(bytes(data))
        return len(data)

    def close(self) -> None:
        self.closed = True

    def envelopes(self) -> list[pb.Envelope]:
        return [parse_datagram(d) for d in self.datagrams]


@attrs.define
class Harness:
    """One device on a ``task.Clock`` with one connected client."""

    config: DeviceConfig = attrs.field(factory=DeviceConfig)
    clock: Clock = attrs.field(factory=Clock)
    senders: list[FakeDatagramSender] = attrs.field(factory=list)
    device: SimulatedDevice = attrs.field(init=False)
    transport: StringTransport = attrs.field(init=False)
    protocol: Any = attrs.field(init=False)
    _read: int = 0

    def __attrs_post_init__(self) -> None:
        self.device = SimulatedDevice(reactor=self.clock, config=self.config,
                                      udp_opener=self._open_udp)
        self.protocol, self.transport = self.connect()

    def _open_udp(self, local: str, peer: str, port: int) -> FakeDatagramSender:
        s = FakeDatagramSender(local, peer, port)
        self.senders.append(s)
        return s

    def connect(self) -> tuple[Any, StringTransport]:
        proto = self.device.factory().buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5732),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + len(self.device.sessions)),
        )
        proto.makeConnection(transport)
        return proto, transport

    def send(self, env: pb.Envelope, protocol: Any = None) -> None:
        (protocol or self.protocol).dataReceived(frame(env.SerializeToString()))

    def request(self, kind: str, body: Any = None) -> str:
        rid, env = messages.request(kind, body)
        self.send(env)
        return rid

    def received(self) -> list[pb.Envelope]:
        """Frames the device wrote on the control connection since the last call."""
        data = self.transport.value()
        new, self._read = data[self._read :], len(data)
        return split_frames(new)

    def reply(self, kind: str, body: Any = None) -> pb.Envelope:
        """Send a request and return the single frame that answers it."""
        rid = self.request(kind, body)
        frames = [f for f in self.received() if messages.request_id(f) == rid]
        assert len(frames) == 1, f"expected one reply to {kind}, got {frames}"
        return frames[0]

    def udp(self) -> FakeDatagramSender:
        assert self.senders, "no UDP lane was opened"
        return self.senders[-1]


def start_run_command(
    *,
    run_id: str = "run-0001",
    channels: int = 2,
    rate: int = 10_000,
    op_ns: int = 10_000_000,
    ic_ns: int = 0,
    sample_op: bool = True,
    sample_op_end: bool = True,
) -> pb.StartRunCommand:
    return pb.StartRunCommand(
        run=pb.Run(id=run_id),
        run_config=pb.RunConfig(
            op_time=pb.Time(value=op_ns, prefix=pb.NANO),
            ic_time=pb.Time(value=ic_ns, prefix=pb.NANO),
        ),
        daq_config=pb.DaqConfig(num_channels=channels, sample_rate=rate, sample_op=sample_op,
                                sample_op_end=sample_op_end),
    )


def kinds(envs: list[pb.Envelope]) -> list[str]:
    return [messages.kind_of(e) for e in envs]


def states(envs: list[pb.Envelope]) -> list[tuple[str, str, str]]:
    """``(old, new, entity)`` names of the state changes among ``envs``."""
    out = []
    for e in envs:
        if messages.kind_of(e) == "run_state_change_message":
            m = e.message_v1.run_state_change_message
            out.append((pb.RunState.Name(m.old), pb.RunState.Name(m.new_),
                        m.entity.path if m.HasField("entity") else ""))
    return out


def data_messages(envs: list[pb.Envelope]) -> list[pb.RunDataMessage]:
    return [e.message_v1.run_data_message for e in envs
            if messages.kind_of(e) == "run_data_message"]


__all__ = [
    "FakeDatagramSender",
    "Harness",
    "data_messages",
    "kinds",
    "split_frames",
    "start_run_command",
    "states",
]

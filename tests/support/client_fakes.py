"""In-memory peers for the client's unit tests: a clock reactor with UDP, a wired Computer,
and helpers to read the frames the client wrote and to feed it replies and notifications."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pybrid import samples
from pybrid.client.computer import Computer
from pybrid.client.control import ClientProtocol, ControlChannel
from pybrid.client.topology import Carrier
from pybrid.proto import pb
from pybrid.wire import messages
from support.frames import read_frames
from support.reactor import FakeReactor


def sent(transport: StringTransport) -> list[pb.Envelope]:
    """Every Envelope written to ``transport`` since the last call (then clears it)."""
    return read_frames(transport)


@attrs.define
class Wired:
    """A Computer whose control connection writes into a StringTransport."""

    reactor: FakeReactor
    computer: Computer
    control: ControlChannel
    protocol: ClientProtocol
    transport: StringTransport
    last_run: Any = None

    def sent(self) -> list[pb.Envelope]:
        return sent(self.transport)

    def feed(self, env: pb.Envelope) -> None:
        self.protocol.dataReceived(_frame(env))

    def reply(self, request: pb.Envelope, kind: str, body: Any = None) -> None:
        self.feed(messages.v1(kind, body, id=messages.request_id(request)))


def _frame(env: pb.Envelope) -> bytes:
    from pybrid.wire import frame

    return frame(env.SerializeToString())


def wired_computer(
    carriers: tuple[str, ...] = ("00-00-00-00-00-0A",),
    *,
    data_lane: str = "auto",
    busy_retry: float = 0.2,
    busy_timeout: float = 60.0,
    request_timeout: float = 5.0,
) -> Wired:
    reactor = FakeReactor()
    control = ControlChannel(
        clock=reactor, peer="dev:5732", request_timeout=request_timeout, busy_retry=busy_retry,
        busy_timeout=busy_timeout,
    )
    proto = ClientProtocol(control)
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 5732),
    )
    proto.makeConnection(transport)
    computer = Computer(
        reactor=reactor,
        control=control,
        target="dev:5732",
        carriers=tuple(
            Carrier(mac=m, entity=pb.Entity(id="/" + m), location=(0, i))
            for i, m in enumerate(carriers)
        ),
        specification=pb.Module(),
        peer_host="127.0.0.1",
        local_host="127.0.0.1",
        data_lane_mode=data_lane,
    )
    return Wired(reactor, computer, control, proto, transport)


def state(
    run_id: str, old: int, new: int, carrier: str | None = None, reason: str = ""
) -> pb.Envelope:
    msg = pb.RunStateChangeMessage(old=old, new_=new, reason=reason)
    msg.run.id = run_id
    if carrier is not None:
        msg.entity.path = "/" + carrier
    return messages.v1("run_state_change_message", msg, id=messages.new_id())


def data(
    run_id: str, chunk: int, values: np.ndarray, carrier: str | None = None, *, final: bool = False
) -> pb.Envelope:
    kind = "run_data_end_message" if final else "run_data_message"
    msg = pb.RunDataEndMessage() if final else pb.RunDataMessage()
    msg.run.id = run_id
    msg.run.chunk = chunk
    if carrier is not None:
        msg.entity.path = "/" + carrier
    msg.data.CopyFrom(samples.encode(np.asarray(values, dtype=np.float32), "f32",
                                     probes=list(range(np.asarray(values).shape[1]))))
    return messages.v1(kind, msg)

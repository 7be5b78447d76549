"""Driving a whole proxy in memory for the fuzz and security tests (and benchmarks/fuzz_soak.py).

Built on :mod:`support.proxy_fakes`: a :class:`~support.proxy_fakes.FakeReactor`, fake backends
behind StringTransports and fake clients.  Added here:

* :class:`AutoBackend` answers everything the proxy forwards the way a healthy device does
  (generic pings, start_run, extract, anything else with ``success_message``) and records what
  reached the device — the security tests assert on that record;
* :func:`run_traffic` builds the run messages a device sends (states per carrier, data chunks
  of known samples, the end message) and :func:`full_run` plays a complete run for a fresh
  client, checking that every chunk arrives unchanged: "the proxy still serves a full run";
* :class:`LogCapture` collects twisted.logger events; ``failures`` are the events a test must
  not see (``log_failure``: an unhandled exception; level critical).
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import numpy as np
from twisted.internet.error import ConnectionDone
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from pybrid.proto import pb
from pybrid.samples import encode
from pybrid.wire import messages
from pybrid.wire.framing import decode_varint
from support.proxy_fakes import (
    FakeBackend,
    FakeClient,
    FakeReactor,
    connect_backend,
    connect_client,
    read_frames,
    spec_reply,
)

SPEC = pb.ExtractCommand(recursive=True, specification=True)


@implementer(ILogObserver)
@attrs.define(eq=False)
class LogCapture:
    """Counts log events by level and keeps the ones a hardening test must never see."""

    failures: list[dict[str, Any]] = attrs.field(factory=list)
    levels: dict[str, int] = attrs.field(factory=dict)
    kept: list[dict[str, Any]] = attrs.field(factory=list)
    keep: int = 0

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        name = level.name if isinstance(level, type(LogLevel.info)) else str(level)
        self.levels[name] = self.levels.get(name, 0) + 1
        if "log_failure" in event or level is LogLevel.critical:
            self.failures.append(event)
        elif len(self.kept) < self.keep:
            self.kept.append(event)

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    def describe(self) -> str:
        from twisted.logger import formatEvent

        lines = []
        for event in self.failures[:5]:
            lines.append(formatEvent(event))
            failure = event.get("log_failure")
            if failure is not None:
                lines.append(failure.getTraceback())
        return "\n".join(lines)


@attrs.define(eq=False)
class AutoBackend:
    """A fake device that answers every request the proxy forwards; see the module note."""

    fake: FakeBackend
    #: Every v1 message the proxy sent after the handshake (kind, envelope).
    requests: list[pb.Envelope] = attrs.field(factory=list)
    pings: int = 0
    #: Requests left unanswered, with this probability (drawn from ``rnd``).
    ignore: float = 0.0
    rnd: Any = None
    ignored: int = 0
    #: Longest frame the proxy sent (a device closes the connection above 262 084 bytes).
    longest: int = 0
    #: Play every started run to DONE at once (its states, on the control connection).
    complete_runs: bool = False
    started: list[str] = attrs.field(factory=list)

    @property
    def lane_index(self) -> int:
        return 0

    def pump(self) -> int:
        """Answer until the proxy has nothing more to say; the number of frames read."""
        total = 0
        for _ in range(1000):
            self.longest = max(self.longest, longest_frame(self.fake.transport.value()))
            frames = read_frames(self.fake.transport)
            if not frames:
                return total
            total += len(frames)
            for env in frames:
                self._answer(env)
        raise AssertionError("the proxy keeps talking to the backend")

    def _answer(self, env: pb.Envelope) -> None:
        if env.WhichOneof("kind") == "generic":
            if env.generic.WhichOneof("kind") == "ping_command":
                self.pings += 1
                self.fake.send(messages.generic_pong())
            return
        self.requests.append(env)
        rid = messages.request_id(env)
        if rid is None:
            return
        if self.ignore and self.rnd.random() < self.ignore:
            self.ignored += 1
            return
        kind = messages.kind_of(env)
        if kind == "start_run_command":
            self.fake.send(messages.v1("start_run_response", id=rid))
            run_id = env.message_v1.start_run_command.run.id
            self.started.append(run_id)
            if self.complete_runs:
                paths = tuple("/" + mac for mac in self.fake.macs)
                for old, new in ((pb.NEW, pb.TAKE_OFF), (pb.TAKE_OFF, pb.IC), (pb.IC, pb.OP),
                                 (pb.OP, pb.OP_END), (pb.OP_END, pb.DONE)):
                    for path in paths:
                        self.fake.send(state(run_id, path, old, new))
        elif kind == "extract_command":
            self.fake.send(spec_reply(rid, self.fake.macs))
        else:
            self.fake.send(messages.success(id=rid))

    def kinds(self) -> list[str]:
        return [messages.kind_of(e) for e in self.requests]


def pump_all(backends: list[AutoBackend]) -> None:
    """Pump every backend until none hears anything more (one may wake another)."""
    for _ in range(100):
        if not sum(b.pump() for b in backends):
            return
    raise AssertionError("the proxy keeps talking to the backends")


def longest_frame(data: bytes) -> int:
    """The largest declared frame length in a stream of whole frames."""
    longest = pos = 0
    while pos < len(data):
        decoded = decode_varint(data, pos)
        if decoded is None:
            break
        length, start = decoded
        longest = max(longest, length)
        pos = start + length
    return longest


def close_client(client: FakeClient) -> None:
    client.proto.connectionLost(Failure(ConnectionDone()))


def lose_backend(fake: FakeBackend) -> None:
    """The connection to the device is gone (as after the proxy closed it)."""
    fake.proto.connectionLost(Failure(ConnectionDone()))


def start_run_command(run_id: str, channels: int = 2, rate: int = 10_000,
                      op_ns: int = 20_000_000) -> pb.StartRunCommand:
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = op_ns
    command.run_config.op_time.prefix = pb.NANO
    command.daq_config.num_channels = channels
    command.daq_config.sample_rate = rate
    command.daq_config.sample_op = True
    command.daq_config.sample_op_end = True
    return command


def state(run_id: str, path: str, old: int, new: int) -> pb.Envelope:
    change = pb.RunStateChangeMessage(old=old, new_=new)
    change.run.id = run_id
    change.entity.path = path
    return messages.v1("run_state_change_message", change, id=str(uuid.uuid4()))


def chunk_values(path: str, number: int, channels: int, count: int = 100) -> np.ndarray:
    """Distinct, recomputable float32 samples for chunk ``number`` of carrier ``path``."""
    base = (sum(path.encode()) % 1000) * 1e6 + number * count * channels
    return (base + np.arange(count * channels, dtype=np.float64)).reshape(count, channels).astype(
        np.float32)


def data(run_id: str, path: str, number: int, channels: int, end: bool = False) -> pb.Envelope:
    body = pb.RunDataMessage()
    body.run.id = run_id
    body.run.chunk = 0 if end else number
    body.entity.path = path
    values = chunk_values(path, number, channels, 1 if end else 100)
    body.data.CopyFrom(encode(values, "f32"))
    kind = "run_data_end_message" if end else "run_data_message"
    if end:
        end_body = pb.RunDataEndMessage()
        end_body.ParseFromString(body.SerializeToString())  # the same field layout
        return messages.v1(kind, end_body, id=str(uuid.uuid4()))
    return messages.v1(kind, body, id=str(uuid.uuid4()))


def run_traffic(run_id: str, paths: tuple[str, ...], chunks: int,
                channels: int = 2) -> list[pb.Envelope]:
    """Everything a device sends for one run, in order."""
    out: list[pb.Envelope] = []
    for old, new in ((pb.NEW, pb.TAKE_OFF), (pb.TAKE_OFF, pb.IC), (pb.IC, pb.OP)):
        out.extend(state(run_id, p, old, new) for p in paths)
    for n in range(chunks):
        out.extend(data(run_id, p, n, channels) for p in paths)
    out.extend(state(run_id, p, pb.OP, pb.OP_END) for p in paths)
    out.extend(data(run_id, p, chunks, channels, end=True) for p in paths)
    out.extend(state(run_id, p, pb.OP_END, pb.DONE) for p in paths)
    return out


def send_run_traffic(service: Any, lane_index: int, envs: list[pb.Envelope],
                     fake: FakeBackend | None = None) -> None:
    """Deliver run messages as the lane receives them: datagrams, or TCP frames (``fake``)."""
    lane = service.lanes[lane_index]
    for env in envs:
        if fake is not None:
            fake.send(env)
        else:
            assert lane.intake is not None
            lane.intake.datagramReceived(env.SerializeToString(),
                                         (lane.intake.peer_host, 51000 + lane_index))


def claim(service: Any, port: int = 41000, token: str | None = None) -> FakeClient:
    """A client that discovered and claimed the device (the reference client's way)."""
    client = connect_client(service, port)
    if token is not None:
        auth = pb.AuthRequest()
        auth.bearer.token = token
        client.request("auth_request", auth, id="auth")
        assert client.kinds() == ["success_message"]
    client.request("extract_command", SPEC, id="disc")
    client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1), id="udp")
    return client


def full_run(service: Any, reactor: FakeReactor, backends: list[AutoBackend],
             port: int = 41999, chunks: int = 5, channels: int = 2,
             token: str | None = None) -> None:
    """A fresh client runs to the end and receives every message unchanged (asserts)."""
    client = claim(service, port, token)
    kinds = client.kinds()
    assert kinds == ["extract_response", "udp_data_streaming_refused_response"], kinds
    assert client.proto.session is service.scheduler.active, "the fresh client is not active"
    run_id = str(uuid.uuid4())
    client.request("start_run_command", start_run_command(run_id, channels), id="start")
    pump_all(backends)
    replies = client.frames()
    assert [messages.kind_of(e) for e in replies] == ["start_run_response"], replies
    sent: list[bytes] = []
    for index in range(len(backends)):
        envs = run_traffic(run_id, service.lanes[index].carriers, chunks, channels)
        sent.extend(e.SerializeToString() for e in envs)
        send_run_traffic(service, index, envs)
    got = [e.SerializeToString() for e in client.frames()]
    assert got == sent, f"the fresh client got {len(got)} messages, expected {len(sent)}"
    assert not client.closing
    close_client(client)
    pump_all(backends)


def proxy(reactor: FakeReactor, carriers: list[list[str]] | None = None,
          **config: Any) -> tuple[Any, list[AutoBackend]]:
    from support.proxy_fakes import make_proxy

    service, fakes = make_proxy(reactor, carriers, **config)
    return service, [AutoBackend(f) for f in fakes]


def reconnect(service: Any, reactor: FakeReactor, backend: AutoBackend,
              index: int = 0) -> AutoBackend:
    """After the lane lost its connection: let it reconnect and handshake again."""
    from pybrid.proxy.backend.lane import LaneState

    lane = service.lanes[index]
    for _ in range(40):
        if lane.state is LaneState.CONNECTING:  # its connectTCP is the latest one
            break
        reactor.advance(0.5)
    assert lane.state is LaneState.CONNECTING, f"the lane did not reconnect ({lane.state})"
    fake = connect_backend(reactor, -1, macs=backend.fake.macs)
    fake.handshake()
    assert service.lanes[index].healthy
    return AutoBackend(fake)

"""The run-id takeover of issue 15, on real loopback sockets.

A queued intruder keeps sending ``start_run_command`` naming the active session's run id (as
the status page shows it); the active client dies mid-run.  The intruder is promoted, but the
dead session's run had the proxy's own id towards the device: its remaining data (4-channel
chunks) and its end are dropped as foreign, and whatever the intruder receives is its own run
(1 channel).
"""

from __future__ import annotations

import uuid

import pytest_twisted
from support.fuzz_proxy import LogCapture, start_run_command
from support.load_peers import InProcessProxy
from support.waiting import until
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import EnvelopeReceiver

T = 30.0


class Intruder(EnvelopeReceiver):
    """A raw client connection that records every envelope it receives."""

    def __init__(self) -> None:
        self.received: list[pb.Envelope] = []

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        self.received.append(envelope)

    def send(self, env: pb.Envelope) -> None:
        self.sendEnvelope(env)


@pytest_twisted.ensureDeferred
async def test_a_queued_client_naming_the_active_run_gets_none_of_it(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-41"))
    device.listen(0, interface="127.0.0.1")
    log = LogCapture().__enter__()
    intruder = None
    try:
        async with InProcessProxy(reactor, [device.port]) as service:
            port = service.address[1]
            victim = await connect("127.0.0.1", port, reactor=reactor)
            victim_run = victim.run(5.0, channels=4, sample_rate=20_000)
            victim_run.addErrback(lambda failure: None)  # it dies mid-run
            await until(reactor, lambda: device.counters.chunks_sent >= 20, "the victim's run")
            active = service.scheduler.active
            assert active is not None
            [run_id] = list(active.runs)  # what the status page shows
            intruder = Intruder()
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                  intruder).addTimeout(T, reactor)

            def start(n: int) -> None:
                intruder.send(messages.v1("start_run_command",
                                          start_run_command(run_id, channels=1),
                                          id=f"start-{n}"))

            for n in range(5):  # queued: busy, busy, …
                start(n)
                await until(reactor, lambda n=n: any(
                    e.message_v1.id == f"start-{n}" for e in intruder.received),
                    f"the reply to start {n}")
            assert {messages.kind_of(e) for e in intruder.received} == {"busy_response"}
            before = service.router.counters.foreign_run
            victim.control.protocol.transport.abortConnection()  # the victim dies mid-run
            await until(reactor, lambda: service.scheduler.active is None
                        or service.scheduler.active is not active, "the victim's end")
            for n in range(5, 60):  # keeps asking until its own start is answered
                start(n)
                await until(reactor, lambda n=n: any(
                    e.message_v1.id == f"start-{n}" for e in intruder.received),
                    f"the reply to start {n}")
                last = [e for e in intruder.received if e.message_v1.id == f"start-{n}"][-1]
                if messages.kind_of(last) == "start_run_response":
                    break
            assert messages.kind_of(last) == "start_run_response"
            await until(reactor, lambda: any(
                messages.kind_of(e) == "run_data_end_message" for e in intruder.received),
                "the end of the intruder's own run")
            data = [e.message_v1.run_data_message for e in intruder.received
                    if messages.kind_of(e) == "run_data_message"]
            assert all(len(d.data.channels) == 1 for d in data), (
                f"{sum(len(d.data.channels) != 1 for d in data)} chunks of the dead session's "
                "run reached the next session")
            assert data  # its own run's chunks did arrive
            assert service.router.counters.foreign_run >= before
            assert all(e.message_v1.run_state_change_message.run.id == run_id
                       for e in intruder.received
                       if messages.kind_of(e) == "run_state_change_message")
            assert uuid.UUID(run_id)
    finally:
        log.__exit__()
        if intruder is not None and intruder.transport is not None:
            intruder.transport.loseConnection()
        await device.stop()

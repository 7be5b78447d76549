"""A client that stops reading mid-run: the device is still drained, then the run fails clearly.

Real loopback sockets: the simulated device streams by UDP to the proxy, the proxy forwards run
data as TCP frames to a client which stops reading (its transport paused, a tiny receive
buffer).  The proxy must keep taking every datagram from the device (zero kernel drops on its
intake socket) while the client's queue fills, fail that run with an ``error_message`` naming
the bytes buffered and the limit, stop the run on the device, and serve the next session.
"""

from __future__ import annotations

import socket
import uuid

import pytest_twisted
from support.proxy_client import connect, kind_is
from twisted.internet import defer

from pybrid import netstats
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.proxy.sizes import Overflow
from pybrid.wire import messages

LIMIT = 256 * 1024


def start_run(run_id: str, seconds: float, chunks_per_second: int, channels: int = 8):
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = int(seconds * 1e9)
    command.run_config.op_time.prefix = pb.NANO
    command.daq_config.num_channels = channels
    command.daq_config.sample_rate = chunks_per_second * 100
    command.daq_config.sample_op = True
    command.daq_config.sample_op_end = True
    return command


def done(run_id: str):
    def predicate(env: pb.Envelope) -> bool:
        if not kind_is("run_state_change_message")(env):
            return False
        change = env.message_v1.run_state_change_message
        return change.run.id == run_id and change.new_ in (pb.DONE, pb.ERROR)

    return predicate


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_reading_fails_its_run_without_stalling_the_device(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    service = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", device.port),), interface="127.0.0.1",
                    port=0, client_buffer=LIMIT),
        reactor,
    )
    service.startService()
    clients = []
    try:
        await service.when_healthy().addTimeout(30, reactor)
        intake = service.lanes[0].intake
        assert service.lanes[0].data_mode == "udp" and intake is not None
        drops_before = netstats.socket_drops(intake.port.socket)

        slow = await connect(reactor, service.address[1])
        clients.append(slow)
        # a small receive buffer (not below 64 KiB: loopback's 32 KiB MSS would make the
        # sender's silly-window avoidance crawl once the client reads again)
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        run_id = str(uuid.uuid4())
        # 2 000 chunks/s of 8 channels × 100 f32 samples (≈ 6.8 MB/s) for up to 30 s
        reply = await slow.request("start_run_command", start_run(run_id, 30.0, 2000))
        assert messages.kind_of(reply) == "start_run_response", reply
        session = service.scheduler.active
        assert session is not None
        await slow.expect(kind_is("run_data_message"), timeout=30)
        slow.transport.pauseProducing()  # the client stops reading
        received_at_pause = service.router.counters.forwarded
        intake_at_pause = intake.counters.datagrams

        overflowed: defer.Deferred[Overflow] = defer.Deferred()
        handler = session.sender.on_overflow
        assert handler is not None

        def hook(overflow: Overflow) -> None:
            handler(overflow)
            reactor.callLater(0, overflowed.callback, overflow)

        session.sender.on_overflow = hook
        overflow = await overflowed.addTimeout(20, reactor)

        # the device was drained all along: datagrams kept arriving, none dropped by the kernel
        assert intake.counters.datagrams - intake_at_pause > 200
        assert service.router.counters.forwarded > received_at_pause
        assert netstats.socket_drops(intake.port.socket) == drops_before
        assert overflow.limit == LIMIT and LIMIT - 4000 < overflow.buffered <= LIMIT
        assert session.sender.counters.peak <= LIMIT
        assert session.closed and service.scheduler.active is not session
        assert service.dispatcher.counters.stop_runs >= 1

        # when the client reads again it gets the rest of the flushed data, then the error
        slow.transport.resumeProducing()
        error = await slow.expect(kind_is("error_message"), timeout=30)
        text = error.message_v1.error_message.description
        assert "client buffer overflow" in text and f"run {run_id} aborted" in text
        assert f"{overflow.buffered} bytes" in text and f"{LIMIT} bytes" in text
        await slow.closed.addTimeout(30, reactor)

        # the next session gets the device (the aborted run was stopped) and a complete run
        fresh = await connect(reactor, service.address[1])
        clients.append(fresh)
        run2 = str(uuid.uuid4())
        reply = await fresh.request("start_run_command", start_run(run2, 0.2, 500, channels=2),
                                    timeout=10)
        assert messages.kind_of(reply) == "start_run_response", reply
        final = await fresh.expect(done(run2), timeout=30)
        assert final.message_v1.run_state_change_message.new_ == pb.DONE
        chunks = [f for f in fresh.frames if kind_is("run_data_message")(f)]
        assert len(chunks) == 100
        assert netstats.socket_drops(intake.port.socket) == drops_before
    finally:
        for client in clients:
            if not client.closed.called:
                client.transport.abortConnection()
        await service.stopService()
        await device.stop()

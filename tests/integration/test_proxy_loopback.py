"""The proxy on real loopback sockets, in front of the in-process simulated device."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import pytest_twisted
from support.proxy_client import FrameClient, connect, kind_is
from twisted.internet import defer

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.signals import chunk_bytes
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig, Timing
from pybrid.proxy.service import ProxyService
from pybrid.wire import messages

SPEC = pb.ExtractCommand(recursive=True, specification=True)


@contextlib.asynccontextmanager
async def device_and_proxy(reactor, carriers=1, refuse_udp=False, device_port=0, **config):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=carriers,
                                                                  refuse_udp=refuse_udp))
    device.listen(device_port, interface="127.0.0.1")
    service = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", device.port),), interface="127.0.0.1",
                    port=0, **config),
        reactor,
    )
    service.startService()
    try:
        await service.when_healthy().addTimeout(30, reactor)
        yield device, service
    finally:
        await service.stopService()
        await device.stop()


def start_run_command(run_id, channels=2, rate=10_000, op_ns=30_000_000):
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = op_ns
    command.run_config.op_time.prefix = pb.NANO
    command.daq_config.num_channels = channels
    command.daq_config.sample_rate = rate
    command.daq_config.sample_op = True
    command.daq_config.sample_op_end = True
    return command


async def run_through(reactor, client: FrameClient, paths, run_id="run-1", channels=2):
    """Start a run and collect everything until DONE on every carrier path."""
    reply = await client.request("start_run_command", start_run_command(run_id, channels))
    assert messages.kind_of(reply) == "start_run_response", reply
    for path in paths:
        await client.expect(
            lambda e, p=path: kind_is("run_state_change_message")(e)
            and e.message_v1.run_state_change_message.entity.path == p
            and e.message_v1.run_state_change_message.new_ == pb.DONE,
            timeout=30,
        )
    return [f for f in client.frames if messages.kind_of(f).startswith("run_")]


@pytest.mark.parametrize("refuse_udp", [False, True], ids=["udp", "tcp-fallback"])
@pytest.mark.parametrize("carriers", [1, 2])
@pytest_twisted.ensureDeferred
async def test_run_data_reaches_the_client_unchanged(reactor, carriers, refuse_udp):
    async with device_and_proxy(reactor, carriers, refuse_udp) as (device, service):
        assert service.lanes[0].data_mode == ("tcp" if refuse_udp else "udp")
        client = await connect(reactor, service.address[1])
        try:
            extract = await client.request("extract_command", SPEC)
            assert messages.kind_of(extract) == "extract_response"
            refusal = await client.request("udp_data_streaming_command",
                                           pb.UdpDataStreamingCommand(port=1))
            assert messages.kind_of(refusal) == "udp_data_streaming_refused_response"
            paths = device.carrier_paths
            frames = await run_through(reactor, client, paths)
        finally:
            await client.close()
    for index, path in enumerate(paths):
        chunks = [f.message_v1.run_data_message for f in frames
                  if messages.kind_of(f) == "run_data_message"
                  and f.message_v1.run_data_message.entity.path == path]
        chunks.sort(key=lambda d: d.run.chunk)
        assert [d.run.chunk for d in chunks] == [0, 1, 2]
        got = b"".join(d.data.data for d in chunks)
        assert got == chunk_bytes(index, 2, 0, 300)
        states = [f.message_v1.run_state_change_message.new_ for f in frames
                  if messages.kind_of(f) == "run_state_change_message"
                  and f.message_v1.run_state_change_message.entity.path == path]
        assert states[0] == pb.TAKE_OFF and states[-1] == pb.DONE
    assert service.router.counters.gaps == 0


@pytest_twisted.ensureDeferred
async def test_standalone_ping_reply_is_never_lost(reactor):
    # a wide ping window: a first ping read late by a busy host is still a standalone ping
    timing = Timing(ping_window=5.0, ping_linger=0.02)
    async with device_and_proxy(reactor, timing=timing) as (_device, service):
        port = service.address[1]
        for _ in range(20):
            client = await connect(reactor, port,
                                   on_connect=lambda c: c.sendEnvelope(messages.generic_ping()))
            await client.closed.addTimeout(30, reactor)  # the proxy closed it …
            assert [messages.kind_of(f) for f in client.frames] == ["generic.ping_response"]
        assert service.front.counters.standalone_pings == 20
        assert service.scheduler.count == 0


@pytest_twisted.ensureDeferred
async def test_a_ping_connection_answers_every_ping_then_closes(reactor):
    # a wide ping window (the 5 ms default is the unit tests' business, on a fake clock)
    async with device_and_proxy(reactor, timing=Timing(ping_window=5.0)) as (_device, service):
        client = await connect(reactor, service.address[1],
                               on_connect=lambda c: c.sendEnvelope(messages.generic_ping()))
        pong = kind_is("generic.ping_response")
        await client.expect(pong)
        for _ in range(2):  # like the reference `pybrid ping -c 3`: next ping after the reply
            client.sendEnvelope(messages.generic_ping())
            await client.expect(pong)
        await client.closed.addTimeout(30, reactor)  # ping_linger after the last ping
        assert [messages.kind_of(f) for f in client.frames] == ["generic.ping_response"] * 3
        assert service.front.counters.standalone_pings == 1
        assert service.scheduler.count == 0


@pytest_twisted.ensureDeferred
async def test_overloaded_message_is_delivered_before_the_close(reactor):
    async with device_and_proxy(reactor, max_sessions=1) as (_device, service):
        first = await connect(reactor, service.address[1])
        await first.request("extract_command", SPEC)
        second = await connect(reactor, service.address[1])
        second.sendEnvelope(messages.v1("extract_command", SPEC, id="x"))
        await second.closed.addTimeout(30, reactor)
        [frame] = second.frames
        assert frame.message_v1.error_message.description == "Server overloaded"
        await first.close()


@pytest_twisted.ensureDeferred
async def test_idle_session_is_told_and_closed(reactor):
    async with device_and_proxy(reactor, session_timeout=0.3) as (_device, service):
        client = await connect(reactor, service.address[1])
        await client.request("extract_command", SPEC)
        await client.closed.addTimeout(30, reactor)
        assert "timed out" in client.frames[-1].message_v1.error_message.description


@pytest_twisted.ensureDeferred
async def test_second_client_is_busy_then_served_when_the_first_leaves(reactor):
    async with device_and_proxy(reactor) as (_device, service):
        first = await connect(reactor, service.address[1])
        await first.request("extract_command", SPEC)
        await first.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
        second = await connect(reactor, service.address[1])
        reply = await second.request("reset_command", pb.ResetCommand())
        assert messages.kind_of(reply) == "busy_response"
        await first.close()
        reply = await second.request("reset_command", pb.ResetCommand())
        assert messages.kind_of(reply) == "reset_response"
        await second.close()


@pytest_twisted.ensureDeferred
async def test_client_killed_mid_run_leaks_nothing_into_the_next_session(reactor):
    async with device_and_proxy(reactor, carriers=2) as (device, service):
        first = await connect(reactor, service.address[1])
        await first.request("extract_command", SPEC)
        second = await connect(reactor, service.address[1])
        await second.request("extract_command", SPEC)
        reply = await first.request("start_run_command",
                                    start_run_command("dead", rate=1_000, op_ns=2_000_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await first.expect(kind_is("run_data_message"), timeout=30)
        first.transport.abortConnection()
        await first.closed
        # the device stops the dead run (the proxy sent stop_run); the next session runs
        frames = await run_through(reactor, second, device.carrier_paths, run_id="alive")
        run_ids = {getattr(f.message_v1, messages.kind_of(f)).run.id for f in frames}
        assert run_ids == {"alive"}
        assert service.dispatcher.counters.stop_runs == 1
        await second.close()


@pytest_twisted.ensureDeferred
async def test_backend_down_at_start_is_served_once_it_appears(reactor):
    from support.reference import free_port

    port = free_port()
    service = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", port),), interface="127.0.0.1", port=0),
        reactor,
    )
    service.startService()
    device = None
    try:
        client = await connect(reactor, service.address[1])
        reply = await client.request("extract_command", SPEC)
        assert "not ready" in reply.message_v1.error_message.description
        busy = await client.request("reset_command", pb.ResetCommand())
        assert messages.kind_of(busy) == "busy_response"
        device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
        device.listen(port, interface="127.0.0.1")
        await service.when_healthy().addTimeout(30, reactor)
        reply = await client.request("reset_command", pb.ResetCommand())
        assert messages.kind_of(reply) == "reset_response"
        await client.close()
    finally:
        await service.stopService()
        if device is not None:
            await device.stop()


@pytest_twisted.ensureDeferred
async def test_samples_decode_to_the_signal(reactor):
    from pybrid import samples
    from pybrid.device.signals import expected_decoded

    async with device_and_proxy(reactor, carriers=1) as (device, service):
        client = await connect(reactor, service.address[1])
        frames = await run_through(reactor, client, device.carrier_paths, channels=3)
        await client.close()
    data = sorted((f.message_v1.run_data_message for f in frames
                   if messages.kind_of(f) == "run_data_message"), key=lambda d: d.run.chunk)
    values = np.concatenate([samples.decode(d.data) for d in data])
    np.testing.assert_array_equal(values, expected_decoded(0, 3, 0, 300))


@pytest_twisted.ensureDeferred
async def test_stop_service_closes_sessions_with_a_message(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    device.listen(0, interface="127.0.0.1")
    service = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", device.port),), interface="127.0.0.1", port=0),
        reactor,
    )
    service.startService()
    try:
        await service.when_healthy().addTimeout(30, reactor)
        client = await connect(reactor, service.address[1])
        await client.request("extract_command", SPEC)
        await defer.ensureDeferred(_stop(service))
        await client.closed.addTimeout(30, reactor)
        assert "shutting down" in client.frames[-1].message_v1.error_message.description
    finally:
        await device.stop()


async def _stop(service):
    await service.stopService()

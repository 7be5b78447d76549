"""Backend faults on real sockets (issue 8, part 2).

The proxy runs in-process (its counters are asserted); devices are ``twistd -n pybrid-device``
child processes where a signal is needed (killed, restarted, SIGSTOPed and resumed), otherwise
in-process :class:`~pybrid.device.SimulatedDevice` instances.  After every fault the next
client's run must be exact, and nothing may be logged as an unhandled error.
"""

from __future__ import annotations

import gc
import random
import signal
import socket
import uuid

import numpy as np
import pytest
import pytest_twisted
from support.fuzz_proxy import LogCapture
from support.load_peers import FrameRelay, InProcessProxy, start_device
from support.reference import free_port
from support.waiting import until
from twisted.internet import task

from pybrid.client import ClientError, connect
from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected_decoded
from pybrid.proto import pb
from pybrid.samples import encode
from pybrid.wire import messages
from pybrid.wire.framing import MAX_DATAGRAM, MAX_FRAME_LENGTH, encode_varint, frame

T = 30.0


def check_exact(result, channels, count, carrier=0):
    for mac in result.carriers:
        got = result[mac]
        np.testing.assert_array_equal(got.samples, expected_decoded(carrier, channels, 0, count))
        assert got.complete and got.chunk_gaps == 0 and got.duplicate_chunks == 0, mac


async def run_once(reactor, port, seconds=0.05, channels=2, rate=20_000, **kwargs):
    computer = await connect("127.0.0.1", port, reactor=reactor)
    try:
        return await computer.run(seconds, channels=channels, sample_rate=rate,
                                  **kwargs).addTimeout(T, reactor)
    finally:
        await computer.close()


async def sleep(reactor, seconds):
    await task.deferLater(reactor, seconds, lambda: None)


@pytest.mark.parametrize("fault", ["kill", "long-stop"])
@pytest_twisted.ensureDeferred
async def test_a_backend_lost_mid_run_fails_the_run_clearly_and_comes_back(reactor, fault):
    port = free_port()
    device = await start_device(reactor, port=port)
    try:
        with LogCapture() as log:
            async with InProcessProxy(reactor, [port]) as service:
                proxy_port = service.address[1]
                computer = await connect("127.0.0.1", proxy_port, reactor=reactor)
                chunks = []
                run = computer.run(5.0, channels=2, sample_rate=10_000, on_chunk=chunks.append)
                try:
                    await until(reactor, lambda: len(chunks) >= 5, "the run's first chunks")
                    device.signal("KILL" if fault == "kill" else "STOP")
                    with pytest.raises(ClientError) as failed:
                        await run.addTimeout(T, reactor)
                    text = str(failed.value)
                    assert f"127.0.0.1:{port}" in text or "degraded" in text, text
                finally:
                    await computer.close()
                assert not service.lanes[0].healthy or fault == "long-stop"
                if fault == "kill":
                    await device.stop()
                    device = await start_device(reactor, port=port)  # restarted, same port
                else:
                    device.signal(signal.SIGCONT)
                await service.when_healthy().addTimeout(T, reactor)
                assert service.lanes[0].counters.connects == 2
                check_exact(await run_once(reactor, proxy_port), 2, 1000)
            gc.collect()
        assert not log.failures, log.describe()
    finally:
        device.signal(signal.SIGCONT)
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_a_short_stop_of_the_backend_costs_no_sample(reactor):
    device = await start_device(reactor)
    try:
        async with InProcessProxy(reactor, [device.port]) as service:
            computer = await connect("127.0.0.1", service.address[1], reactor=reactor)
            try:
                chunks = []
                run = computer.run(1.0, channels=2, sample_rate=10_000, on_chunk=chunks.append)
                await until(reactor, lambda: len(chunks) >= 5, "the run's first chunks")
                device.signal("STOP")
                await sleep(reactor, 0.8)  # less than the 2 s of silence that mean "unhealthy"
                device.signal(signal.SIGCONT)
                result = await run.addTimeout(T, reactor)
                check_exact(result, 2, 10_000)
            finally:
                await computer.close()
            assert service.lanes[0].counters.connects == 1
    finally:
        device.signal(signal.SIGCONT)
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_a_backend_down_at_start_is_waited_for(reactor):
    port = free_port()
    device = None
    async with InProcessProxy(reactor, [port], wait=False) as service:
        proxy_port = service.address[1]
        await sleep(reactor, 0.3)
        with pytest.raises(ClientError) as refused:
            await connect("127.0.0.1", proxy_port, reactor=reactor)
        assert "not ready" in str(refused.value) or "not been reached" in str(refused.value)
        try:
            device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
            device.listen(port, interface="127.0.0.1")
            await service.when_healthy().addTimeout(T, reactor)
            check_exact(await run_once(reactor, proxy_port), 2, 1000)
        finally:
            if device is not None:
                await device.stop()


def _garbage_frames(rnd):
    junk = [b"", rnd.randbytes(50), b"\xff" * 20, b"\x0a\x05hello"]
    return b"".join(frame(j) for j in junk)


@pytest_twisted.ensureDeferred
async def test_garbage_and_oversized_frames_and_datagrams_from_a_backend(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-41"))
    device.listen(0, interface="127.0.0.1")
    relay = FrameRelay(reactor, device.port)
    relay_port = relay.listen()
    rnd = random.Random(5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # the backend's address: past the intake's filter
    try:
        with LogCapture() as log:
            async with InProcessProxy(reactor, [relay_port]) as service:
                lane = service.lanes[0]
                proxy_port = service.address[1]
                # 1. garbage frames between the device's frames: counted, connection kept
                relay.inject(_garbage_frames(rnd))
                await until(reactor, lambda: lane._protocol is not None
                            and lane._protocol.counters.unparseable >= 2, "garbage counted")
                assert lane._protocol.counters.empty >= 1 and lane.healthy
                # 2. garbage and maximum-size datagrams to the intake
                assert lane.intake is not None and lane.intake.port is not None
                intake = ("127.0.0.1", lane.intake.port.getHost().port)
                router = service.router.counters
                wrong_kind = messages.v1("reset_command", id="x").SerializeToString()
                for payload in (rnd.randbytes(MAX_DATAGRAM), rnd.randbytes(100), b"",
                                wrong_kind, rnd.randbytes(MAX_DATAGRAM)):
                    sock.sendto(payload, intake)
                await until(reactor, lambda: lane.intake.counters.datagrams >= 5, "datagrams")
                counted = router.unparseable + router.unexpected_kind + router.foreign_run
                assert counted == 5, router
                check_exact(await run_once(reactor, proxy_port), 2, 1000)
                assert lane.counters.connects == 1
                # 3. an oversized frame: the lane drops the connection and reconnects
                relay.inject(encode_varint(MAX_FRAME_LENGTH + 1) + b"\x00" * 64)
                await until(reactor, lambda: lane.counters.connects == 2 and lane.healthy,
                            "the lane to reconnect", seconds=T)
                check_exact(await run_once(reactor, proxy_port), 2, 1000)
            gc.collect()
        assert not log.failures, log.describe()
    finally:
        sock.close()
        await relay.stop()
        await device.stop()


def _forged(run_id: str, path: str, chunk: int, channels: int) -> bytes:
    body = pb.RunDataMessage()
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = path
    body.data.CopyFrom(encode(np.full((100, channels), 0.25, dtype=np.float32), "f32"))
    return messages.v1("run_data_message", body, id=str(uuid.uuid4())).SerializeToString()


async def _forge_during_a_run(reactor, source_host):
    """Run while a socket on ``source_host`` sends forged data for the run; (result, counts)."""
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-42"))
    device.listen(0, interface="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source_host, 0))
    try:
        async with InProcessProxy(reactor, [device.port]) as service:
            lane = service.lanes[0]
            intake = ("127.0.0.1", lane.intake.port.getHost().port)
            computer = await connect("127.0.0.1", service.address[1], reactor=reactor)
            try:
                chunks = []
                run = computer.run(0.5, channels=2, sample_rate=10_000, on_chunk=chunks.append)
                await until(reactor, lambda: service.router.runs and chunks, "the run")
                [run_id] = list(service.router.runs)
                path = lane.carriers[0]
                forged = 0
                for chunk in range(50):
                    sock.sendto(_forged(run_id, path, chunk, 2), intake)
                    sock.sendto(_forged(str(uuid.uuid4()), path, chunk, 2), intake)
                    forged += 2
                    await sleep(reactor, 0.002)
                result = await run.addTimeout(T, reactor)
            finally:
                await computer.close()
            return result, forged, lane.intake.counters.foreign, service.router.counters
    finally:
        sock.close()
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_datagrams_from_an_address_that_is_not_a_backend_are_dropped_and_counted(reactor):
    result, forged, foreign, _router = await _forge_during_a_run(reactor, "127.0.0.2")
    assert foreign == forged
    check_exact(result, 2, 5000)


@pytest_twisted.ensureDeferred
async def test_datagrams_from_the_backend_host_but_another_port_cannot_inject(reactor):
    """The intake latched the device's source port with the run's first datagram: forged
    datagrams from another port of the same host are dropped and counted, not routed."""
    result, forged, foreign, router = await _forge_during_a_run(reactor, "127.0.0.1")
    assert foreign == forged
    assert router.foreign_run == 0  # the forged ones of unknown runs never reached the router
    check_exact(result, 2, 5000)


@pytest_twisted.ensureDeferred
async def test_udp_loss_and_reordering_are_counted_and_reported_to_the_client(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(
        first_mac="00-00-00-00-00-43", faults=Faults(drop=0.05, reorder=0.1, seed=11)))
    device.listen(0, interface="127.0.0.1")
    try:
        async with InProcessProxy(reactor, [device.port]) as service:
            result = await run_once(reactor, service.address[1], seconds=0.5, channels=2,
                                    rate=40_000)
            router = service.router.counters
    finally:
        await device.stop()
    total = 200  # 0.5 s × 40 kHz / 100 samples per chunk
    dropped = device.counters.chunks_dropped
    assert dropped > 0 and device.counters.chunks_reordered > 0
    [mac] = list(result.carriers)
    got = result[mac]
    assert got.chunks == total - dropped
    assert got.chunk_gaps == len(got.missing_chunks) <= dropped
    missing = set(got.missing_chunks)  # chunks lost after the last one received are not listed
    kept = [n for n in range(total) if n not in missing][: got.chunks]
    expected = np.concatenate([expected_decoded(0, 2, 100 * n, 100) for n in kept])
    np.testing.assert_array_equal(got.samples, expected)
    # the proxy's gaps are the chunks lost, like the client's (a reordered chunk is not one)
    assert router.gaps == got.chunk_gaps and router.reordered > 0 and router.late == 0

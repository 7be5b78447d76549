"""Our client against our simulated device over loopback: UDP and refused UDP, several carriers,
integer sample types, ERROR runs, dropped chunks, cancellation and a lost connection.

Expected values come from :func:`pybrid.device.expected_decoded` (carrier index = its
``location_v0.carrier``; the final value is sample number ``total`` of the same sequence).
"""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted
from support.waiting import until
from twisted.internet import defer

from pybrid.client import ConnectionLost, RunError, connect, expected_samples
from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected_decoded

T = 30.0


async def start_device(reactor, **config):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(**config))
    dev.listen(0, interface="127.0.0.1")
    return dev


def check(result, computer, channels, count, dtype="f32"):
    assert [c.mac for c in computer.carriers] == list(result.carriers)
    for carrier in computer.carriers:
        index = carrier.location[1]
        got = result[carrier.mac]
        np.testing.assert_array_equal(got.samples,
                                      expected_decoded(index, channels, 0, count, dtype))
        np.testing.assert_array_equal(got.final,
                                      expected_decoded(index, channels, count, 1, dtype)[0])
        assert got.chunk_gaps == 0 and got.complete and got.expected_samples == count
        assert got.states[-1] == "DONE"


@pytest.mark.parametrize("refuse_udp", [False, True], ids=["udp", "refused-udp"])
@pytest_twisted.ensureDeferred
async def test_one_carrier(reactor, refuse_udp):
    dev = await start_device(reactor, refuse_udp=refuse_udp)
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor).addTimeout(T, reactor)
        assert c.topology == "direct"
        assert [x.mac for x in c.carriers] == ["00-00-00-00-00-01"]
        result = await c.run(0.05, channels=6, sample_rate=20_000).addTimeout(T, reactor)
        assert result.data_lane == ("tcp" if refuse_udp else "udp")
        check(result, c, 6, 1000)
        assert (dev.counters.udp_refused == 1) is refuse_udp
        assert c.stale_notifications == 0
    finally:
        if c is not None:
            await c.close()
        await dev.stop()


@pytest.mark.parametrize("dtype", ["i16", "u16", "f64"])
@pytest_twisted.ensureDeferred
async def test_three_carriers_and_sample_types(reactor, dtype):
    dev = await start_device(reactor, carriers=3, dtype=dtype)
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor)
        assert c.topology == "proxy" and len(c.carriers) == 3
        result = await c.run(0.02, channels=4, sample_rate=10_000).addTimeout(T, reactor)
        check(result, c, 4, 200, dtype)
        # the simulator stamps each carrier's states
        assert {s.carrier for s in result.states} == {x.mac for x in c.carriers}
    finally:
        if c is not None:
            await c.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_error_state_is_a_run_error(reactor):
    dev = await start_device(reactor, carriers=2, faults=Faults(error_after_chunks=2))
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor)
        with pytest.raises(RunError) as err:
            await c.run(0.05, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        assert err.value.carrier in {x.mac for x in c.carriers}
        assert err.value.reason
    finally:
        if c is not None:
            await c.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_dropped_chunks_are_reported_as_gaps(reactor):
    dev = await start_device(reactor, faults=Faults(drop=0.2, seed=7))
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor)
        result = await c.run(0.2, channels=2, sample_rate=10_000, settle=0.1)
        r = result["00-00-00-00-00-01"]
        total = expected_samples(200_000_000, 10_000) // 100
        dropped = dev.counters.chunks_dropped
        assert dropped > 0
        assert r.chunks == total - dropped
        top = r.chunks + r.chunk_gaps - 1  # the highest chunk number received
        received = [n for n in range(top + 1) if n not in r.missing_chunks]
        assert len(received) == r.chunks
        want = np.concatenate([expected_decoded(0, 2, 100 * n, 100) for n in received])
        np.testing.assert_array_equal(r.samples, want)
        assert not r.complete
    finally:
        if c is not None:
            await c.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_cancel_stops_the_device_run(reactor):
    dev = await start_device(reactor)
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor)
        chunks = []
        d = c.run(5.0, channels=2, sample_rate=1_000, on_chunk=chunks.append)
        await until(reactor, lambda: chunks, "the first chunk")
        d.cancel()
        with pytest.raises(defer.CancelledError):
            await d
        await until(reactor, lambda: dev.counters.runs_stopped == 1, "the device to stop")
        result = await c.run(0.01, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        check(result, c, 2, 100)
    finally:
        if c is not None:
            await c.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_device_dropping_the_connection_fails_the_run(reactor):
    dev = await start_device(reactor, faults=Faults(disconnect_after_chunks=1))
    c = None
    try:
        c = await connect("127.0.0.1", dev.port, reactor=reactor)
        with pytest.raises(ConnectionLost):
            await c.run(1.0, channels=2, sample_rate=1_000).addTimeout(T, reactor)
        assert not c.connected
    finally:
        if c is not None:
            await c.close()
        await dev.stop()

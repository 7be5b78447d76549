"""Our client through our proxy (in-process ProxyService) in front of our simulated devices:
one and three backends, busy handling between two clients, cancellation, authentication."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import pytest_twisted
from support.waiting import until
from twisted.internet import defer

from pybrid.client import AuthenticationError, DeviceBusyError, RequestFailed, connect
from pybrid.device import DeviceConfig, SimulatedDevice, expected_decoded
from pybrid.proxy.backendfile import Backend, Location
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

T = 30.0
MACS = ("00-00-00-00-00-11", "00-00-00-00-00-12", "00-00-00-00-00-13")


@contextlib.asynccontextmanager
async def proxy_with(reactor, backends=1, refuse_udp=False, **config):
    devices = []
    for i in range(backends):
        dev = SimulatedDevice(reactor=reactor,
                              config=DeviceConfig(first_mac=MACS[i], refuse_udp=refuse_udp))
        dev.listen(0, interface="127.0.0.1")
        devices.append(dev)
    service = ProxyService(
        ProxyConfig(
            backends=tuple(Backend("127.0.0.1", d.port, Location(0, i))
                           for i, d in enumerate(devices)),
            interface="127.0.0.1", port=0, **config),
        reactor,
    )
    service.startService()
    try:
        await service.when_healthy().addTimeout(30, reactor)
        yield devices, service
    finally:
        await service.stopService()
        for d in devices:
            await d.stop()


def check(result, macs, channels, count):
    assert list(result.carriers) == list(macs)
    for mac in macs:
        got = result[mac]
        # every backend is a one-carrier device: its carrier index is 0
        np.testing.assert_array_equal(got.samples,
                                      expected_decoded(0, channels, 0, count, mac=mac))
        np.testing.assert_array_equal(got.final,
                                      expected_decoded(0, channels, count, 1, mac=mac)[0])
        assert got.complete and got.chunk_gaps == 0
        assert got.states[0] == "TAKE_OFF" and got.states[-1] == "DONE"


@pytest.mark.parametrize("refuse_udp", [False, True], ids=["backend-udp", "backend-tcp"])
@pytest_twisted.ensureDeferred
async def test_one_backend(reactor, refuse_udp):
    async with proxy_with(reactor, 1, refuse_udp) as (_devices, service):
        c = await connect("127.0.0.1", service.address[1], reactor=reactor)
        try:
            assert c.topology == "direct" and [x.mac for x in c.carriers] == [MACS[0]]
            assert c.carriers[0].location == (0, 0)
            result = await c.run(0.03, channels=4, sample_rate=10_000).addTimeout(T, reactor)
            assert result.data_lane == "tcp"  # our proxy answers 316
            check(result, MACS[:1], 4, 300)
            assert await c.ping().addTimeout(T, reactor) >= 0
        finally:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_three_backends(reactor):
    async with proxy_with(reactor, 3) as (_devices, service):
        c = await connect("127.0.0.1", service.address[1], reactor=reactor)
        try:
            assert c.topology == "proxy"
            assert [(x.mac, x.location) for x in c.carriers] == [
                (m, (0, i)) for i, m in enumerate(MACS)]
            result = await c.run(0.05, channels=3, sample_rate=20_000).addTimeout(T, reactor)
            check(result, MACS, 3, 1000)
            assert {s.carrier for s in result.states} == set(MACS)
            ov = await c.overload_status().addTimeout(T, reactor)
            assert not ov.global_overload
        finally:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_second_client_waits_for_the_first_without_seeing_busy(reactor):
    async with proxy_with(reactor, 1) as (_devices, service):
        port = service.address[1]
        first = await connect("127.0.0.1", port, reactor=reactor)
        second = third = None
        try:
            await first.run(0.01, channels=2).addTimeout(T, reactor)
            third = await connect("127.0.0.1", port, reactor=reactor, busy_retry=0.05,
                                  busy_timeout=3.0)  # retries, even on a busy host
            with pytest.raises(DeviceBusyError) as err:
                await third.run(0.01, channels=2).addTimeout(T, reactor)
            assert err.value.attempts >= 2
            await third.close()
            second = await connect("127.0.0.1", port, reactor=reactor, busy_retry=0.05)
            pending = second.run(0.02, channels=2, sample_rate=10_000)
            await until(reactor, lambda: second.control.counters.busy_answers >= 2, "busy")
            assert not pending.called
            await first.close()
            result = await pending.addTimeout(T, reactor)
            check(result, MACS[:1], 2, 200)
        finally:
            for c in (first, second, third):
                if c is not None:
                    await c.close()


@pytest_twisted.ensureDeferred
async def test_cancelled_run_leaves_the_proxy_ready(reactor):
    async with proxy_with(reactor, 1) as (devices, service):
        port = service.address[1]
        a = await connect("127.0.0.1", port, reactor=reactor)
        b = None
        try:
            chunks = []
            d = a.run(5.0, channels=2, sample_rate=1_000, on_chunk=chunks.append)
            await until(reactor, lambda: chunks, "the first chunk")
            d.cancel()
            with pytest.raises(defer.CancelledError):
                await d
            await until(reactor, lambda: devices[0].counters.runs_stopped == 1, "stop_run")
            again = await a.run(0.01, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            check(again, MACS[:1], 2, 100)
            # cancel again and hang up mid-run: the next session gets the proxy
            chunks.clear()
            d = a.run(5.0, channels=2, sample_rate=1_000, on_chunk=chunks.append)
            await until(reactor, lambda: chunks, "the first chunk")
            d.cancel()
            with pytest.raises(defer.CancelledError):
                await d
            await a.close()
            b = await connect("127.0.0.1", port, reactor=reactor)
            result = await b.run(0.02, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            check(result, MACS[:1], 2, 200)
            assert b.stale_notifications == 0
        finally:
            for c in (a, b):
                if c is not None:
                    await c.close()


@pytest_twisted.ensureDeferred
async def test_bearer_token(reactor):
    async with proxy_with(reactor, 1, auth_token="s3cret") as (_devices, service):
        port = service.address[1]
        with pytest.raises(RequestFailed):
            await connect("127.0.0.1", port, reactor=reactor)
        with pytest.raises(AuthenticationError):
            await connect("127.0.0.1", port, reactor=reactor, auth_token="wrong")
        c = await connect("127.0.0.1", port, reactor=reactor, auth_token="s3cret")
        try:
            result = await c.run(0.01, channels=2).addTimeout(T, reactor)
            check(result, MACS[:1], 2, 100)
        finally:
            await c.close()

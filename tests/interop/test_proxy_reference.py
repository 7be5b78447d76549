"""The unmodified reference client through our proxy, in front of the reference mock device
(1 and 2 carriers, UDP accepted or refused) and of our simulated device."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import pytest_twisted
from support.reference import start_ref_client, start_ref_mock
from support.waiting import until

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.signals import expected_decoded
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

pytestmark = pytest.mark.interop


@contextlib.asynccontextmanager
async def our_proxy(reactor, backend_port, **config):
    service = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", backend_port),), interface="127.0.0.1",
                    port=0, **config),
        reactor,
    )
    service.startService()
    try:
        await service.when_healthy().addTimeout(20, reactor)
        yield service
    finally:
        await service.stopService()


@contextlib.asynccontextmanager
async def ref_mock(reactor, **kwargs):
    mock = await start_ref_mock(reactor, **kwargs)
    try:
        yield mock
    finally:
        await mock.stop()


@contextlib.asynccontextmanager
async def sim_device(reactor, **kwargs):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(**kwargs))
    device.listen(0, interface="127.0.0.1")
    try:
        yield device
    finally:
        await device.stop()


def _note_time(result, reactor, times, index):
    times[index] = reactor.seconds()
    return result


def mock_signal(n, channels, rate):
    """The reference mock's samples: channel i is sin(t + 2π i / 8), t = k / rate, float32."""
    t = np.arange(n) / rate
    cols = [np.sin(t + i / 8 * 2 * np.pi).astype(np.float32) for i in range(channels)]
    return np.stack(cols, axis=1).astype(np.float64)


@pytest.mark.parametrize(
    ("carriers", "refuse_udp"), [(1, False), (2, False), (2, True)],
    ids=["1-carrier", "2-carriers", "2-carriers-tcp"],
)
@pytest_twisted.ensureDeferred
async def test_reference_client_via_our_proxy_and_reference_mock(
    reactor, ref_python, carriers, refuse_udp
):
    async with ref_mock(reactor, carriers=carriers, refuse_udp=refuse_udp) as mock, \
            our_proxy(reactor, mock.port) as proxy:
        assert proxy.lanes[0].data_mode == ("tcp" if refuse_udp else "udp")
        client = start_ref_client(reactor, proxy.address[1], channels=4, sample_rate=20_000,
                                  op_time_ns=20_000_000)
        result = await client.result()
    assert result.ok, result.describe()
    macs = [f"00-00-00-00-00-0{i}" for i in range(carriers)]
    assert result.report["carriers"] == macs
    per_carrier = result.carrier_samples()
    assert sorted(per_carrier) == macs
    for mac in macs:
        np.testing.assert_allclose(per_carrier[mac], mock_signal(400, 4, 20_000), atol=1e-7)
    assert proxy.router.counters.gaps == 0


@pytest.mark.parametrize("refuse_udp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("carriers", [1, 2])
@pytest_twisted.ensureDeferred
async def test_reference_client_via_our_proxy_and_simulated_device(
    reactor, ref_python, carriers, refuse_udp
):
    async with sim_device(reactor, carriers=carriers, refuse_udp=refuse_udp) as device, \
            our_proxy(reactor, device.port) as proxy:
        client = start_ref_client(reactor, proxy.address[1], channels=3, sample_rate=50_000,
                                  op_time_ns=10_000_000)
        result = await client.result()
        paths = device.carrier_paths
    assert result.ok, result.describe()
    per_carrier = result.carrier_samples()
    assert sorted(per_carrier) == sorted(p.strip("/") for p in paths)
    for index, path in enumerate(paths):
        np.testing.assert_array_equal(per_carrier[path.strip("/")],
                                      expected_decoded(index, 3, 0, 500))


@pytest_twisted.ensureDeferred
async def test_two_reference_clients_second_busy_then_completes_after_the_first(
    reactor, ref_python
):
    async with ref_mock(reactor, carriers=2) as mock, our_proxy(reactor, mock.port) as proxy:
        clients = [
            start_ref_client(reactor, proxy.address[1], channels=2, sample_rate=10_000,
                             op_time_ns=10_000_000, hold=1.0)
            for _ in range(2)
        ]
        end_times: list[float] = [0.0, 0.0]
        for i, c in enumerate(clients):
            c.proc.ended.addBoth(_note_time, reactor, end_times, i)
        results = [await c.result() for c in clients]
        busy = proxy.front.counters.busy
    for result in results:
        assert result.ok, result.describe()
        assert result.carrier_samples()["00-00-00-00-00-01"].shape == (100, 2)
    assert busy >= 1
    connect = [r.report["connect_seconds"] for r in results]
    first, second = np.argsort(connect)
    assert connect[second] > connect[first] + 0.5  # it waited: busy, retry after 2 s
    assert end_times[second] > end_times[first]


@pytest_twisted.ensureDeferred
async def test_killed_reference_client_does_not_leak_into_the_next_session(reactor, ref_python):
    async with ref_mock(reactor, carriers=2, simulate_op_time=True) as mock, \
            our_proxy(reactor, mock.port) as proxy:
        victim = start_ref_client(reactor, proxy.address[1], channels=2, sample_rate=2_000,
                                  op_time_ns=3_000_000_000)
        await until(reactor, lambda: proxy.router.counters.forwarded >= 4)
        victim.kill()
        await victim.proc.ended
        await until(reactor, lambda: proxy.scheduler.active is None)
        assert proxy.dispatcher.counters.stop_runs == 1
        survivor = start_ref_client(reactor, proxy.address[1], channels=2, sample_rate=10_000,
                                    op_time_ns=20_000_000)
        result = await survivor.result()
        leaked = proxy.router.counters.foreign_run
    assert result.ok, result.describe()
    for mac in ("00-00-00-00-00-00", "00-00-00-00-00-01"):
        np.testing.assert_allclose(result.carrier_samples()[mac], mock_signal(200, 2, 10_000),
                                   atol=1e-7)
    assert leaked > 0  # the mock kept sending the dead run; the proxy dropped it


@pytest_twisted.ensureDeferred
async def test_reference_client_without_a_token_is_refused_clearly(reactor, ref_python):
    """With --auth the unmodified client (which never authenticates) gets the reason."""
    async with ref_mock(reactor, carriers=1) as mock, \
            our_proxy(reactor, mock.port, auth_token="tok") as proxy:
        client = start_ref_client(reactor, proxy.address[1], timeout=30)
        result = await client.result()
        assert proxy.scheduler.count == 0
    assert not result.ok
    assert "Authentication required" in result.report.get("error", ""), result.describe()

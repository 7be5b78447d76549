"""The unmodified reference client through our proxy in front of several backends: simulated
devices and the reference mock mixed, a backend killed mid-run, duplicate MACs, and our proxy
chained behind our proxy."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import pytest_twisted
from support.proxy_multi import backend_file, mock_signal, proxy, sim
from support.reference import start_ref_client, start_ref_mock
from support.waiting import until

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.device.signals import expected_decoded

pytestmark = pytest.mark.interop


@contextlib.asynccontextmanager
async def ref_mock(reactor, **kwargs):
    mock = await start_ref_mock(reactor, **kwargs)
    try:
        yield mock
    finally:
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_reference_client_sees_one_computer_of_three_mixed_backends(
    reactor, ref_python, tmp_path
):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B", refuse_udp=True) as b, \
            ref_mock(reactor, carriers=1) as mock:
        path = backend_file(tmp_path, [
            f"carrier 127.0.0.1:{a.port} 0/0",
            f"carrier 127.0.0.1:{b.port} 0/1",
            f"carrier 127.0.0.1:{mock.port} 0/2",
            "wire 0/0/0 0/1/0",
            "wire 0/1/aux0 0/2/3",
            "wire 0/2/7 0/0/gen1",
        ])
        async with proxy(reactor, path) as service:
            result = await start_ref_client(reactor, service.address[1], channels=3,
                                            sample_rate=20_000, op_time_ns=20_000_000,
                                            runs=2).result()
            gaps = service.router.counters.gaps
    assert result.ok, result.describe()
    assert result.report["carriers"] == ["00-00-00-00-00-0A", "00-00-00-00-00-0B",
                                         "00-00-00-00-00-00"]
    assert result.report["wiring_items"] == 3
    for run in range(2):
        got = result.carrier_samples(run)
        assert sorted(got) == ["00-00-00-00-00-00", "00-00-00-00-00-0A", "00-00-00-00-00-0B"]
        for mac in ("00-00-00-00-00-0A", "00-00-00-00-00-0B"):
            np.testing.assert_array_equal(got[mac], expected_decoded(0, 3, 0, 400))
        np.testing.assert_allclose(got["00-00-00-00-00-00"], mock_signal(400, 3, 20_000),
                                   atol=1e-7)
    assert gaps == 0


@pytest_twisted.ensureDeferred
async def test_backend_killed_mid_run_reference_client_gets_the_reason_then_runs_again(
    reactor, ref_python
):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            ref_mock(reactor, carriers=1) as mock:
        config = DeviceConfig(first_mac="00-00-00-00-00-0B")
        victim = SimulatedDevice(reactor=reactor, config=config)
        victim.listen(0, interface="127.0.0.1")
        port = victim.port
        revived = None
        try:
            async with proxy(reactor, f"127.0.0.1:{a.port}", f"127.0.0.1:{port}",
                             f"127.0.0.1:{mock.port}") as service:
                doomed = start_ref_client(reactor, service.address[1], channels=2,
                                          sample_rate=1_000, op_time_ns=3_000_000_000)
                await until(reactor, lambda: victim.counters.chunks_sent >= 2)
                await victim.stop()
                failed = await doomed.result()
                await until(reactor, lambda: service.scheduler.active is None)
                revived = SimulatedDevice(reactor=reactor, config=config)
                revived.listen(port, interface="127.0.0.1")
                await service.when_healthy().addTimeout(20, reactor)
                result = await start_ref_client(reactor, service.address[1], channels=2,
                                                sample_rate=10_000,
                                                op_time_ns=20_000_000).result()
                stops = service.dispatcher.counters.stop_runs
        finally:
            await victim.stop()
            if revived is not None:
                await revived.stop()
    assert not failed.ok
    error = failed.report["runs"][0].get("error", "")
    assert f"Cluster degraded: backend 127.0.0.1:{port} lost" in error, failed.describe()
    assert "00-00-00-00-00-0B" in error  # the reference client names the failed carrier
    assert stops >= 1  # the surviving backends were told to stop
    assert result.ok, result.describe()
    got = result.carrier_samples()
    np.testing.assert_array_equal(got["00-00-00-00-00-0B"], expected_decoded(0, 2, 0, 200))
    np.testing.assert_allclose(got["00-00-00-00-00-00"], mock_signal(200, 2, 10_000), atol=1e-7)


@pytest_twisted.ensureDeferred
async def test_two_reference_mocks_with_the_same_mac_are_refused_clearly(reactor, ref_python):
    async with ref_mock(reactor, carriers=1) as first, ref_mock(reactor, carriers=1) as second:
        async with proxy(reactor, f"127.0.0.1:{first.port},127.0.0.1:{second.port}",
                         healthy=False) as service:
            await until(reactor, lambda: all(lane.healthy for lane in service.lanes))
            result = await start_ref_client(reactor, service.address[1], timeout=30).result()
    assert not result.ok
    error = result.report.get("error", "")
    assert "carrier /00-00-00-00-00-00 is reported by backend" in error, result.describe()
    assert f"127.0.0.1:{first.port}" in error and f"127.0.0.1:{second.port}" in error


@pytest_twisted.ensureDeferred
async def test_reference_client_through_two_chained_proxies(reactor, ref_python, tmp_path):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B", carriers=2,
                stamp_state_entity=False) as b, \
            ref_mock(reactor, carriers=1) as mock:
        inner_file = backend_file(tmp_path, [f"carrier 127.0.0.1:{a.port} 0/0",
                                             f"carrier 127.0.0.1:{b.port} 0/1",
                                             f"carrier 127.0.0.1:{mock.port} 0/3",
                                             "wire 0/0/1 0/3/1"])
        async with proxy(reactor, inner_file) as inner, \
                proxy(reactor, f"127.0.0.1:{inner.address[1]}") as outer:
            result = await start_ref_client(reactor, outer.address[1], channels=2,
                                            sample_rate=20_000, op_time_ns=10_000_000,
                                            runs=2).result()
            connects = outer.lanes[0].counters.connects
    assert result.ok, result.describe()
    macs = ["00-00-00-00-00-0A", "00-00-00-00-00-0B", "00-00-00-00-00-0C", "00-00-00-00-00-00"]
    assert result.report["carriers"] == macs
    assert result.report["wiring_items"] == 1
    for run in range(2):
        got = result.carrier_samples(run)
        assert sorted(got) == sorted(macs)
        for mac, index in zip(macs[:3], (0, 0, 1), strict=True):
            np.testing.assert_array_equal(got[mac], expected_decoded(index, 2, 0, 200))
        np.testing.assert_allclose(got[macs[3]], mock_signal(200, 2, 20_000), atol=1e-7)
    assert connects == 1

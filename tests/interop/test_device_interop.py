"""Issue 2.6: the UNMODIFIED reference client (pybrid-computing 0.12.10, a child process) runs
computations directly against our simulated device, and every sample it assembles is the
value :func:`pybrid.device.expected` says the simulator generated.

One carrier is a LUCIDAC to the reference client (direct topology); two carriers make it use
its proxy topology on the one connection, attributing each state stream by its ``entity``
(like the reference ``pybrid dummy`` with its default 2 carriers, but with stamped states).
Default probes are ``carrier × channels + channel``, so ``run.data[p]`` never mixes carriers.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted
from support.reference import RefClientResult, run_ref_client

from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected

pytestmark = pytest.mark.interop

T = 90.0
MACS = ("00-00-00-00-00-01", "00-00-00-00-00-02")


async def _device(reactor, **config) -> SimulatedDevice:
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(**config))
    dev.listen(0, interface="127.0.0.1")
    return dev


def _check_values(result: RefClientResult, carriers: int, channels: int, count: int,
                  run: int = 0) -> None:
    assert result.report["carriers"] == list(MACS[:carriers]), result.describe()
    per_carrier = result.carrier_samples(run)
    assert sorted(per_carrier) == list(MACS[:carriers]), result.describe()
    for index, mac in enumerate(MACS[:carriers]):
        want = expected(index, channels, 0, count).astype(np.float64)
        np.testing.assert_array_equal(per_carrier[mac], want)  # what SampleListener saw
        for ch in range(channels):  # run.data as the reference assembled it
            np.testing.assert_array_equal(result.probe(index * channels + ch, run), want[:, ch])
    assert result.report["runs"][run]["final_values"] == carriers * channels


@pytest.mark.parametrize("carriers", [1, 2])
@pytest.mark.parametrize("refuse_udp", [False, True], ids=["udp", "refused-udp"])
@pytest_twisted.ensureDeferred
async def test_reference_client_gets_every_sample(reactor, ref_python, carriers,
                                                  refuse_udp) -> None:
    dev = await _device(reactor, carriers=carriers, refuse_udp=refuse_udp)
    try:
        result = await run_ref_client(reactor, dev.port, channels=8, sample_rate=100_000,
                                      op_time_ns=30_050_000, runs=2, timeout=T)
        assert result.ok, result.describe()
        for run in (0, 1):
            _check_values(result, carriers, 8, 3005, run)  # 30 full chunks and one of 5
        c = dev.counters
        assert c.runs_done == 2
        assert c.chunks_sent == 2 * carriers * 31 and c.chunks_dropped == 0
        if refuse_udp:
            assert c.udp_refused == 1 and c.datagrams_sent == 0
        else:
            assert c.datagrams_sent == 2 * carriers * (31 + 5 + 1) and c.datagram_errors == 0
    finally:
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_unstamped_states_like_the_reference_mock(reactor, ref_python) -> None:
    dev = await _device(reactor, carriers=2, stamp_state_entity=False)
    try:
        result = await run_ref_client(reactor, dev.port, channels=4, sample_rate=50_000,
                                      op_time_ns=10_000_000, timeout=T)
        assert result.ok, result.describe()
        _check_values(result, 2, 4, 500)
    finally:
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_error_fault_fails_the_reference_run(reactor, ref_python) -> None:
    dev = await _device(reactor, carriers=2, faults=Faults(error_after_chunks=3))
    try:
        result = await run_ref_client(reactor, dev.port, channels=2, sample_rate=10_000,
                                      op_time_ns=100_000_000, timeout=T)
        assert result.exit_code == 3, result.describe()
        run = result.report["runs"][0]
        assert run["state"] == "EXCEPTION"
        assert "simulated fault: error after 3 chunks" in run["error"]
        assert dev.counters.runs_failed == 1
    finally:
        await dev.stop()

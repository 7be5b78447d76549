"""The reference peers themselves: mock device ↔ reference client, and through the reference
proxy.  These pin down the harness other interop tests rely on, and the reference behaviour
our code must match (sample values of the mock are a sine per channel)."""

import numpy as np
import pytest_twisted
from support.reference import run_ref_client, start_ref_mock, start_ref_proxy


@pytest_twisted.ensureDeferred
async def test_reference_client_against_reference_mock(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1)
    try:
        result = await run_ref_client(
            reactor, mock.port, channels=4, sample_rate=10_000, op_time_ns=20_000_000
        )
    finally:
        await mock.stop()
    assert result.ok, result.describe()
    assert result.report["carriers"] == ["00-00-00-00-00-00"]
    per_carrier = result.carrier_samples()
    assert list(per_carrier) == ["00-00-00-00-00-00"]
    samples = per_carrier["00-00-00-00-00-00"]
    assert samples.shape == (200, 4)
    np.testing.assert_array_equal(result.probe(2), samples[:, 2])


@pytest_twisted.ensureDeferred
async def test_reference_client_through_reference_proxy(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1)
    proxy = await start_ref_proxy(reactor, [f"127.0.0.1:{mock.port}"])
    try:
        result = await run_ref_client(
            reactor, proxy.port, channels=2, sample_rate=10_000, op_time_ns=10_000_000
        )
    finally:
        await proxy.stop()
        await mock.stop()
    assert result.ok, result.describe()
    assert result.carrier_samples()["00-00-00-00-00-00"].shape == (100, 2)

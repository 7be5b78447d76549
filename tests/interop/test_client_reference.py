"""Our client against the reference peers: the reference mock device (directly, UDP and refused
UDP, one and two carriers) and the reference C++ proxy in front of it (runs, busy handling,
cancellation, authentication).

Expected values are recomputed from what the reference mock does (read from
``pybrid/mock/handler/start_run.py``): channel ``i`` of sample ``n`` is
``float32(sin(n / rate + 2π i / 8))``; the final value of channel ``i`` is
``float32((i - N//2) / max(N//2, 1))``; ``max(1, int(op_ns × rate / 1e9))`` samples per carrier
in chunks of 100; every carrier of the mock sends the same values.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted
from support.reference import spawn, start_ref_mock, start_ref_proxy
from support.waiting import until
from twisted.internet import defer

from pybrid.client import DeviceBusyError, connect
from pybrid.client.errors import AuthenticationError, RequestFailed

pytestmark = pytest.mark.interop

ONE = "00-00-00-00-00-00"
TWO = "00-00-00-00-00-01"
T = 30.0  # bound on every wait


def mock_samples(channels: int, count: int, rate: int) -> np.ndarray:
    t = np.arange(count) / rate
    phase = np.arange(channels) / 8 * 2 * np.pi
    return np.sin(t[:, None] + phase[None, :]).astype(np.float32).astype(np.float64)


def mock_final(channels: int) -> np.ndarray:
    half = channels // 2
    return ((np.arange(channels) - half) / max(half, 1)).astype(np.float32).astype(np.float64)


def check_run(result, carriers, channels, count, rate):
    assert set(result.carriers) == set(carriers)
    for mac in carriers:
        c = result[mac]
        assert c.samples.shape == (count, channels), mac
        np.testing.assert_allclose(c.samples, mock_samples(channels, count, rate),
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(c.final, mock_final(channels))
        assert c.chunks == -(-count // 100) and c.chunk_gaps == 0 and c.complete
        assert c.states[0] == "TAKE_OFF" and c.states[-1] == "DONE"
        assert c.probes == tuple(range(channels))


@pytest_twisted.ensureDeferred
async def test_direct_to_reference_mock_by_udp(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1)
    try:
        c = await connect("127.0.0.1", mock.port, reactor=reactor).addTimeout(T, reactor)
        try:
            assert c.topology == "direct"
            assert [x.mac for x in c.carriers] == [ONE]
            assert c.carriers[0].location == (0, 0)
            rtt = await c.ping().addTimeout(T, reactor)
            assert 0 <= rtt < T
            result = await c.run(0.025, channels=4, sample_rate=10_000).addTimeout(T, reactor)
            assert result.data_lane == "udp"
            check_run(result, [ONE], 4, 250, 10_000)
            assert c.udp_lane.counters.datagrams >= 3 + 5 + 1
            assert result.overload is not None and not result.overload.global_overload
            # a second run on the same connection
            again = await c.run(0.01, channels=2, sample_rate=20_000).addTimeout(T, reactor)
            check_run(again, [ONE], 2, 200, 20_000)
        finally:
            await c.close()
    finally:
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_direct_to_reference_mock_refusing_udp(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1, refuse_udp=True)
    try:
        c = await connect(f"tcp:host=127.0.0.1:port={mock.port}", reactor=reactor)
        try:
            result = await c.run(0.02, channels=3, sample_rate=10_000).addTimeout(T, reactor)
            assert result.data_lane == "tcp" and c.udp_refusal is not None
            check_run(result, [ONE], 3, 200, 10_000)
        finally:
            await c.close()
    finally:
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_two_carrier_mock_unstamped_states_apply_to_both(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=2)
    try:
        c = await connect("127.0.0.1", mock.port, reactor=reactor)
        try:
            assert c.topology == "proxy"
            assert [x.mac for x in c.carriers] == [ONE, TWO]
            result = await c.run(0.01, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            check_run(result, [ONE, TWO], 2, 100, 10_000)
            assert all(s.carrier is None for s in result.states)
        finally:
            await c.close()
    finally:
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_configure_from_apb_reaches_the_mock(reactor, ref_python, tmp_path):
    """The mock takes its channel count from the stored configuration's AdcConfig."""
    from pybrid.client import save_apb
    from pybrid.proto import pb

    module = pb.Module()
    item = module.items.add()
    item.entity.path = f"/{ONE}"
    for i in range(3):
        item.adc_config.channels.add(idx=i, gain=1.0, probe=i)
    path = tmp_path / "three.apb"
    save_apb(module, path)
    mock = await start_ref_mock(reactor, carriers=1)
    try:
        c = await connect("127.0.0.1", mock.port, reactor=reactor)
        try:
            await c.configure(path).addTimeout(T, reactor)
            stored = await c.extract(specification=False, configuration=True)
            assert list(stored.items) == list(module.items)
            result = await c.run(0.01, channels=8, sample_rate=10_000).addTimeout(T, reactor)
            assert result.samples.shape == (100, 3)
            await c.reset().addTimeout(T, reactor)
            await c.calibrate().addTimeout(T, reactor)
            result = await c.run(0.01, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            # calibrated: the mock scales its samples by 0.5
            np.testing.assert_allclose(result.samples, 0.5 * mock_samples(2, 100, 10_000),
                                       rtol=1e-6, atol=1e-7)
        finally:
            await c.close()
    finally:
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_through_reference_proxy(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1)
    proxy = await start_ref_proxy(reactor, [f"127.0.0.1:{mock.port}"])
    try:
        c = await connect("127.0.0.1", proxy.port, reactor=reactor).addTimeout(T, reactor)
        try:
            assert c.topology == "direct" and [x.mac for x in c.carriers] == [ONE]
            result = await c.run(0.03, channels=4, sample_rate=10_000).addTimeout(T, reactor)
            # the reference proxy refuses UDP with an error_message: TCP fallback
            assert result.data_lane == "tcp"
            assert "not supported" in c.udp_refusal
            check_run(result, [ONE], 4, 300, 10_000)
            assert await c.ping("v1").addTimeout(T, reactor) >= 0
        finally:
            await c.close()
    finally:
        await proxy.stop()
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_busy_proxy_second_client_waits_then_completes(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1)
    proxy = await start_ref_proxy(reactor, [f"127.0.0.1:{mock.port}"])
    first = second = third = None
    try:
        first = await connect("127.0.0.1", proxy.port, reactor=reactor)
        await first.run(0.01, channels=2).addTimeout(T, reactor)  # first holds the session
        # a busy_timeout: a clear DeviceBusyError after retries (long enough for a busy host)
        third = await connect("127.0.0.1", proxy.port, reactor=reactor, busy_retry=0.05,
                              busy_timeout=3.0)
        with pytest.raises(DeviceBusyError) as err:
            await third.run(0.01, channels=2).addTimeout(T, reactor)
        assert err.value.attempts >= 2 and 0 < err.value.waited < T
        await third.close()
        # the default busy handling: the caller only sees the result
        second = await connect("127.0.0.1", proxy.port, reactor=reactor, busy_retry=0.1)
        pending = second.run(0.02, channels=3, sample_rate=10_000)
        await until(reactor, lambda: second.control.counters.busy_answers >= 2, "busy answers")
        assert not pending.called
        await first.close()
        result = await pending.addTimeout(T, reactor)
        check_run(result, [ONE], 3, 200, 10_000)
    finally:
        for c in (first, second, third):
            if c is not None:
                await c.close()
        await proxy.stop()
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_cancelled_run_leaves_the_proxy_ready(reactor, ref_python):
    mock = await start_ref_mock(reactor, carriers=1, simulate_op_time=True)
    proxy = await start_ref_proxy(reactor, [f"127.0.0.1:{mock.port}"])
    a = b = None
    try:
        a = await connect("127.0.0.1", proxy.port, reactor=reactor)
        chunks = []
        long_run = a.run(3.0, channels=2, sample_rate=1_000, on_chunk=chunks.append)
        await until(reactor, lambda: chunks, "the first chunk")
        long_run.cancel()
        with pytest.raises(defer.CancelledError):
            await long_run
        # the same session can run again; the stopped run's data is filtered out
        again = await a.run(0.01, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        check_run(again, [ONE], 2, 100, 10_000)
        await a.close()
        # and the next session gets the proxy
        b = await connect("127.0.0.1", proxy.port, reactor=reactor)
        result = await b.run(0.02, channels=2, sample_rate=10_000).addTimeout(T, reactor)
        check_run(result, [ONE], 2, 200, 10_000)
    finally:
        for c in (a, b):
            if c is not None:
                await c.close()
        await proxy.stop()
        await mock.stop()


@pytest_twisted.ensureDeferred
async def test_bearer_token_through_reference_proxy(reactor, ref_python):
    from support.reference import REF_BIN, _started

    mock = await start_ref_mock(reactor, carriers=1)
    argv = [str(REF_BIN / "pybrid"), "proxy", "-l", "127.0.0.1", "-p", "0",
            "-b", f"127.0.0.1:{mock.port}", "--auth"]
    proc = spawn(reactor, "ref-proxy-auth", argv, ready_pattern=rb"listening on [^\s:]+:(\d+)",
                 env={"PYBRID_AUTHENTICATION": "s3cret"})
    proxy = await _started(proc, reactor, T)
    try:
        with pytest.raises(RequestFailed, match="Authentication required"):
            await connect("127.0.0.1", proxy.port, reactor=reactor)
        with pytest.raises(AuthenticationError, match="Authentication failed"):
            await connect("127.0.0.1", proxy.port, reactor=reactor, auth_token="wrong")
        c = await connect("127.0.0.1", proxy.port, reactor=reactor, auth_token="s3cret")
        try:
            result = await c.run(0.01, channels=2).addTimeout(T, reactor)
            check_run(result, [ONE], 2, 100, 10_000)
        finally:
            await c.close()
    finally:
        await proxy.stop()
        await mock.stop()

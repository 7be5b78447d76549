"""Errors that must arrive: each failure reaches the unmodified reference client promptly.

Scenarios (issue 15, point 5): a standalone-ping connection with several pings, a ``.apb``
saved by the reference through our proxy, a queued reference client with ``--session-timeout
2``, a reference client that stops reading (SIGSTOP) until its queue overflows, and SIGTERM to
``twistd pybrid-proxy`` mid-run.  Times from the event to the reference client's report are
printed (``-s``) and summed up in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys

import pytest
import pytest_twisted
from support.proxy_multi import backend_file, proxy, sim
from support.reference import REF_BIN, spawn, start_ref_client, start_ref_mock
from support.waiting import until

pytestmark = pytest.mark.interop

BIN = pathlib.Path(sys.executable).parent


@contextlib.asynccontextmanager
async def ref_mock(reactor, **kwargs):
    mock = await start_ref_mock(reactor, **kwargs)
    try:
        yield mock
    finally:
        await mock.stop()


async def finished(proc, reactor, timeout=60.0):
    """Wait (bounded) for a child to exit; its exit code."""
    killer = reactor.callLater(timeout, proc.signal, "KILL")
    try:
        return await proc.ended
    finally:
        if killer.active():
            killer.cancel()


@pytest_twisted.ensureDeferred
async def test_reference_ping_count_3_gets_3_replies_through_our_proxy(reactor, ref_python):
    async with sim(reactor) as device, proxy(reactor, f"127.0.0.1:{device.port}") as service:
        ping = spawn(reactor, "ref-ping", [str(REF_BIN / "pybrid"), "ping", "127.0.0.1",
                                           "-p", str(service.address[1]), "-c", "3"])
        code = await finished(ping, reactor)
        out = ping.stdout.decode(errors="replace")
        assert code == 0, ping.tail()
        assert out.count("Reply from") == 3, ping.tail()
        assert "failed" not in out
        assert service.front.counters.standalone_pings == 1
        assert service.scheduler.count == 0  # a ping connection holds no session


@pytest_twisted.ensureDeferred
async def test_reference_full_apb_runs_through_our_proxy(reactor, ref_python, tmp_path):
    apb = tmp_path / "full.apb"
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B") as b:
        path = backend_file(tmp_path, [f"carrier 127.0.0.1:{a.port} 0/0",
                                       f"carrier 127.0.0.1:{b.port} 0/1"])
        async with proxy(reactor, path) as service:
            port = str(service.address[1])
            extract = spawn(reactor, "ref-extract", [
                str(REF_BIN / "pybrid"), "redac", "-h", "127.0.0.1", "-p", port, "extract",
                "--configuration", "-e", str(apb)])
            assert await finished(extract, reactor) == 0, extract.tail()
            assert apb.exists(), extract.tail()
            run = spawn(reactor, "pybrid-run", [
                str(BIN / "pybrid-run"), "127.0.0.1", "-p", port, "-c", str(apb), "-n", "2",
                "-t", "0.005", "-o", str(tmp_path / "out.npz"), "--no-progress"])
            code = await finished(run, reactor)
            assert code == 0, run.tail()
            assert b"configured from" in run.stdout, run.tail()
    from pybrid.client import load_apb

    kinds = [i.WhichOneof("kind") for i in load_apb(apb).items]
    assert "entity_specification" in kinds  # the file does hold the descriptions


@pytest_twisted.ensureDeferred
async def test_queued_reference_client_is_not_timed_out_while_it_keeps_asking(
    reactor, ref_python
):
    """--session-timeout 2: the queued client resends its busy request every 2 s + a round
    trip; it waits its turn through a 5 s run of the first client, is promoted and runs."""
    async with ref_mock(reactor, carriers=2, simulate_op_time=True) as mock, \
            proxy(reactor, f"127.0.0.1:{mock.port}", session_timeout=2.0) as service:
        port = service.address[1]
        first = start_ref_client(reactor, port, channels=1, sample_rate=1_000,
                                 op_time_ns=5_000_000_000)
        await first.connected
        await until(reactor, lambda: service.dispatcher.counters.runs >= 1, "first run")
        second = start_ref_client(reactor, port, channels=1, sample_rate=1_000,
                                  op_time_ns=10_000_000)
        results = [await first.result(), await second.result()]
        busy, timeouts = service.front.counters.busy, service.scheduler.timeouts
    for result in results:
        assert result.ok, result.describe()
    assert busy >= 2  # it was told busy, and asked again, more than once
    assert timeouts == 0

"""Load on real sockets (issue 8, part 3): many clients at once, and connect/disconnect cycles.

The proxy is a ``twistd -n pybrid-proxy`` child process, so that its memory (``VmRSS`` from
``/proc/<pid>/status``) is its own; the device is in-process.

* 1 000 clients connect at once and each asks for the device's description: with the default
  ``--max-sessions 8`` the first eight are served and every other one is told
  "Server overloaded" and closed; with ``--max-sessions 2000`` all are admitted, one holds the
  device and 999 are queued (answered busy) — or all 1000 when the device's lane was not ready
  at that moment (under load: the device is in the test's busy process).  RSS stays bounded.
* 200 connect/disconnect cycles (discovery, claim, ping, close): RSS grows by less than 5 MiB
  (the reference allows 50 MiB).
``benchmarks/load.py`` prints the same figures with timings.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from support.load_peers import first_frame, raise_nofile, rss_kib, start_proxy
from support.proxy_client import connect
from twisted.internet import defer

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.wire import messages

SPEC = pb.ExtractCommand(recursive=True, specification=True)
MIB = 1024


async def one_client(reactor, port, claim, outcome):
    """Connect, ask for the description (and the device); record what happened."""
    try:  # 1000 at once on a busy host: a connect may wait for the proxy's accept passes
        client = await connect(reactor, port, timeout=60)
    except Exception as e:
        outcome["connect failed"] = outcome.get("connect failed", 0) + 1
        outcome.setdefault("errors", []).append(repr(e))
        return None
    client.timeout = 60.0
    client.sendEnvelope(messages.v1("extract_command", SPEC, id="x"))
    if claim:
        client.sendEnvelope(messages.v1("get_overload_status_command", id="c"))
    first = await first_frame(client)
    kind = messages.kind_of(first) if first is not None else "closed without a reply"
    if first is None:
        key = kind
    elif kind == "error_message":
        text = first.message_v1.error_message.description
        await client.closed.addTimeout(30, reactor)
        key = f"refused: {text}"
    elif claim:
        second = await client.expect(lambda e: messages.request_id(e) == "c", timeout=60)
        key = f"claimed: {messages.kind_of(second)}"
    else:
        key = f"served: {kind}"
    outcome[key] = outcome.get(key, 0) + 1
    return client


@pytest.mark.parametrize("max_sessions", [8, 2000])
@pytest_twisted.ensureDeferred
async def test_a_thousand_clients_at_once(reactor, max_sessions):
    if raise_nofile(4096) < 2200:
        pytest.skip("1 000 connections need RLIMIT_NOFILE >= 2200 (the hard limit is lower)")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    device.listen(0, interface="127.0.0.1")
    proxy = await start_proxy(reactor, [f"127.0.0.1:{device.port}"],
                              "--max-sessions", str(max_sessions), "--session-timeout", "60")
    clients = []
    try:
        await proxy.wait_for_output(b"ready: carriers", 30)
        before = rss_kib(proxy.pid)
        outcome: dict = {}
        claim = max_sessions > 8
        results = await defer.gatherResults([
            defer.ensureDeferred(one_client(reactor, proxy.port, claim, outcome))
            for _ in range(1000)
        ])
        clients = [c for c in results if c is not None]
        peak = rss_kib(proxy.pid)
        assert "connect failed" not in outcome, outcome
        if max_sessions == 8:
            assert outcome == {"served: extract_response": 8,
                               "refused: Server overloaded": 992}, outcome
        else:
            # all admitted and answered; at most one holds the device (none when the in-process
            # device's lane was not ready at that moment on a busy host: every claim waits)
            served = outcome.get("claimed: get_overload_status_response", 0)
            assert served <= 1 and outcome.get("claimed: busy_response", 0) == 1000 - served
            assert set(outcome) <= {"claimed: get_overload_status_response",
                                    "claimed: busy_response"}, outcome
        for c in clients:
            c.transport.loseConnection()
        await defer.gatherResults([c.closed for c in clients]).addTimeout(60, reactor)
        clients = []
        # all gone: a new client is served at once
        probe = await connect(reactor, proxy.port)
        reply = await probe.request("extract_command", SPEC)
        assert messages.kind_of(reply) == "extract_response"
        await probe.close()
        after = rss_kib(proxy.pid)
        print(f"\nmax-sessions {max_sessions}: proxy RSS {before} KiB before, {peak} KiB with "
              f"1000 clients, {after} KiB after; {outcome}")
        assert peak - before < 64 * MIB
        assert after - before < 64 * MIB
    finally:
        for c in clients:
            c.transport.abortConnection()
        await proxy.stop()
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_connect_disconnect_cycles_do_not_grow_the_proxy(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    device.listen(0, interface="127.0.0.1")
    proxy = await start_proxy(reactor, [f"127.0.0.1:{device.port}"])
    try:
        await proxy.wait_for_output(b"ready: carriers", 30)
        rss = []
        for cycle in range(220):
            client = await connect(reactor, proxy.port)
            reply = await client.request("extract_command", SPEC)
            assert messages.kind_of(reply) == "extract_response"
            reply = await client.request("udp_data_streaming_command",
                                         pb.UdpDataStreamingCommand(port=1))
            assert messages.kind_of(reply) == "udp_data_streaming_refused_response"
            reply = await client.request("get_overload_status_command")
            assert messages.kind_of(reply) == "get_overload_status_response"
            await client.close()
            if cycle in (19, 119, 219):  # 20 warm-up cycles, then 200 measured
                rss.append(rss_kib(proxy.pid))
        print(f"\nproxy RSS over 200 cycles: {rss} KiB")
        assert rss[-1] - rss[0] < 5 * MIB
    finally:
        await proxy.stop()
        await device.stop()

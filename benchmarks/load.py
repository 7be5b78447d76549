"""Load figures for the proxy: many clients at once, and connect/disconnect cycles.

The proxy (``twistd -n pybrid-proxy``) is a child process so that its resident memory
(``VmRSS``) can be read from ``/proc``; the simulated device and the clients run here.

* ``--clients N`` (default 1 000) connect at once and ask for the description (with
  ``--max-sessions`` above N they also claim the device: one is served, the rest queued);
  prints how many were served, queued and refused ("Server overloaded"), how long connecting
  and answering took, and the proxy's RSS before, with all of them connected, and after.
* ``--cycles N`` (default 200) sequential sessions (discovery, claim, ping, close); prints the
  proxy's RSS every 50 cycles and the rate.

    .venv/bin/python benchmarks/load.py [--clients 1000] [--max-sessions 8 2000] [--cycles 200]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

from twisted.internet import defer

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.load_peers import first_frame, raise_nofile, rss_kib, start_proxy  # noqa: E402
from support.proxy_client import connect  # noqa: E402

from pybrid.device import DeviceConfig, SimulatedDevice  # noqa: E402
from pybrid.proto import pb  # noqa: E402
from pybrid.wire import messages  # noqa: E402

SPEC = pb.ExtractCommand(recursive=True, specification=True)


async def one(reactor: Any, port: int, claim: bool, outcome: dict[str, int],
              times: list[float]) -> Any:
    t0 = time.monotonic()
    try:
        client = await connect(reactor, port)
    except Exception as e:
        outcome[f"connect failed: {type(e).__name__}"] = outcome.get("connect failed", 0) + 1
        return None
    client.timeout = 120.0
    client.sendEnvelope(messages.v1("extract_command", SPEC, id="x"))
    if claim:
        client.sendEnvelope(messages.v1("get_overload_status_command", id="c"))
    first = await first_frame(client)
    if first is None:
        key = "closed without a reply"
    elif messages.kind_of(first) == "error_message":
        key = f"refused ({first.message_v1.error_message.description})"
    elif claim:
        reply = await client.expect(lambda e: messages.request_id(e) == "c")
        key = "queued (busy)" if messages.kind_of(reply) == "busy_response" else "served"
    else:
        key = "served"
    outcome[key] = outcome.get(key, 0) + 1
    times.append(time.monotonic() - t0)
    return client


async def at_once(reactor: Any, device_port: int, clients: int, max_sessions: int) -> None:
    proxy = await start_proxy(reactor, [f"127.0.0.1:{device_port}"],
                              "--max-sessions", str(max_sessions), "--session-timeout", "120")
    try:
        await proxy.wait_for_output(b"ready: carriers", 30)
        before = rss_kib(proxy.pid)
        outcome: dict[str, int] = {}
        times: list[float] = []
        t0 = time.monotonic()
        results = await defer.gatherResults([
            defer.ensureDeferred(one(reactor, proxy.port, max_sessions > clients, outcome, times))
            for _ in range(clients)
        ])
        elapsed = time.monotonic() - t0
        peak = rss_kib(proxy.pid)
        live = [c for c in results if c is not None]
        for c in live:
            c.transport.loseConnection()
        await defer.gatherResults([c.closed for c in live])
        after = rss_kib(proxy.pid)
        times.sort()
        print(f"{clients} clients at once, --max-sessions {max_sessions}: {outcome}")
        print(f"  all answered in {elapsed:.2f} s (per client: median {times[len(times) // 2]:.3f}"
              f" s, max {times[-1]:.3f} s)")
        print(f"  proxy RSS: {before} KiB before, {peak} KiB with all connected "
              f"(+{(peak - before) / 1024:.1f} MiB), {after} KiB after they left")
    finally:
        await proxy.stop()


async def cycles(reactor: Any, device_port: int, count: int) -> None:
    proxy = await start_proxy(reactor, [f"127.0.0.1:{device_port}"])
    try:
        await proxy.wait_for_output(b"ready: carriers", 30)
        series = [(0, rss_kib(proxy.pid))]
        t0 = time.monotonic()
        for cycle in range(1, count + 1):
            client = await connect(reactor, proxy.port)
            await client.request("extract_command", SPEC)
            await client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
            await client.request("get_overload_status_command")
            await client.close()
            if cycle % 50 == 0:
                series.append((cycle, rss_kib(proxy.pid)))
        elapsed = time.monotonic() - t0
        print(f"{count} connect/disconnect cycles in {elapsed:.1f} s ({count / elapsed:.0f}/s)")
        print("  proxy RSS KiB by cycle: " + ", ".join(f"{c}: {k}" for c, k in series))
        base = series[1][1] if len(series) > 2 else series[0][1]
        print(f"  growth after the first 50 cycles: {(series[-1][1] - base) / 1024:.2f} MiB")
    finally:
        await proxy.stop()


async def main(reactor: Any, args: Any) -> None:
    raise_nofile(2 * args.clients + 200)
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig())
    device.listen(0, interface="127.0.0.1")
    try:
        for m in args.max_sessions:
            await at_once(reactor, device.port, args.clients, m)
        if args.cycles:
            await cycles(reactor, device.port, args.cycles)
    finally:
        await device.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--max-sessions", type=int, nargs="+", default=[8, 2000])
    parser.add_argument("--cycles", type=int, default=200)
    arguments = parser.parse_args()
    from twisted.internet import task

    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))

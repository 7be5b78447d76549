"""How quickly clients get through our proxy: connect time and session handover.

Prints

* the unmodified reference client's connect time (``Controller.add_device``) through our
  proxy in front of the reference mock device (reference proxy: 2.2 s; goal < 50 ms), with the
  same client connecting directly to the mock as a baseline — accepting UDP, and refusing it
  like our proxy does (the client's own TCP-fallback path costs ~0.1 s);
* the proxy's share of a connect, measured with a minimal client that does what the reference
  client does on the wire: discovery connection (extract, close), then a second connection
  whose UDP request is refused;
* session handover latency: client A holds the device, B is queued (answered busy); from A's
  close to B's first non-busy reply, B resending at once after each busy (goal < 5 ms).

Our proxy and a simulated device run in this process; the reference peers (if ``.ref/`` is
installed) are child processes.

    .venv/bin/python benchmarks/proxy_connect.py [--rounds 20] [--ref-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import time
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.wire import messages
from pybrid.wire.framing import EnvelopeReceiver

ROOT = pathlib.Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".ref" / "bin" / "python"
REF_SCRIPTS = ROOT / "tests" / "support" / "ref_scripts"
SPEC = pb.ExtractCommand(recursive=True, specification=True)


class Client(EnvelopeReceiver):
    """Sends requests and hands out replies in order of arrival."""

    def __init__(self) -> None:
        self.replies: defer.DeferredQueue = defer.DeferredQueue()
        self.closed: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        self.replies.put(envelope)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    async def ask(self, kind: str, body: Any = None) -> str:
        self.sendEnvelope(messages.v1(kind, body, id=messages.new_id()))
        return messages.kind_of(await self.replies.get())


async def connect(reactor: Any, port: int) -> Client:
    factory = protocol.Factory.forProtocol(Client)
    factory.noisy = False
    return await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)


async def raw_connect(reactor: Any, port: int) -> float:
    """Discovery then the persistent connection's refused UDP request; seconds."""
    t0 = time.perf_counter()
    discovery = await connect(reactor, port)
    assert await discovery.ask("extract_command", SPEC) == "extract_response"
    discovery.transport.loseConnection()
    await discovery.closed
    session = await connect(reactor, port)
    kind = await session.ask("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
    elapsed = time.perf_counter() - t0
    assert kind == "udp_data_streaming_refused_response", kind
    session.transport.loseConnection()
    await session.closed
    return elapsed


async def handover(reactor: Any, port: int) -> float:
    """A holds the device, B is busy; from A's close to B's first non-busy reply; seconds."""
    a = await connect(reactor, port)
    udp = pb.UdpDataStreamingCommand(port=1)
    assert await a.ask("udp_data_streaming_command", udp) != "busy_response"
    b = await connect(reactor, port)
    assert await b.ask("reset_command", pb.ResetCommand()) == "busy_response"
    t0 = time.perf_counter()
    a.transport.loseConnection()
    busy = 0
    while (kind := await b.ask("reset_command", pb.ResetCommand())) == "busy_response":
        busy += 1
        if busy > 10_000:
            raise RuntimeError("B never got the device")
    elapsed = time.perf_counter() - t0
    assert kind == "reset_response", kind
    b.transport.loseConnection()
    await defer.DeferredList([a.closed, b.closed])
    return elapsed


def start_ref_mock(refuse_udp: bool = False) -> tuple[subprocess.Popen, int]:
    argv = [str(REF_PYTHON), str(REF_SCRIPTS / "ref_mock.py"), "--port", "0", "--carriers", "1"]
    if refuse_udp:
        argv.append("--refuse-udp")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.match(r"READY (\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"reference mock did not start: {line!r}")
    return proc, int(m.group(1))


async def ref_client_connect(reactor: Any, port: int) -> float:
    """One reference-client process against ``port``; its reported connect time in seconds."""
    argv = [str(REF_PYTHON), str(REF_SCRIPTS / "ref_client.py"), "--port", str(port),
            "--channels", "1", "--sample-rate", "1000", "--op-time-ns", "1000000"]
    out = await task.deferLater(reactor, 0, lambda: None)  # keep the reactor turning
    del out
    d = defer.Deferred()

    class Collect(protocol.ProcessProtocol):
        data = b""

        def outReceived(self, chunk: bytes) -> None:
            self.data += chunk

        def processEnded(self, reason: Any) -> None:
            d.callback(self.data)

    reactor.spawnProcess(Collect(), argv[0], argv, env=None, path=str(ROOT))
    data = await d.addTimeout(60, reactor)
    for line in data.decode().splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            if "connect_seconds" in report:
                return float(report["connect_seconds"])
            raise RuntimeError(f"reference client failed: {report}")
    raise RuntimeError(f"no report from the reference client: {data[-500:]!r}")


def ms(values: list[float]) -> str:
    values_ms = [v * 1e3 for v in values]
    return (f"median {statistics.median(values_ms):7.2f} ms   min {min(values_ms):7.2f}   "
            f"max {max(values_ms):7.2f}   (n={len(values)})")


async def proxy_for(reactor: Any, backend_port: int) -> ProxyService:
    proxy = ProxyService(
        ProxyConfig(backends=(Backend("127.0.0.1", backend_port),), interface="127.0.0.1",
                    port=0),
        reactor,
    )
    proxy.startService()
    await proxy.when_healthy().addTimeout(20, reactor)
    return proxy


async def main(reactor: Any, args: argparse.Namespace) -> None:
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")
    proxy = await proxy_for(reactor, device.port)
    port = proxy.address[1]
    print(f"pybrid-proxy benchmarks ({args.rounds} rounds; in front of the simulated device)")
    connects = [await raw_connect(reactor, port) for _ in range(args.rounds)]
    print(f"  proxy's share of a connect (discovery + refused UDP): {ms(connects)}")
    handovers = [await handover(reactor, port) for _ in range(args.rounds)]
    print(f"  session handover (A's close -> B's first non-busy):   {ms(handovers)}   "
          f"goal < 5 ms")
    await proxy.stopService()
    await device.stop()

    if not REF_PYTHON.exists():
        print("reference client not installed (.ref/): skipping the reference-client figures")
        return
    print(f"reference client connect time (add_device), {args.ref_rounds} rounds each:")
    for label, refuse in (("directly to the mock (UDP)", False),
                          ("directly to the mock (UDP refused)", True)):
        mock, mock_port = start_ref_mock(refuse_udp=refuse)
        try:
            times = [await ref_client_connect(reactor, mock_port) for _ in range(args.ref_rounds)]
        finally:
            mock.kill()
            mock.wait()
        print(f"  {label:<38} {ms(times)}")
    mock, mock_port = start_ref_mock()
    try:
        proxy = await proxy_for(reactor, mock_port)
        times = [await ref_client_connect(reactor, proxy.address[1])
                 for _ in range(args.ref_rounds)]
        await proxy.stopService()
    finally:
        mock.kill()
        mock.wait()
    print(f"  {'through pybrid-proxy (mock behind it)':<38} {ms(times)}   "
          f"reference proxy: 2.2 s; goal < 50 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ref-rounds", type=int, default=5)
    arguments = parser.parse_args()
    task.react(lambda r: defer.ensureDeferred(main(r, arguments)))
    sys.exit(0)

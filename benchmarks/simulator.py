"""How many data datagrams per second the simulated device emits.

Starts a :class:`~pybrid.device.SimulatedDevice` in this process (on the global reactor), a
plain UDP sink in a child process (so it runs on the other core) that counts datagrams and
bytes, and a minimal client that negotiates UDP to the sink's port and starts one run paced
well above the goal.  Prints what the device sent and what the sink received: datagrams/s,
MB/s and the ratio to the 35 000 datagrams/s requirement.

    .venv/bin/python benchmarks/simulator.py [--seconds 3] [--target 200000] [--channels 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from twisted.internet import defer, protocol
from twisted.internet import reactor as _reactor

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import EnvelopeReceiver

GOAL = 35_000

SINK = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 25)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
buf = bytearray(65536)
n = nbytes = 0
first = last = None
s.settimeout(float(sys.argv[1]))
while True:
    try:
        k = s.recv_into(buf)
    except socket.timeout:
        if n:
            break
        continue
    last = time.perf_counter()
    if first is None:
        first = last
    n += 1
    nbytes += k
print(json.dumps({"datagrams": n, "bytes": nbytes, "seconds": (last - first) if n else 0}),
      flush=True)
"""


class _Client(EnvelopeReceiver):
    """Just enough client: negotiate UDP, start one run, wait for DONE."""

    def __init__(self) -> None:
        self.replies: dict[str, defer.Deferred] = {}

    def ask(self, kind: str, body: object) -> defer.Deferred:
        rid, env = messages.request(kind, body)  # type: ignore[arg-type]
        d: defer.Deferred = defer.Deferred()
        self.replies[rid] = d
        self.sendEnvelope(env)
        return d.addTimeout(10, _reactor)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        rid = messages.request_id(envelope)
        if rid in self.replies:
            self.replies.pop(rid).callback(envelope)


async def main(args: argparse.Namespace) -> dict:
    sink = subprocess.Popen([sys.executable, "-c", SINK, "1.5"], stdout=subprocess.PIPE,
                            text=True)
    assert sink.stdout is not None
    sink_port, rcvbuf = (int(x) for x in sink.stdout.readline().split())
    dev = SimulatedDevice(reactor=_reactor, config=DeviceConfig(carriers=1, tick=args.tick))
    dev.listen(0, interface="127.0.0.1")
    try:
        client = _Client()
        await protocol.ClientCreator(_reactor, lambda: client).connectTCP(
            "127.0.0.1", dev.port, timeout=5
        )
        reply = await client.ask("udp_data_streaming_command",
                                 pb.UdpDataStreamingCommand(port=sink_port))
        assert messages.kind_of(reply) == "success_message", reply
        rate = args.target * 100
        cmd = pb.StartRunCommand(
            run=pb.Run(id=messages.new_id()),
            run_config=pb.RunConfig(op_time=pb.Time(value=int(args.seconds * 1e9),
                                                    prefix=pb.NANO)),
            daq_config=pb.DaqConfig(num_channels=args.channels, sample_rate=rate,
                                    sample_op=True, sample_op_end=True),
        )
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        reply = await client.ask("start_run_command", cmd)
        assert messages.kind_of(reply) == "start_run_response", reply
        while dev.run is not None:
            d: defer.Deferred = defer.Deferred()
            _reactor.callLater(0.05, d.callback, None)
            await d
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        client.transport.loseConnection()
    finally:
        await dev.stop()
    out, _ = sink.communicate(timeout=30)
    received = json.loads(out.strip().splitlines()[-1])
    c = dev.counters
    return {
        "target": args.target, "channels": args.channels, "wall": wall, "cpu": cpu,
        "sent": c.datagrams_sent, "sent_bytes": c.datagram_bytes, "errors": c.datagram_errors,
        "received": received, "rcvbuf": rcvbuf,
    }


def report(r: dict) -> None:
    sent_rate = r["sent"] / r["wall"]
    recv = r["received"]
    recv_rate = recv["datagrams"] / recv["seconds"] if recv["seconds"] else 0.0
    size = r["sent_bytes"] / max(1, r["sent"])
    print(f"simulated device, 1 carrier × {r['channels']} f32 channels, 100 samples/chunk "
          f"({size:.0f} B per datagram), paced for {r['target']} datagrams/s")
    print(f"  device sent   {r['sent']:>9} datagrams in {r['wall']:.2f} s = {sent_rate:>9.0f}/s "
          f"{r['sent_bytes'] / r['wall'] / 1e6:7.1f} MB/s  ratio to {GOAL}: "
          f"{sent_rate / GOAL:.2f}  (device CPU {r['cpu'] / r['wall'] * 100:.0f} % of a core, "
          f"send errors {r['errors']})")
    print(f"  sink received {recv['datagrams']:>9} datagrams in {recv['seconds']:.2f} s = "
          f"{recv_rate:>9.0f}/s {recv['bytes'] / max(recv['seconds'], 1e-9) / 1e6:7.1f} MB/s  "
          f"ratio to {GOAL}: {recv_rate / GOAL:.2f}  (lost {r['sent'] - recv['datagrams']}, "
          f"SO_RCVBUF {r['rcvbuf']})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="op_time of the run")
    ap.add_argument("--target", type=int, default=200_000, help="datagrams/s to pace for")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--tick", type=float, default=0.002)
    ns = ap.parse_args()
    result: dict = {}

    async def go() -> None:
        try:
            result.update(await main(ns))
        finally:
            _reactor.stop()

    _reactor.callWhenRunning(lambda: defer.ensureDeferred(go()))
    _reactor.run()
    if result:
        report(result)

"""The client's receive path in one process, no sockets: CPU µs per chunk from bytes to the sink.

    .venv/bin/python benchmarks/client_decode.py [--chunks 20000] [--channels 8] [--carriers 2]

Frames ``run_data_message`` Envelopes as a proxy relays a device's datagrams (message id, a
UUID run id, chunk numbers, carrier path, 100 f32 samples × channels, gains and offsets), joins
them into 64 KiB segments and feeds them to a :class:`~pybrid.client.control.ClientProtocol`
whose channel routes to a :class:`~pybrid.client.run.RunCollector` into a ``MemorySink`` —
the path of ``Computer.run`` by TCP.  Printed: µs per chunk and values/s, with the fast path
(:mod:`pybrid.client.fastdata`) and with every frame parsed by protobuf, and the results'
equality.  CPU time (``time.process_time``), best of ``--repeat`` runs: the machine may be shared.
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np
from twisted.internet import task
from twisted.internet.testing import StringTransport

from pybrid import samples
from pybrid.client.control import ClientProtocol, ControlChannel
from pybrid.client.results import RunSpec
from pybrid.client.run import RunCollector
from pybrid.proto import pb
from pybrid.wire import frame, messages

PER_CHUNK = 100


def frames(run_id: str, carriers: list[str], chunks: int, channels: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    gains = [1.0 + i / 100 for i in range(channels)]
    offsets = [i / 1000 for i in range(channels)]
    out = []
    for n in range(chunks):
        for mac in carriers:
            msg = pb.RunDataMessage()
            msg.run.id, msg.run.chunk, msg.entity.path = run_id, n, "/" + mac
            raw = rng.standard_normal((PER_CHUNK, channels)).astype(np.float32)
            msg.data.CopyFrom(samples.encode(raw, "f32", gains=gains, offsets=offsets,
                                             probes=[i // 4 for i in range(channels)]))
            env = messages.v1("run_data_message", msg, id=messages.new_id())
            out.append(frame(env.SerializeToString()))
    return out


def segments(framed: list[bytes], size: int = 65536) -> list[bytes]:
    blob = b"".join(framed)
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def measure(segs: list[bytes], run_id: str, carriers: list[str], chunks: int, channels: int,
            fast: bool) -> tuple[float, dict[str, np.ndarray]]:
    clock = task.Clock()
    spec = RunSpec(op_time=chunks * PER_CHUNK / 1e6, channels=channels, sample_rate=1_000_000)
    collector = RunCollector(clock, run_id, spec, carriers, 60.0)
    channel = ControlChannel(clock=clock, peer="bench")
    channel.on_notification = collector.envelope
    if fast and hasattr(channel, "on_fast_data"):
        def take(d):  # type: ignore[no-untyped-def]
            collector.fast_data(d)
            return True
        channel.on_fast_data = take
    proto = ClientProtocol(channel)
    proto.makeConnection(StringTransport())
    t0 = time.process_time()
    for s in segs:
        proto.dataReceived(s)
    elapsed = time.process_time() - t0
    result = collector.result(None, "tcp")
    return elapsed, {m: c.samples for m, c in result.carriers.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10_000, help="chunks per carrier")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--carriers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    run_id = str(uuid.uuid4())
    carriers = [f"00-00-5E-00-53-{i:02X}" for i in range(args.carriers)]
    segs = segments(frames(run_id, carriers, args.chunks, args.channels))
    total = args.chunks * args.carriers
    values = total * PER_CHUNK * args.channels
    out = {}
    for fast in (False, True):
        best = float("inf")
        for _ in range(args.repeat):
            t, out[fast] = measure(segs, run_id, carriers, args.chunks, args.channels, fast)
            best = min(best, t)
        name = "fast path" if fast else "full parse"
        print(f"{name:10}  {best / total * 1e6:6.2f} µs/chunk  {values / best:14,.0f} values/s"
              f"  ({total} chunks of {PER_CHUNK} × {args.channels}, best of {args.repeat})")
    same = all(np.array_equal(out[True][m], out[False][m], equal_nan=True) for m in carriers)
    print(f"results equal: {same}")


if __name__ == "__main__":
    main()

"""How fast the client collects a run: wall time, CPU time and gaps at several sample rates.

Runs our simulated device and the client in this process (one reactor, one core: the CPU
figure is client + device together), 8 channels of i16 by default, over the UDP lane and
over the TCP fallback.  Prints one line per rate and lane.

    .venv/bin/python benchmarks/client_run.py [--seconds 1] [--channels 8] [--dtype i16]
"""

from __future__ import annotations

import argparse
import time

from twisted.internet import defer, task

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice

RATES = (10_000, 100_000, 500_000)


async def main(reactor, argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--dtype", default="i16", choices=("f32", "f64", "i16", "u16"))
    args = ap.parse_args(argv)
    for refuse in (False, True):
        for rate in RATES:
            dev = SimulatedDevice(reactor=reactor,
                                  config=DeviceConfig(dtype=args.dtype, refuse_udp=refuse))
            dev.listen(0, interface="127.0.0.1")
            c = await connect("127.0.0.1", dev.port, reactor=reactor)
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                r = await c.run(args.seconds, channels=args.channels, sample_rate=rate)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            finally:
                await c.close()
                await dev.stop()
            (cr,) = r.carriers.values()
            print(f"{r.data_lane}  {rate:>7} Hz x {args.channels} ch {args.dtype}: "
                  f"{cr.samples.shape[0]:>7} samples in {cr.chunks:>5} chunks, "
                  f"{cr.chunk_gaps} gaps; {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"({cpu / args.seconds:.0%} of a core, client and device)", flush=True)


if __name__ == "__main__":
    import sys

    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))

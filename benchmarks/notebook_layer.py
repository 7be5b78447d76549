"""Notebook layers side by side: crochet (reactor thread, blocking calls) vs asyncio reactor.

    python benchmarks/notebook_layer.py [--pings 300] [--runs 20]

Each layer runs in its own child process against a simulated device in that process (loopback,
port 0), the way a notebook would use it:

* ``crochet``: ``pybrid.client.blocking`` — the caller's thread waits on the reactor thread;
* ``asyncio``: Twisted's asyncio reactor installed on a running asyncio loop (Jupyter's case),
  ``reactor.startRunning()``, and ``await deferred.asFuture(loop)`` per call.

Printed per layer: the median and 95th percentile wall time of a generic ping as the caller sees
it, the median round trip the client itself measured (inside the reactor), the difference (the
cost of the layer), and the median wall time of a 10 ms run (8 channels, 10 kHz).  Needs the
``notebook`` extra (crochet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"median": v[len(v) // 2], "p95": v[int(len(v) * 0.95)]}


def _crochet(pings: int, runs: int) -> dict[str, object]:
    from pybrid.client import blocking

    sim = blocking.simulator()
    c = blocking.connect(sim.target)
    c.run(0.01)  # negotiate the data lane, warm up
    walls, inner, run_walls = [], [], []
    for _ in range(pings):
        t0 = time.perf_counter()
        inner.append(c.ping())
        walls.append(time.perf_counter() - t0)
    for _ in range(runs):
        t0 = time.perf_counter()
        c.run(0.01, channels=8, sample_rate=10_000)
        run_walls.append(time.perf_counter() - t0)
    c.close()
    sim.stop()
    return {"wall": _stats(walls), "inner": _stats(inner), "run": _stats(run_walls)}


def _asyncio(pings: int, runs: int) -> dict[str, object]:
    import asyncio

    async def main() -> dict[str, object]:
        from twisted.internet import asyncioreactor

        loop = asyncio.get_running_loop()
        asyncioreactor.install(loop)
        from twisted.internet import reactor

        reactor.startRunning(installSignalHandlers=False)  # type: ignore[attr-defined]
        from pybrid.client import connect
        from pybrid.device import SimulatedDevice

        dev = SimulatedDevice(reactor=reactor)
        dev.listen(0, interface="127.0.0.1")
        c = await connect("127.0.0.1", dev.port, reactor=reactor).asFuture(loop)
        await c.run(0.01).asFuture(loop)
        walls, inner, run_walls = [], [], []
        for _ in range(pings):
            t0 = time.perf_counter()
            inner.append(await c.ping().asFuture(loop))
            walls.append(time.perf_counter() - t0)
        for _ in range(runs):
            t0 = time.perf_counter()
            await c.run(0.01, channels=8, sample_rate=10_000).asFuture(loop)
            run_walls.append(time.perf_counter() - t0)
        await c.close().asFuture(loop)
        await dev.stop().asFuture(loop)
        return {"wall": _stats(walls), "inner": _stats(inner), "run": _stats(run_walls)}

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--child", choices=("crochet", "asyncio"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        body = _crochet if args.child == "crochet" else _asyncio
        print(json.dumps(body(args.pings, args.runs)), flush=True)
        return
    print(f"{'layer':8} {'ping wall ms (median / p95)':>28} {'inner ms':>9} "
          f"{'layer cost µs':>14} {'10 ms run ms':>13}")
    for layer in ("crochet", "asyncio"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", layer, "--pings", str(args.pings),
             "--runs", str(args.runs)], capture_output=True, text=True, timeout=300,
        )
        if out.returncode:
            print(f"{layer:8} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        wall, inner, run = r["wall"], r["inner"], r["run"]
        cost = (wall["median"] - inner["median"]) * 1e6
        print(f"{layer:8} {wall['median'] * 1e3:17.3f} / {wall['p95'] * 1e3:8.3f} "
              f"{inner['median'] * 1e3:9.3f} {cost:14.0f} {run['median'] * 1e3:13.1f}")


if __name__ == "__main__":
    main()

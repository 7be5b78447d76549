"""Run one computation and plot every channel.

    python examples/run_and_plot.py HOST [PORT] [--op-time 0.01] [--out run.png]

HOST may be a LUCIDAC, a pybrid-proxy, or a simulated device (``twistd -n pybrid-device``).
Without matplotlib (``pip install matplotlib``, or the ``plot`` extra: docs/deployment.md) it
prints a summary instead.
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task

from pybrid.client import ClientError, connect


async def main(reactor, argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", nargs="?", type=int, default=5732)
    ap.add_argument("--op-time", type=float, default=0.01)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--sample-rate", type=int, default=100_000)
    ap.add_argument("--out", default="run.png")
    args = ap.parse_args(argv)

    computer = await connect(args.host, args.port, reactor=reactor)
    try:
        print(f"{computer.target}: {computer.topology}, carriers "
              f"{[c.mac for c in computer.carriers]}")
        result = await computer.run(args.op_time, channels=args.channels,
                                    sample_rate=args.sample_rate)
    finally:
        await computer.close()

    for mac, carrier in result.carriers.items():
        s = carrier.samples
        print(f"{mac}: {s.shape[0]} samples x {s.shape[1]} channels, "
              f"{carrier.chunk_gaps} gaps, min {s.min():.4f}, max {s.max():.4f}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    from pybrid.client.plot import save_plot

    # one panel per carrier; a long run is drawn as its min/max envelope per pixel column
    save_plot({mac: c.samples for mac, c in result.carriers.items()}, args.sample_rate,
              args.out, title=f"run {result.run_id}")
    print(f"plotted {args.out}")


def run(reactor, *argv: str):
    async def guarded() -> None:
        try:
            await main(reactor, list(argv))
        except ClientError as e:
            raise SystemExit(f"error: {e}") from None

    return defer.ensureDeferred(guarded())


if __name__ == "__main__":
    import sys

    task.react(run, sys.argv[1:])

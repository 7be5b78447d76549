"""Consume a run while it streams: per-chunk statistics, and an early stop.

    python examples/streaming_callback.py HOST [PORT] [--op-time 2] [--stop-after 0.5]

``on_chunk`` is called for every data message as it arrives (arrival order, which over UDP is
not always chunk order; ``chunk.number`` says where it belongs).  The callback must be quick:
it runs in the reactor thread.  Cancelling the run's Deferred sends ``stop_run_command`` to the
device and stops collecting.
"""

from __future__ import annotations

import argparse
from typing import Any

from twisted.internet import defer, task

from pybrid.client import Chunk, ClientError, connect


class RunningStats:
    """Per-channel minimum, maximum and mean over everything seen so far."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: Any = None  # numpy arrays (channels,) once the first chunk arrived
        self.min: Any = None
        self.max: Any = None

    def add(self, chunk: Chunk) -> None:
        if chunk.final:
            print(f"final values of {chunk.carrier}: {chunk.values[-1].round(4)}")
            return
        v = chunk.values
        if self.sum is None:
            self.sum, self.min, self.max = v.sum(axis=0), v.min(axis=0), v.max(axis=0)
        else:
            self.sum += v.sum(axis=0)
            self.min = self.min.clip(max=v.min(axis=0))
            self.max = self.max.clip(min=v.max(axis=0))
        self.count += v.shape[0]
        print(f"chunk {chunk.number:5d} of {chunk.carrier}: {self.count} samples, "
              f"mean {(self.sum / self.count).round(3)}")


async def main(reactor, argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", nargs="?", type=int, default=5732)
    ap.add_argument("--op-time", type=float, default=2.0)
    ap.add_argument("--sample-rate", type=int, default=1_000)
    ap.add_argument("--stop-after", type=float, default=None,
                    help="cancel the run after this many seconds")
    args = ap.parse_args(argv)

    stats = RunningStats()
    computer = await connect(args.host, args.port, reactor=reactor)
    try:
        d = computer.run(args.op_time, channels=2, sample_rate=args.sample_rate,
                         on_chunk=stats.add)
        if args.stop_after is not None:
            reactor.callLater(args.stop_after, d.cancel)
        try:
            result = await d
        except defer.CancelledError:
            print(f"stopped early after {stats.count} samples")
            return
        print(f"done: {result.samples.shape[0]} samples, complete={result.complete}")
    finally:
        await computer.close()


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

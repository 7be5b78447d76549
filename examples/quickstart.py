"""The quick start's client: connect to a proxy (or a device), run, print samples as they arrive.

    python examples/quickstart.py HOST PORT [--op-time 0.5] [--sample-rate 2000] [--channels 4]

Each line is one data chunk as it arrives: the carrier, the chunk number, how many samples it
held and its first sample (one value per channel, gain and offset applied).  At the end: the
samples per carrier and whether every chunk arrived.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from twisted.internet import defer, task

from pybrid.client import Chunk, ClientError, connect
from pybrid.client.topology import describe_carriers, describe_data_lane


def show(chunk: Chunk) -> None:
    first = np.array2string(chunk.values[0], precision=4, floatmode="fixed", separator=" ")
    label = "final" if chunk.final else f"chunk {chunk.number:4d}"
    print(f"{chunk.carrier}  {label}  {chunk.values.shape[0]:3d} samples  first {first}",
          flush=True)


async def main(reactor, argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--op-time", type=float, default=0.5, help="OP time in seconds")
    ap.add_argument("--sample-rate", type=int, default=2_000)
    ap.add_argument("--channels", type=int, default=4)
    args = ap.parse_args(argv)

    computer = await connect(args.host, args.port, reactor=reactor)
    try:
        print(f"connected to {args.host}:{args.port}: {describe_carriers(computer.carriers)}")
        result = await computer.run(
            args.op_time, channels=args.channels, sample_rate=args.sample_rate, on_chunk=show
        )
        for mac, carrier in result.carriers.items():
            print(f"{mac}: {carrier.samples.shape[0]} samples × {carrier.samples.shape[1]} "
                  f"channels, complete={carrier.complete}, chunk gaps={carrier.chunk_gaps}")
        lane = describe_data_lane(result.data_lane, computer.udp_refusal)
        print(f"run done in {result.elapsed:.3f} s, {lane}")
    finally:
        await computer.close()


def _run(reactor, *argv: str):
    async def guarded() -> None:
        try:
            await main(reactor, list(argv))
        except ClientError as e:
            raise SystemExit(f"quickstart: {e}") from None

    return defer.ensureDeferred(guarded())


if __name__ == "__main__":
    task.react(_run, sys.argv[1:])

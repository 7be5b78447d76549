"""Soak: back-to-back runs from several clients through one proxy in front of several devices.

The proxy (``twistd -n pybrid-proxy``) and the devices (``twistd -n pybrid-device``, one carrier
each, distinct MACs) are child processes; the clients (``pybrid.client``) run in this process.
Each client loops until the time is up: connect, 1–3 runs, close — so the clients time-share
the proxy through its queue (busy replies, handovers).  Every run's samples are compared with
the simulator's deterministic signal, carrier by carrier: a missing, duplicated, reordered or
foreign sample counts as lost.  The proxy's resident memory (``VmRSS``) is sampled every few
seconds.  Prints a summary (``--json``: one JSON line as well); the exit code is 1 if any
sample was lost, any run failed, or the proxy's memory grew by more than ``--max-growth`` MiB
from the first sample after the warm-up to the last.

    .venv/bin/python benchmarks/soak.py --minutes 10 [--clients 4] [--backends 3]
           [--channels 2] [--rate 20000] [--op-time 0.05] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time
from typing import Any

import numpy as np
from twisted.internet import defer, task

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.load_peers import rss_kib, start_device, start_proxy  # noqa: E402

from pybrid.client import connect  # noqa: E402
from pybrid.device import expected_decoded  # noqa: E402


class Stats:
    """What the clients did and saw."""

    def __init__(self, clients: int) -> None:
        self.runs = [0] * clients
        self.sessions = [0] * clients
        self.samples = 0
        self.lost = 0
        self.mismatched_runs = 0
        self.errors: list[str] = []
        self.busy_waits = 0
        self.run_seconds: list[float] = []
        self.rss: list[tuple[float, int]] = []


def check(result: Any, channels: int, rate: int, op_time: float, stats: Stats) -> None:
    count = max(1, int(round(op_time * 1e9) * rate / 1e9))
    for mac, got in result.carriers.items():
        want = expected_decoded(0, channels, 0, count, mac=mac)
        samples = got.samples
        same = samples.shape == want.shape and np.array_equal(samples, want)
        stats.samples += min(samples.shape[0], count) * channels
        if not same or got.duplicate_chunks:
            stats.mismatched_runs += 1
            stats.lost += max(0, count - samples.shape[0]) * channels
            if len(stats.errors) < 20:
                stats.errors.append(f"run {result.run_id} carrier {mac}: {samples.shape[0]} of "
                                    f"{count} samples, equal={same}, gaps={got.chunk_gaps}")


async def client_loop(reactor: Any, index: int, port: int, deadline: float, args: Any,
                      stats: Stats) -> None:
    rnd = random.Random(index)
    while reactor.seconds() < deadline:
        try:
            computer = await connect("127.0.0.1", port, reactor=reactor, busy_retry=0.05,
                                     busy_timeout=120.0)
        except Exception as e:
            stats.errors.append(f"client {index}: connect: {e!r}")
            await task.deferLater(reactor, 1.0, lambda: None)
            continue
        stats.sessions[index] += 1
        try:
            for _ in range(rnd.randint(1, 3)):
                if reactor.seconds() >= deadline:
                    break
                began = reactor.seconds()
                result = await computer.run(args.op_time, channels=args.channels,
                                            sample_rate=args.rate)
                stats.run_seconds.append(reactor.seconds() - began)
                stats.runs[index] += 1
                check(result, args.channels, args.rate, args.op_time, stats)
            stats.busy_waits += computer.control.counters.busy_answers
        except Exception as e:
            stats.errors.append(f"client {index}: {e!r}")
        finally:
            await computer.close()


async def soak(reactor: Any, args: Any) -> dict[str, Any]:
    seconds = args.seconds if args.seconds else args.minutes * 60
    devices = []
    proxy = None
    stats = Stats(args.clients)
    try:
        for i in range(args.backends):
            devices.append(await start_device(reactor, "--mac", f"00-00-00-00-5{i}-00"))
        proxy = await start_proxy(reactor, [f"127.0.0.1:{d.port}" for d in devices],
                                  "--session-timeout", "10")
        await proxy.wait_for_output(b"ready: carriers", 30)
        for _ in range(200):  # every backend ready
            if proxy.stdout.count(b"ready: carriers") >= args.backends:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        started = reactor.seconds()
        pid = proxy.pid

        def sample() -> None:
            stats.rss.append((reactor.seconds() - started, rss_kib(pid)))

        sampler = task.LoopingCall(sample)
        sampler.clock = reactor
        sampler.start(args.sample_every, now=True)
        deadline = started + seconds
        wall = time.monotonic()
        await defer.gatherResults([
            defer.ensureDeferred(client_loop(reactor, i, proxy.port, deadline, args, stats))
            for i in range(args.clients)
        ])
        elapsed = time.monotonic() - wall
        sampler.stop()
        sample()
    finally:
        if proxy is not None:
            await proxy.stop()
        for d in devices:
            await d.stop()
    warm = [kib for t, kib in stats.rss if t >= args.warmup] or [kib for _, kib in stats.rss]
    runs = sum(stats.runs)
    times = sorted(stats.run_seconds) or [0.0]
    return {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "backends": args.backends,
        "runs": runs,
        "runs_per_client": stats.runs,
        "sessions": sum(stats.sessions),
        "samples_verified": stats.samples,
        "lost_samples": stats.lost,
        "mismatched_runs": stats.mismatched_runs,
        "errors": len(stats.errors),
        "first_errors": stats.errors[:5],
        "busy_answers": stats.busy_waits,
        "run_seconds_median": round(times[len(times) // 2], 3),
        "run_seconds_max": round(times[-1], 3),
        "proxy_rss_kib": {"first": stats.rss[0][1] if stats.rss else 0,
                          "after_warmup": warm[0], "min": min(warm), "max": max(warm),
                          "last": warm[-1], "growth": warm[-1] - warm[0]},
        "rss_samples": len(stats.rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=0.0, help="overrides --minutes")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--backends", type=int, default=3)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--op-time", type=float, default=0.05)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds before the RSS baseline is taken")
    parser.add_argument("--max-growth", type=float, default=5.0,
                        help="MiB the proxy's RSS may grow after the warm-up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from twisted.internet import reactor
    from twisted.python.failure import Failure

    outcome: list[Any] = []

    def begin() -> None:
        d = defer.ensureDeferred(soak(reactor, args))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(begin)
    reactor.run()
    if not outcome or isinstance(outcome[0], Failure):
        if outcome:
            outcome[0].printTraceback()
        sys.exit(2)
    sys.exit(_report(outcome[0], args))


def _report(summary: dict[str, Any], args: Any) -> int:
    rss = summary["proxy_rss_kib"]
    print(f"soak: {summary['seconds']} s, {summary['clients']} clients, "
          f"{summary['backends']} backends")
    print(f"  runs {summary['runs']} (per client {summary['runs_per_client']}), "
          f"sessions {summary['sessions']}, busy answers {summary['busy_answers']}")
    print(f"  samples verified {summary['samples_verified']}, lost {summary['lost_samples']}, "
          f"mismatched runs {summary['mismatched_runs']}, errors {summary['errors']}")
    print(f"  run time median {summary['run_seconds_median']} s, "
          f"max {summary['run_seconds_max']} s")
    print(f"  proxy RSS KiB: first {rss['first']}, after warm-up {rss['after_warmup']}, "
          f"min {rss['min']}, max {rss['max']}, last {rss['last']}, growth {rss['growth']} "
          f"({summary['rss_samples']} samples)")
    for line in summary["first_errors"]:
        print("  error:", line)
    if args.json:
        print(json.dumps(summary))
    bad = (summary["lost_samples"] or summary["mismatched_runs"] or summary["errors"]
           or rss["growth"] > args.max_growth * 1024 or not summary["runs"])
    return 1 if bad else 0


if __name__ == "__main__":
    main()

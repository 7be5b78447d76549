"""Drive the unmodified reference client (pybrid-computing 0.12.10) for the test-suite.

Runs under the reference interpreter (.ref/bin/python).  Connects with
``Controller().add_device(host, port)``, runs ``--runs`` computations, and writes:

* ``--out FILE.npz``: for run k, ``run{k}/probe{p}`` = ``run.data[p]`` (the reference's own
  assembly: per probe, chunks sorted by number, carriers concatenated) and
  ``run{k}/carrier{path}/ADC{i}`` = samples a SampleListener saw for that carrier and channel;
* a JSON line on stdout: connect time, per-run state, timing, carriers seen, wiring items.

Prints ``CONNECTED`` (flushed) once add_device returned, so a test can act on that moment.
Exit code 0 on success, 3 on a run error, 4 on a connect error.
"""

import argparse
import asyncio
import collections
import faulthandler
import json
import logging
import signal
import sys
import time

import numpy as np

# isort: off
from pybrid.redac.controller import Controller  # first: avoids the reference's import cycle
from pybrid.base.hybrid.listeners import SampleListener
from pybrid.redac.run import DAQConfig, RunConfig

# isort: on

# SIGUSR1: every thread's stack on stderr, for a test to see where the client hangs
faulthandler.register(signal.SIGUSR1, all_threads=True)


class Collect(SampleListener):
    def __init__(self) -> None:
        self.data: dict[str, list[float]] = collections.defaultdict(list)

    async def receive(self, samples) -> None:
        for path, values in samples.items():
            self.data[str(path)].extend(values)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--sample-rate", type=int, default=100_000)
    ap.add_argument("--op-time-ns", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--hold", type=float, default=0.0, help="keep the session (s)")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level, stream=sys.stderr)

    report: dict = {"runs": []}
    arrays: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    ctrl = Controller()
    try:
        await ctrl.add_device(args.host, args.port)
    except Exception as e:
        report["error"] = f"connect: {type(e).__name__}: {e}"
        print(json.dumps(report), flush=True)
        return 4
    report["connect_seconds"] = time.perf_counter() - t0
    report["carriers"] = [str(c.path) for c in ctrl.computer.carriers]
    items = ctrl.connection_manager.cache_descriptions.items
    report["wiring_items"] = sum(1 for i in items if i.HasField("wiring_specification"))
    print("CONNECTED", flush=True)

    code = 0
    for k in range(args.runs):
        collect = Collect()
        ctrl.sample_listeners.append(collect)
        session = ctrl.create_session()
        session.run(
            RunConfig(op_time=args.op_time_ns),
            daq=DAQConfig(
                num_channels=args.channels,
                sample_rate=args.sample_rate,
                sample_op=True,
                sample_op_end=True,
            ),
        )
        t1 = time.perf_counter()
        entry: dict = {}
        try:
            runs = await session.execute()
            run = runs[0]
            entry["state"] = str(run.state.value)
            for p, values in enumerate(run.data or []):
                if values is not None:
                    arrays[f"run{k}/probe{p}"] = np.asarray(values, dtype=np.float64)
            entry["final_values"] = len(run.final_values)
        except Exception as e:
            entry["state"] = "EXCEPTION"
            entry["error"] = f"{type(e).__name__}: {e}"
            code = 3
        entry["seconds"] = time.perf_counter() - t1
        for path, values in collect.data.items():
            arrays[f"run{k}/carrier{path}"] = np.asarray(values, dtype=np.float64)
        ctrl.sample_listeners.remove(collect)
        report["runs"].append(entry)
        if code:
            break
    if args.hold:
        await asyncio.sleep(args.hold)
    if args.out:
        np.savez(args.out, **arrays)
    print(json.dumps(report), flush=True)
    return code


sys.exit(asyncio.run(main()))

"""One run of the unmodified reference client (pybrid-computing 0.12.10), for
``benchmarks/client_compare.py``.  Runs under ``.ref/bin/python``.

Connects with ``Controller().add_device``, runs one computation, and prints one JSON line: the
run's state, its wall time (``session.execute()``), how many values ``run.data`` holds (per probe,
carriers concatenated: the reference's own assembly) and the peak RSS of this process (VmHWM).
"""

import argparse
import asyncio
import json
import sys
import time

# isort: off
from pybrid.redac.controller import Controller  # first: avoids the reference's import cycle
from pybrid.redac.run import DAQConfig, RunConfig

# isort: on


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--sample-rate", type=int, required=True)
    ap.add_argument("--op-time-ns", type=int, required=True)
    args = ap.parse_args()
    report: dict = {}
    ctrl = Controller()
    await ctrl.add_device("127.0.0.1", args.port)
    session = ctrl.create_session()
    session.run(RunConfig(op_time=args.op_time_ns),
                daq=DAQConfig(num_channels=args.channels, sample_rate=args.sample_rate,
                              sample_op=True, sample_op_end=True))
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        runs = await session.execute()
        run = runs[0]
        report["state"] = str(run.state.value)
        report["values"] = sum(len(v) for v in (run.data or []) if v is not None)
    except Exception as e:
        report["error"] = f"{type(e).__name__}: {e}"
    report["seconds"] = time.perf_counter() - t0
    report["cpu_s"] = time.process_time() - c0
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report), flush=True)
    return 0 if "error" not in report else 3


sys.exit(asyncio.run(main()))

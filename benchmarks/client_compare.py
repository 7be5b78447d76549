"""Our client and the unmodified reference client side by side, through our proxy.

    .venv/bin/python benchmarks/client_compare.py [--seconds 1] [--rates 100000,500000,...]
                                                  [--channels 8] [--carriers 2] [--no-reference]

Starts our simulated device (``--carriers`` carriers, f32) and our proxy in front of it, then for
each rate runs one computation of ``--seconds`` OP time with each client, every client in a
fresh child process: ours (``pybrid.client``, the Deferred API) and the reference's
(``.ref/bin/python benchmarks/_ref_run.py``).  Printed per rate and client: the values received
(rows × channels, all carriers) out of those expected, the run's wall time (start to result),
its CPU time in the client process (what the client itself costs: the device and the proxy
share the machine's cores), the values per second of that wall time, and the client process's
peak RSS (VmHWM).  The device
produces in real time, so below the client's limit values/s is the device's rate × OP / wall.
A client that fails or does not finish within its time limit is reported as such; the benchmark
goes on.  Figures and discussion: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RATES = (100_000, 500_000, 1_000_000, 2_000_000)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(port: int, rate: int, seconds: float, channels: int) -> None:
    """Our client in this (child) process: one run, one JSON line."""
    from twisted.internet import defer, task

    from pybrid.client import connect

    async def body(reactor: Any) -> None:
        c = await connect("127.0.0.1", port, reactor=reactor)
        report: dict[str, Any] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            r = await c.run(seconds, channels=channels, sample_rate=rate)
            report["values"] = sum(x.samples.size for x in r.carriers.values())
            report["gaps"] = sum(x.chunk_gaps for x in r.carriers.values())
            report["lane"] = r.data_lane
        except Exception as e:
            report["error"] = f"{type(e).__name__}: {e}"
        report["seconds"] = time.perf_counter() - t0
        report["cpu_s"] = time.process_time() - c0
        await c.close()
        report["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(report), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))


def _measure(argv: list[str], limit: float) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"no result within {limit:g} s (killed)"}
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    last = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return {"error": f"exit {proc.returncode}: {last[:160]}"}


def _line(name: str, rate: int, r: dict[str, Any], expected: int) -> str:
    head = f"{rate:>9,} Hz  {name:9}"
    rss = f"{r['peak_rss_mb']:8.0f} MB" if "peak_rss_mb" in r else f"{'—':>11}"
    if "error" in r and "values" not in r:
        return f"{head} {'failed':>24} {'—':>8} {'—':>7} {'—':>14} {rss}   {r['error']}"
    values = int(r.get("values", 0))
    rate_s = values / r["seconds"] if r.get("seconds") else 0.0
    note = r.get("error", "") or (f"{r['gaps']} gaps" if r.get("gaps") else "")
    if r.get("lane"):
        note = f"by {r['lane']}" + (f", {note}" if note else "")
    wall = f"{r['seconds']:8.2f}" if r.get("seconds") else f"{'—':>8}"
    cpu = f"{r['cpu_s']:7.2f}" if r.get("cpu_s") else f"{'—':>7}"
    return f"{head} {values:>11,} / {expected:<11,} {wall} {cpu} {rate_s:>14,.0f} {rss}   {note}"


def _start_proxy(peers: Any, device_port: int, client_buffer: int | None) -> tuple[Any, int]:
    if client_buffer is None:
        return peers.start_our_proxy(device_port, 1)  # type: ignore[no-any-return]
    argv = [peers.TWISTD, "-n", "--pidfile=", "pybrid-proxy", "-b", f"127.0.0.1:{device_port}",
            "--listen", "127.0.0.1", "--port", "0", "--client-buffer", f"{client_buffer}MiB"]
    child = peers.Child("pybrid-proxy", argv, ready=r"pybrid-proxy listening on [^\s:]+:(\d+)")
    port = int(child.wait_ready(30).group(1))
    if not child.wait_line(r"ready: carriers", 20):
        raise RuntimeError(f"pybrid-proxy: backend not ready in 20 s:\n{child.tail()}")
    return child, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="OP time per run (default 1)")
    ap.add_argument("--rates", default=",".join(map(str, RATES)),
                    help="comma-separated sample rates in Hz (default 100k, 500k, 1M, 2M)")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--carriers", type=int, default=2)
    ap.add_argument("--no-reference", action="store_true", help="only our client")
    ap.add_argument("--client-buffer", type=int, metavar="MIB",
                    help="the proxy's --client-buffer (default: the proxy's own, 64 MiB)")
    ap.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rate, args.seconds, args.channels)
        return

    import _peers

    atexit.register(_peers.stop_all)
    rates = [int(r) for r in args.rates.split(",") if r]
    reference = not args.no_reference and _peers.reference_installed()
    _dev, dev_port = _peers.start_device(["--carriers", str(args.carriers)])
    _proxy, port = _start_proxy(_peers, dev_port, args.client_buffer)
    limit = 3 * args.seconds + 60
    buffer = f"{args.client_buffer} MiB" if args.client_buffer else "default"
    print(f"clients through our proxy (client buffer {buffer}): {args.carriers} carriers x "
          f"{args.channels} ch f32, {args.seconds:g} s OP per run; "
          "values = rows x channels, all carriers")
    print(f"{'rate':>12}  {'client':9} {'values received':>24} {'wall s':>8} {'cpu s':>7} "
          f"{'values/s':>14} {'peak RSS':>11}")
    for rate in rates:
        expected = int(args.seconds * rate) * args.channels * args.carriers
        ours = _measure([sys.executable, __file__, "--child", str(port), "--rate", str(rate),
                         "--seconds", str(args.seconds), "--channels", str(args.channels)],
                        limit)
        print(_line("ours", rate, ours, expected), flush=True)
        if not reference:
            continue
        ref = _measure([str(_peers.REF_BIN / "python"), str(HERE / "_ref_run.py"),
                        "--port", str(port), "--channels", str(args.channels),
                        "--sample-rate", str(rate),
                        "--op-time-ns", str(round(args.seconds * 1e9))], limit)
        print(_line("reference", rate, ref, expected), flush=True)
    if not reference and not args.no_reference:
        print("reference client not installed in .ref/ (scripts/setup.sh): skipped")
    _peers.stop_all()


if __name__ == "__main__":
    main()

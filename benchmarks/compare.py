"""pybrid-proxy side by side with the reference C++ proxy (and with no proxy at all).

For each target — ``ours`` (``twistd -n pybrid-proxy``), ``ref`` (``.ref/bin/pybrid proxy``)
and ``direct`` (no proxy) — in front of / being one simulated device (``twistd -n
pybrid-device``, 1 carrier), each in its own process, it measures:

* P1  highest loss-free rate (datagrams/s; 8 channels × 100 samples per datagram): a step
      search over rates, one run of ``--seconds`` per step, counted by the fast counting client
      (``_counting_client.py``, its own process).  A step passes with every chunk counted once,
      0 kernel drops on the client's and the proxy's UDP sockets, DONE and the end message on
      every carrier, and the device having kept the pace (its OP phase lasted at most 5 % +
      50 ms longer than asked).  A step is tried up to ``--attempts`` times;
* CPU seconds of the proxy process per 1 000 datagrams forwarded (``/proc/<pid>/stat``), at
      ``--cpu-rate`` and at the highest loss-free rate;
* P3  the unmodified reference client's connect time (``add_device``), median;
* P4  session handover: A's close → B's first non-busy reply, B resending at once on busy;
* P5  generic ping round trip in a session that holds the device, at 50 pings/s (through the
      proxy minus direct); the same back to back on a connection holding no device (what a
      proxy's metering of such connections costs: ours, a 100/s token bucket); a standalone
      ping (connect + ping) and a forwarded request (``get_overload_status``), medians;
* P6  proxy RSS with 1 000 clients queued behind an active one, and its growth over 200
      connect / request / close cycles (both before P1), and RSS and its peak after P1.

Then prints one table with the ratio ours / reference and which of our goals hold.
Every wait is bounded; every child is killed on exit (also if this process is killed).

    .venv/bin/python benchmarks/compare.py [--quick] [--only ours,ref,direct] [--json FILE]

See docs/performance.md for definitions and recorded results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import signal
import sys
import time
from typing import Any

import _peers
import _probes
from _report import LABELS, TARGETS, machine, table

LADDER = [1000, 2000, 3000, 4000, 5000, 7000, 10_000, 14_000, 20_000, 28_000, 35_000, 42_000,
          50_000, 60_000, 70_000, 85_000, 100_000, 120_000, 150_000, 175_000, 200_000]
QUICK_LADDER = [1000, 3000, 5000, 10_000, 20_000, 35_000, 50_000, 70_000, 100_000]
PACE_SLACK = (1.05, 0.05)  # the device's OP phase may last op_time × 1.05 + 50 ms


def log(message: str) -> None:
    print(message, flush=True)


# -- P1 ------------------------------------------------------------------------------------


def judge(result: dict[str, Any], proxy_drops: int, seconds: float) -> str:
    """'' if the run was loss-free at the requested pace, else why not."""
    if result.get("event") != "run":
        return result.get("error", "no result")
    if result.get("start_reply") != "start_run_response":
        return f"start refused: {result.get('start_reply')} {result.get('error', '')}"[:120]
    why = []
    if result["missing"]:
        why.append(f"{result['missing']} missing")
    if result["duplicates"]:
        why.append(f"{result['duplicates']} duplicated")
    if result["client_drops"]:
        why.append(f"{result['client_drops']} client kernel drops")
    if proxy_drops:
        why.append(f"{proxy_drops} proxy kernel drops")
    if result["foreign"] or result["unknown_carrier"]:
        why.append(f"{result['foreign'] + result['unknown_carrier']} foreign messages")
    if not result.get("finished") or not result.get("all_done"):
        why.append("no DONE on every carrier")
    if any(c["ends"] != 1 for c in result["carriers"].values()):
        why.append("end message missing")
    op = result.get("device_op_seconds")
    if op is not None and op > seconds * PACE_SLACK[0] + PACE_SLACK[1]:
        why.append(f"device behind ({op:.2f} s for {seconds:g} s)")
    return ", ".join(why)


class RateSearch:
    """The P1 step search against one port, with the proxy process (if any) watched."""

    def __init__(self, port: int, proxy: _peers.Child | None, args: argparse.Namespace) -> None:
        self.port = port
        self.proxy = proxy
        self.args = args
        self.client: _peers.Child | None = None
        self.steps: list[dict[str, Any]] = []
        self.lane = "?"

    def _client(self) -> _peers.Child:
        if self.client is None:
            client = _peers.start_counting_client(self.port)
            ready = client.next_json(60)
            if ready.get("event") != "ready":
                client.stop()
                raise RuntimeError(f"counting client: {ready.get('error', ready)}\n{client.tail()}")
            self.lane = ready["lane"]
            self.client = client
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client = None

    def attempt(self, rate: int) -> dict[str, Any]:
        seconds = self.args.seconds
        client = self._client()
        proxy = self.proxy
        cpu0 = proxy.cpu_seconds() if proxy else 0.0
        drops0 = proxy.udp_drops() if proxy else 0
        host0 = _peers.host_cpu()
        client.send_line(json.dumps({"rate": rate, "seconds": seconds, "channels": 8,
                                     "timeout": seconds * 2 + 5}))
        result = client.next_json(seconds * 3 + 15)
        cpu = proxy.cpu_seconds() - cpu0 if proxy else None
        drops = proxy.udp_drops() - drops0 if proxy else 0
        busy = _peers.host_busy(host0)
        why = judge(result, drops, seconds)
        counted = result.get("counted", 0)
        step = {"rate": rate, "ok": not why, "why": why, "counted": counted,
                "device_behind_only": why.startswith("device behind"),
                "proxy_cpu": cpu, "proxy_drops": drops,
                "cpu_per_1000": (cpu / counted * 1000) if cpu is not None and counted else None,
                "device_op_seconds": result.get("device_op_seconds"),
                "out_of_order": result.get("out_of_order"), "lane": self.lane,
                "host_busy": busy}
        self.steps.append(step)
        verdict = "ok" if step["ok"] else f"LOSS: {why}"
        cpu_text = f", proxy CPU {step['cpu_per_1000']:.4f} s/1000" if step["cpu_per_1000"] else ""
        log(f"    {rate:>7} datagrams/s: {counted:>7} counted{cpu_text}, host CPU "
            f"{busy:4.0%} busy — {verdict}")
        if result.get("event") != "run" or not result.get("finished"):
            self.close()  # a stuck session: start over on a fresh connection
            time.sleep(0.5)
        return step

    def step(self, rate: int) -> bool:
        for _ in range(self.args.attempts):
            if self.attempt(rate)["ok"]:
                return True
        return False

    def run(self) -> dict[str, Any]:
        ladder = sorted(set(self.args.rates) | {self.args.cpu_rate})
        best: int | None = None
        failed: int | None = None
        try:
            for rate in ladder:
                if self.step(rate):
                    best = rate
                else:
                    failed = rate
                    break
            for _ in range(self.args.refine):
                if best is None or failed is None:
                    break
                mid = _nice((best + failed) / 2)
                if mid <= best or mid >= failed:
                    break
                if self.step(mid):
                    best = mid
                else:
                    failed = mid
        finally:
            self.close()
        last_failed = next((s for s in reversed(self.steps) if not s["ok"]), None)
        limited = bool(failed and last_failed and last_failed["device_behind_only"])
        return {"best": best, "first_failed": failed, "lane": self.lane, "steps": self.steps,
                "device_limited": limited,
                "cpu_at_rate": self._cpu(self.args.cpu_rate),
                "cpu_at_best": self._cpu(best) if best else None}

    def _cpu(self, rate: int) -> float | None:
        values = [s["cpu_per_1000"] for s in self.steps
                  if s["rate"] == rate and s["ok"] and s["cpu_per_1000"] is not None]
        return values[0] if values else None


def _nice(x: float) -> int:
    """``x`` rounded to two significant digits."""
    digits = max(0, int(math.log10(x)) - 1)
    return int(round(x / 10**digits) * 10**digits)


# -- one target ----------------------------------------------------------------------------


def measure(target: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"target": target}
    device, device_port = _peers.start_device()
    proxy: _peers.Child | None = None
    try:
        if target == "ours":
            proxy, port = _peers.start_our_proxy(device_port, args.clients + 100)
        elif target == "ref":
            proxy, port = _peers.start_ref_proxy(device_port)
        else:
            port = device_port
        if proxy is not None:
            out["rss_start"] = proxy.memory_kib()
            out["udp_rcvbuf"] = proxy.udp_rcvbufs()
        log(f"  P5 pings ({args.pings} in a session, {args.standalone} standalone)")
        out["p5"] = _guard(lambda: _probes.pings(port, args.pings, args.standalone))
        if proxy is not None:
            log(f"  P4 handover ({args.handovers} rounds)")
            out["p4"] = _guard(lambda: _probes.handover(port, args.handovers))
        if proxy is not None:  # memory first, on a proxy that has not streamed yet
            p = proxy
            log(f"  P6 RSS over {args.cycles} connect/disconnect cycles")
            out["p6_cycles"] = _guard(lambda: _probes.cycles(port, args.cycles, p.memory_kib))
            log(f"  P6 RSS with {args.clients} queued clients")
            out["p6_queued"] = _guard(lambda: _probes.queued_clients(
                port, args.clients, p.memory_kib, args.queue_budget))
        log(f"  P1 rate search ({args.seconds:g} s per step, up to {args.attempts} attempts)")
        search = RateSearch(port, proxy, args)
        out["p1"] = _guard(search.run)
        if proxy is not None:
            out["rss_after_p1"] = proxy.memory_kib()
        if _peers.reference_installed() and args.connects:
            log(f"  P3 reference client connect ({args.connects} rounds)")
            out["p3"] = _guard(lambda: [_peers.ref_client_connect(port)
                                        for _ in range(args.connects)])
        if proxy is not None:
            out["alive"] = proxy.proc.poll() is None
    finally:
        if proxy is not None:
            proxy.stop()
        device.stop()
    return out


def _guard(fn: Any) -> Any:
    try:
        return fn()
    except Exception as e:  # one failed measurement must not lose the others
        log(f"    failed: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short steps, fewer rounds (< 60 s)")
    ap.add_argument("--only", default=",".join(TARGETS),
                    help="comma-separated targets among ours, ref, direct")
    ap.add_argument("--rates", default="", help="comma-separated step ladder (datagrams/s)")
    ap.add_argument("--seconds", type=float, help="run length per step (2; quick 0.5)")
    ap.add_argument("--attempts", type=int, help="attempts per step (2; quick 1)")
    ap.add_argument("--refine", type=int, help="bisection steps after the ladder (1; quick 0)")
    ap.add_argument("--cpu-rate", type=int, default=3000, help="rate for the CPU comparison")
    ap.add_argument("--connects", type=int, help="reference-client connects (3; quick 1)")
    ap.add_argument("--handovers", type=int, help="handover rounds (10; quick 3)")
    ap.add_argument("--pings", type=int, help="pings in a session (200; quick 50)")
    ap.add_argument("--standalone", type=int, help="standalone pings (30; quick 10)")
    ap.add_argument("--clients", type=int, default=1000, help="queued clients for P6")
    ap.add_argument("--queue-budget", type=float, help="seconds to open them (20; quick 5)")
    ap.add_argument("--cycles", type=int, help="connect/disconnect cycles for P6 (200; quick 50)")
    ap.add_argument("--json", default="", help="also write every raw figure to this file")
    args = ap.parse_args()
    quick = args.quick
    defaults = {"seconds": (2.0, 0.5), "attempts": (2, 1), "refine": (1, 0),
                "connects": (3, 1), "handovers": (10, 3), "pings": (200, 50),
                "standalone": (30, 10), "queue_budget": (20.0, 5.0), "cycles": (200, 50)}
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    args.rates = ([int(x) for x in args.rates.split(",") if x.strip()] if args.rates
                  else (QUICK_LADDER if quick else LADDER))
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"--only: unknown target(s) {', '.join(sorted(unknown))}")
    if "ref" in targets and not _peers.reference_installed():
        log("reference not installed in .ref/: skipping target 'ref'")
        targets.remove("ref")

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    host0 = _peers.host_cpu()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["benchmarks/compare.py", *sys.argv[1:]])
    results: dict[str, Any] = {}
    try:
        # direct first: it also tells how much the device and client can do on this machine
        for target in sorted(targets, key=lambda t: ("direct", "ours", "ref").index(t)):
            log(f"== {LABELS[target]} ==")
            t0 = time.monotonic()
            try:
                results[target] = measure(target, args)
            except RuntimeError as e:  # a peer did not start: report it, measure the others
                log(f"  could not measure {LABELS[target]}: {e}")
                results[target] = {"target": target, "error": str(e)}
            log(f"  ({time.monotonic() - t0:.0f} s)")
    finally:
        _peers.stop_all()
    elapsed = time.monotonic() - started
    log("")
    log(f"pybrid-proxy vs reference proxy — {when}; {machine()}")
    log(f"command: {command}; {elapsed:.0f} s; load average at start {load}, host CPU "
        f"{_peers.host_busy(host0):.0%} busy throughout (this benchmark included)")
    log(f"load: 1 simulated device, 1 carrier × 8 f32 channels × 100 samples per datagram; "
        f"{args.seconds:g} s per step, {args.attempts} attempt(s)")
    log("")
    log(table(results, args.cpu_rate, args.clients, args.cycles))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"when": when, "machine": machine(), "command": command,
                       "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        _peers.stop_all()

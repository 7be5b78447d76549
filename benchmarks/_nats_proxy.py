"""``benchmarks/nats_export.py --through-proxy``: the real proxy's loss-free rate, export off / on.

Every peer its own process: ``--devices`` simulated devices of ``--carriers`` carriers each
(together a load source faster than the proxy: one device with one carrier stops near
30 000 datagrams/s), ``twistd -n pybrid-proxy`` in front of them — plain, or with ``--nats
URL`` against one local JetStream server, as a user would start it (the bridge its child at
nice 10) — and the counting client (``benchmarks/_counting_client.py``).  Per round a step
search for each mode, the two modes in alternating order from round to round: a ladder of
total datagrams/s, then two halvings between the last step that passed and the first that
failed.  A step passes when the client counted every chunk exactly once, every carrier
reached DONE with its end message and the proxy's UDP sockets saw 0 kernel drops; its rate
is what the proxy carried (chunks counted / the devices' OP phase): on a busy host the devices
may fall behind the pace asked, which is the load source's limit, not a loss.  The loss-free
rate is the highest rate carried by a passing step; the search ends with "devices behind"
when a higher step carried no more than the steps before.  Per step: the proxy's CPU per
datagram and, with the export on, the bridge's (the proxy's child process) and the chunks the
export stored, dropped and failed (the proxy's ``/metrics``, once the bridge settled; up to 5 s
after the run).  Modes: ``off``, ``on`` (the bridge at the default nice), ``idle``
(``--nats-sched-idle``), and ``niceN`` (``--nats-nice N``); ``+yieldN`` after any of them sets
``--shm-yield N`` (the taps skip chunks while the intake is N % full; 0: never) and
``+serverniceN`` runs the local JetStream server at nice N during that mode's search, and
``+old`` runs the proxy (and so its bridge) of the tree ``--old-tree`` (a checkout of an
earlier commit, with its ``pybrid/proto/pybrid_pb2.py``) for an interleaved comparison.  With the
export on, a step also reports the JetStream server's CPU per datagram (it shares the host).
"""

from __future__ import annotations

import os
import re
import statistics
import time
import urllib.request
from typing import Any

import _peers
import throughput as T


def start_devices(n: int, carriers: int) -> list[_peers.Child]:
    children = []
    for i in range(n):
        mac = f"00-00-00-00-{0x40 + i:02x}-00"  # carrier k gets this + k
        argv = [_peers.TWISTD, "-n", "--pidfile=", "pybrid-device", "--port", "0",
                "--interface", "127.0.0.1", "--mac", mac, "--carriers", str(carriers)]
        children.append(_peers.Child(f"device {i}", argv,
                                     ready=r"listening on 127\.0\.0\.1:(\d+)"))
    for c in children:
        c.port = int(c.wait_ready(60).group(1))  # type: ignore[attr-defined]
    return children


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _peers.CLK_TCK


def export_counts(status_url: str | None) -> dict[str, int]:
    """The export's message counts by outcome from the proxy's ``/metrics`` ({} without)."""
    if not status_url:
        return {}
    try:
        with urllib.request.urlopen(status_url + "metrics", timeout=5) as f:
            text = f.read().decode()
    except OSError:
        return {}
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(
        r'^pybrid_proxy_nats_messages_total\{outcome="(\w+)"\} (\S+)', text, re.M)}


def settled(status_url: str | None) -> dict[str, int]:
    """The counts once the bridge stopped storing (at most 5 s after the run)."""
    last = export_counts(status_url)
    for _ in range(10):
        time.sleep(0.5)
        now = export_counts(status_url)
        if now == last:
            break
        last = now
    return last


#: The local JetStream server's pid (set by nats_export.through_proxy), for its CPU time.
SERVER_PID: int | None = None


def step(client: _peers.Child, proxy: _peers.Child, devices: list[_peers.Child], rate: int,
         per_carrier_div: int, seconds: float, status_url: str | None = None) -> dict[str, Any]:
    """One run of ``rate`` total datagrams/s; what the client, the kernel and the export saw."""
    per_carrier = max(1, rate // per_carrier_div)
    bridges = child_pids(proxy.pid)
    bridge0 = sum(cpu_of(p) for p in bridges)
    server0 = cpu_of(SERVER_PID) if SERVER_PID and status_url else None
    e0 = export_counts(status_url)
    r = T.one_run(client, proxy, devices, per_carrier, seconds, 8)
    counted = r["counted"]
    bridge = sum(cpu_of(p) for p in bridges) - bridge0
    e1 = settled(status_url)
    server = None if server0 is None or not SERVER_PID else cpu_of(SERVER_PID) - server0
    export = {k: e1.get(k, 0) - e0.get(k, 0) for k in ("stored", "dropped", "failed")} \
        if status_url else None
    op = r["device_op_seconds"] or seconds
    return {"rate": per_carrier * per_carrier_div, "ok": r["ok"] or r["device_behind_only"],
            "carried": round(counted / max(op, seconds)) if counted else 0,
            "device_behind_only": r["device_behind_only"], "why": r["why"],
            "counted": counted, "proxy_drops": r["proxy_drops"],
            "proxy_us_per_datagram": r["proxy_us_per_datagram"],
            "bridge_us_per_datagram": round(bridge / counted * 1e6, 2) if bridges and counted
            else None, "server_us_per_datagram": round(server / counted * 1e6, 2)
            if server is not None and counted else None,
            "device_op_seconds": r["device_op_seconds"],
            "export": export,
            "restart_client": r["result"] is not None and not r["result"].get("finished")}


def search(mode: str, nats_url: str, args: Any) -> dict[str, Any]:
    devices = start_devices(args.devices, args.carriers)
    extra = ["--status-port", "0"]  # every mode: the same taps (the live view's) but the export
    if mode != "off":
        extra += ["--nats", nats_url, "--nats-queue", "100000"]
    base, *more = mode.split("+")
    if base == "idle":  # the bridge under SCHED_IDLE besides its nice
        extra.append("--nats-sched-idle")
    elif base.startswith("nice"):  # e.g. nice19: the bridge at that nice value
        extra += ["--nats-nice", base[4:]]
    server_nice = 0
    for part in more:  # e.g. on+yield0: the taps never yield to the intake
        if part.startswith("yield"):
            extra += ["--shm-yield", part[5:]]
        elif part.startswith("servernice") and SERVER_PID:
            server_nice = int(part[10:])
    if SERVER_PID:  # back to 0 after a niced mode needs privileges (root has them)
        try:
            os.setpriority(os.PRIO_PROCESS, SERVER_PID, server_nice)
        except PermissionError:
            print(f"    (cannot set the JetStream server's nice to {server_nice})", flush=True)
    tree = args.old_tree if "old" in more else None  # e.g. on+old: the proxy of that tree
    proxy, port = T.start_proxy([d.port for d in devices], extra, tree)  # type: ignore[attr-defined]
    client = T.start_client(port)
    status_url = None
    if mode != "off":
        time.sleep(2)  # the bridge's start (its own interpreter), not part of the first step
        found = [re.search(r"status page on (http://\S+/)", line) for line in proxy.lines]
        status_url = next((m.group(1) for m in found if m), None)
    div = args.devices * args.carriers
    steps: list[dict[str, Any]] = []
    best, failed, limit = 0, 0, ""

    def carried_best() -> int:
        return max((s["carried"] for s in steps[:-1] if s["ok"]), default=0)

    def attempt(rate: int) -> bool:
        nonlocal client, limit
        for _ in range(args.attempts):
            s = step(client, proxy, devices, rate, div, args.proxy_seconds, status_url)
            steps.append(s)
            print(f"    export {mode} {s['rate']:>6}/s: carried {s['carried']}/s, "
                  f"{'ok' if s['ok'] else 'LOSS'} {s['why'][:80]} (proxy "
                  f"{s['proxy_us_per_datagram']} µs/datagram, bridge "
                  f"{s['bridge_us_per_datagram']}, server {s['server_us_per_datagram']}, "
                  f"export {s['export']})", flush=True)
            if s["ok"]:
                if s["device_behind_only"] and s["carried"] <= carried_best():
                    limit = "devices behind"  # the load source carries no more
                    return False
                return True
            if s["restart_client"]:
                client.stop()
                time.sleep(0.5)
                client = T.start_client(port)
        return False

    try:
        for rate in args.proxy_rates:
            if not attempt(rate):
                failed = rate
                break
            best = rate
        for _ in range(2 if failed and not limit and best else 0):
            mid = (best + failed) // 2
            if attempt(mid):
                best = mid
            elif limit:
                break
            else:
                failed = mid
    finally:
        client.stop()
        proxy.stop()
        for d in devices:
            d.stop()
    at = [s for s in steps if s["ok"] and s["rate"] == best]
    return {"mode": mode, "loss_free_rate": max((s["carried"] for s in steps if s["ok"]),
                                                default=0),
            "asked": best, "first_failed": failed or None,
            "limit": limit or ("proxy" if failed else "ladder"),
            "proxy_us_per_datagram": at[-1]["proxy_us_per_datagram"] if at else None,
            "bridge_us_per_datagram": at[-1]["bridge_us_per_datagram"] if at else None,
            "export_at_best": at[-1]["export"] if at else None,
            "steps": steps}


def rounds(nats_url: str, args: Any) -> dict[str, Any]:
    """``args.proxy_rounds`` rounds of a search per mode (``off``, ``on``: the bridge at nice
    10, ``idle``: under SCHED_IDLE), in turned order from round to round."""
    modes = args.proxy_modes.split(",")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(args.proxy_rounds):
        for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
            load = os.getloadavg()[0]
            r = search(mode, nats_url, args)
            r["load_average"] = round(load, 2)
            results[mode].append(r)
            print(f"  round {i + 1}, export {mode}: loss-free {r['loss_free_rate']}/s (limit: "
                  f"{r['limit']}), proxy {r['proxy_us_per_datagram']} µs/datagram, load "
                  f"{load:.1f}", flush=True)
    med = {m: statistics.median(r["loss_free_rate"] for r in rs) for m, rs in results.items()}
    return {"rounds": {m: [{k: v for k, v in r.items() if k != "steps"} for r in rs]
                       for m, rs in results.items()},
            "median_loss_free_rate": med,
            "ratio_to_off": {m: round(med[m] / med["off"], 3) for m in modes
                             if m != "off" and med.get("off")}}

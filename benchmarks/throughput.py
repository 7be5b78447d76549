"""Data-path throughput of pybrid-proxy: simulated devices → proxy → a fast counting client.

Every peer is its own process: the devices (``twistd -n pybrid-device``), the proxy
(``twistd -n pybrid-proxy``) and the counting client (``benchmarks/_counting_client.py``, which
counts every chunk by carrier, run id and chunk number without decoding samples).  The proxy
refuses the client's UDP request, so run data reaches the client as TCP frames: the path
measured is device UDP → proxy intake → router → per-client sender → client TCP.

1. **Highest loss-free rate** (``--devices`` devices, 8 channels × 100 samples per datagram,
   ``--dtype``): a step search over total datagrams/s, one run of ``--seconds`` per step, up to
   ``--attempts`` tries per step.  A step passes with every chunk counted exactly once, the end
   message and DONE on every carrier, 0 kernel drops on the proxy's UDP sockets (read from
   ``/proc/net/udp`` by socket inode), and every device having kept the pace (its OP phase at
   most 5 % + 20 ms longer than asked).  A step whose only failure is a device falling behind
   is reported as such (the load generator's limit, not a loss).  Also printed per step: the
   proxy's CPU time per datagram (``/proc/<pid>/stat``).
2. **Scenario**: ``--scenario-devices`` (16) devices, each streaming "500 k samples/s at
   16 bit": 8 channels of i16 at a sample rate of 62 500 Hz — 62 500 × 8 = 500 000 16-bit
   values per second per device, 100 samples (1 600 bytes of samples) per datagram, so 625
   datagrams/s per device and 10 000 datagrams/s (≈ 18 MB/s) in all — for
   ``--scenario-seconds`` (60), the client reading at its own pace.  Loss, kernel drops and the
   proxy's RSS (before, after and peak) are printed.

    .venv/bin/python benchmarks/throughput.py [--quick] [--devices 1] [--dtype f32]
        [--seconds 3] [--rates 10000,20000,…] [--no-search] [--no-scenario]
        [--proxy-arg=--client-buffer=64MiB …] [--proxy-pythonpath DIR] [--json FILE]

``--proxy-pythonpath`` runs the proxy from another source tree (e.g. ``git archive HEAD``
unpacked somewhere) to compare before and after.  ``--quick``: 2 s steps, a shorter ladder,
a 10 s scenario.  Figures and the commands that made them: docs/throughput.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import time
from typing import Any

import _peers

LADDER = [5000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000,
          60_000, 70_000, 85_000, 100_000]
QUICK_LADDER = [10_000, 20_000, 35_000, 50_000, 70_000]
PACE_SLACK = (1.05, 0.02)


def log(message: str) -> None:
    print(message, flush=True)


# -- peers ---------------------------------------------------------------------------------


def start_devices(n: int, dtype: str, first: int = 1) -> list[tuple[_peers.Child, int]]:
    """``n`` one-carrier devices with distinct MACs, started in parallel."""
    children = []
    for i in range(n):
        mac = f"00-00-00-00-{(first + i) >> 8:02x}-{(first + i) & 0xFF:02x}"
        argv = [_peers.TWISTD, "-n", "--pidfile=", "pybrid-device", "--port", "0",
                "--interface", "127.0.0.1", "--mac", mac, "--dtype", dtype]
        children.append(_peers.Child(f"device {i}", argv,
                                     ready=r"listening on 127\.0\.0\.1:(\d+)"))
    return [(c, int(c.wait_ready(60).group(1))) for c in children]


#: ``twistd --reactor NAME`` for the proxy (``--proxy-reactor``; None: Twisted's default).
PROXY_REACTOR: str | None = None


def start_proxy(device_ports: list[int], extra: list[str],
                pythonpath: str | None) -> tuple[_peers.Child, int]:
    reactor = ["--reactor", PROXY_REACTOR] if PROXY_REACTOR else []
    argv = [_peers.TWISTD, "-n", "--pidfile=", *reactor, "pybrid-proxy", "--listen",
            "127.0.0.1", "--port", "0"]
    for port in device_ports:
        argv += ["-b", f"127.0.0.1:{port}"]
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    # from that tree its children too (``python -m`` looks in the working directory first)
    proxy = _peers.Child("pybrid-proxy", argv + extra,
                         ready=r"pybrid-proxy listening on [^\s:]+:(\d+)", env=env,
                         cwd=pythonpath)
    port = int(proxy.wait_ready(60).group(1))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = sum("ready: carriers" in line for line in list(proxy.lines))
        if ready >= len(device_ports):
            return proxy, port
        if proxy.proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = proxy.tail()
    proxy.stop()
    raise RuntimeError(f"pybrid-proxy: backends not ready:\n{tail}")


def start_client(port: int) -> _peers.Child:
    client = _peers.start_counting_client(port)
    ready = client.next_json(60)
    if ready.get("event") != "ready":
        client.stop()
        raise RuntimeError(f"counting client: {ready.get('error', ready)}\n{client.tail()}")
    return client


# -- one run -------------------------------------------------------------------------------


def judge(result: dict[str, Any], proxy_drops: int, seconds: float) -> tuple[str, bool]:
    """(why the run was not loss-free at the pace asked, or ''; whether the only problem is
    a device that fell behind)."""
    if result.get("event") != "run":
        return result.get("error", "no result"), False
    if result.get("start_reply") != "start_run_response":
        return f"start refused: {result.get('start_reply')} {result.get('error', '')}"[:160], False
    loss = []
    if result["missing"]:
        loss.append(f"{result['missing']} missing")
    if result["duplicates"]:
        loss.append(f"{result['duplicates']} duplicated")
    if result["client_drops"]:
        loss.append(f"{result['client_drops']} client kernel drops")
    if proxy_drops:
        loss.append(f"{proxy_drops} proxy kernel drops")
    if result["foreign"] or result["unknown_carrier"]:
        loss.append(f"{result['foreign'] + result['unknown_carrier']} foreign messages")
    if not result.get("finished") or not result.get("all_done"):
        loss.append("no DONE on every carrier")
    if any(c["ends"] != 1 for c in result["carriers"].values()):
        loss.append("end message missing")
    behind = []
    for path, c in result["carriers"].items():
        op = c.get("device_op_seconds")
        if op is not None and op > seconds * PACE_SLACK[0] + PACE_SLACK[1]:
            behind.append(f"{path} {op:.2f} s")
    if behind:
        text = f"device behind ({'; '.join(behind[:3])} for {seconds:g} s)"
        return ", ".join([*loss, text]), not loss
    return ", ".join(loss), False


def overflow_lines(proxy: _peers.Child) -> set[str]:
    """The proxy's log lines (of the last 200) saying it failed a run for a slow client."""
    return {line for line in list(proxy.lines) if "client buffer overflow" in line}


def one_run(client: _peers.Child, proxy: _peers.Child, devices: list[_peers.Child],
            per_device: int, seconds: float, channels: int) -> dict[str, Any]:
    cpu0, drops0 = proxy.cpu_seconds(), proxy.udp_drops()
    seen = overflow_lines(proxy)
    dev_cpu0 = sum(d.cpu_seconds() for d in devices)
    wall0 = time.perf_counter()
    client.send_line(json.dumps({"rate": per_device, "seconds": seconds, "channels": channels,
                                 "timeout": seconds * 2 + 10}))
    result = client.next_json(seconds * 3 + 30)
    wall = time.perf_counter() - wall0
    cpu = proxy.cpu_seconds() - cpu0
    drops = proxy.udp_drops() - drops0
    dev_cpu = sum(d.cpu_seconds() for d in devices) - dev_cpu0
    why, only_behind = judge(result, drops, seconds)
    if overflow_lines(proxy) - seen:
        why = f"{why}; the proxy failed the run: client buffer overflow"
        only_behind = False
    counted = result.get("counted", 0)
    return {
        "rate": per_device * len(devices), "per_device": per_device, "ok": not why,
        "why": why, "device_behind_only": only_behind, "counted": counted,
        "expected": result.get("expected_per_carrier", 0) * len(devices),
        "missing": result.get("missing"), "proxy_drops": drops,
        "client_drops": result.get("client_drops"), "proxy_cpu_s": round(cpu, 3),
        "proxy_us_per_datagram": round(cpu / counted * 1e6, 2) if counted else None,
        "proxy_core_share": round(cpu / wall, 3) if wall else None,
        "devices_cpu_s": round(dev_cpu, 3), "wall_s": round(wall, 2),
        "device_op_seconds": result.get("device_op_seconds"), "lane": None,
        "result": result if why else None,
    }


# -- 1: rate search ------------------------------------------------------------------------


def search(args: argparse.Namespace) -> dict[str, Any]:
    log(f"== highest loss-free rate: {args.devices} device(s), {args.channels} channels × 100 "
        f"samples of {args.dtype} per datagram, {args.seconds:g} s per step")
    devices = start_devices(args.devices, args.dtype)
    proxy, port = start_proxy([p for _, p in devices], args.proxy_arg, args.proxy_pythonpath)
    client = start_client(port)
    device_children = [d for d, _ in devices]
    steps: list[dict[str, Any]] = []
    best = failed = None
    try:
        for rate in args.rates:
            per_device = max(1, rate // args.devices)
            ok = False
            for _attempt in range(args.attempts):
                step = one_run(client, proxy, device_children, per_device, args.seconds,
                               args.channels)
                steps.append(step)
                verdict = "ok" if step["ok"] else ("DEVICE BEHIND: " if
                                                    step["device_behind_only"] else "LOSS: ")
                log(f"  {step['rate']:>7} datagrams/s: {step['counted']:>8} counted, proxy "
                    f"{step['proxy_us_per_datagram']} µs CPU/datagram "
                    f"({step['proxy_core_share']:.0%} of a core), devices "
                    f"{step['devices_cpu_s']:.1f} s CPU — "
                    f"{verdict if step['ok'] else verdict + step['why']}")
                if step["ok"]:
                    ok = True
                    break
                if step["result"] is None or not step["result"].get("finished"):
                    client.stop()
                    time.sleep(0.5)
                    client = start_client(port)
            if ok:
                best = rate
            else:
                failed = rate
                break
    finally:
        memory = proxy.memory_kib()
        client.stop()
        proxy.stop()
        for d in device_children:
            d.stop()
    log(f"  highest loss-free rate: {best} datagrams/s"
        + (f" (first failing step: {failed})" if failed else " (every step passed)")
        + f"; proxy VmHWM {memory.get('VmHWM', 0) / 1024:.0f} MiB (now RssAnon "
        f"{memory.get('RssAnon', 0) / 1024:.0f} MiB, RssShmem "
        f"{memory.get('RssShmem', 0) / 1024:.0f} MiB)")
    return {"best": best, "first_failed": failed, "steps": steps, "proxy_memory_kib": memory}


# -- 2: the 16-device scenario -------------------------------------------------------------


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    n, seconds = args.scenario_devices, args.scenario_seconds
    per_device = args.scenario_rate
    log(f"== scenario: {n} devices × {per_device} datagrams/s (8 ch i16 at "
        f"{per_device * 100} Hz = {per_device * 800:,} samples/s each) for {seconds:g} s")
    devices = start_devices(n, "i16", first=0x100)
    proxy, port = start_proxy([p for _, p in devices], args.proxy_arg, args.proxy_pythonpath)
    client = start_client(port)
    device_children = [d for d, _ in devices]
    try:
        before = proxy.memory_kib()
        step = one_run(client, proxy, device_children, per_device, seconds, 8)
        after = proxy.memory_kib()
    finally:
        client.stop()
        proxy.stop()
        for d in device_children:
            d.stop()
    verdict = "0 loss" if step["ok"] else f"NOT loss-free: {step['why']}"
    log(f"  {step['counted']} of {step['expected']} chunks counted, {step['missing']} missing, "
        f"proxy kernel drops {step['proxy_drops']}, client kernel drops "
        f"{step['client_drops']} — {verdict}")
    log(f"  proxy: {step['proxy_cpu_s']:.1f} s CPU in {step['wall_s']:.1f} s "
        f"({step['proxy_core_share']:.0%} of a core, {step['proxy_us_per_datagram']} µs per "
        f"datagram); RSS {before.get('VmRSS', 0) / 1024:.1f} MiB before, "
        f"{after.get('VmRSS', 0) / 1024:.1f} MiB after, peak "
        f"{after.get('VmHWM', 0) / 1024:.1f} MiB")
    return {"step": step, "rss_before_kib": before, "rss_after_kib": after}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--dtype", default="f32", choices=("f32", "f64", "i16", "u16"))
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--attempts", type=int, default=2)
    ap.add_argument("--rates", default=None, help="comma-separated total datagrams/s")
    ap.add_argument("--no-search", action="store_true")
    ap.add_argument("--no-scenario", action="store_true")
    ap.add_argument("--scenario-devices", type=int, default=16)
    ap.add_argument("--scenario-rate", type=int, default=625, help="datagrams/s per device")
    ap.add_argument("--scenario-seconds", type=float, default=None)
    ap.add_argument("--proxy-arg", action="append", default=[],
                    help="extra pybrid-proxy argument (repeatable), e.g. --proxy-arg=--debug")
    ap.add_argument("--proxy-pythonpath", default=None)
    ap.add_argument("--proxy-reactor", default=None,
                    help="twistd --reactor for the proxy, e.g. asyncio (default: Twisted's)")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    args = ap.parse_args()
    global PROXY_REACTOR
    PROXY_REACTOR = args.proxy_reactor
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 3.0
    if args.scenario_seconds is None:
        args.scenario_seconds = 10.0 if args.quick else 60.0
    if args.rates:
        args.rates = [int(r) for r in args.rates.split(",")]
    else:
        args.rates = QUICK_LADDER if args.quick else LADDER
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    out: dict[str, Any] = {"machine": platform.platform(), "argv": sys.argv,
                           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        if not args.no_search:
            out["search"] = search(args)
        if not args.no_scenario:
            out["scenario"] = scenario(args)
    finally:
        _peers.stop_all()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

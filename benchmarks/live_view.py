"""What the live view costs the proxy: 10 viewers at 30 frames/s vs none, in one run.

The peers of ``benchmarks/throughput.py`` (simulated device → ``twistd -n pybrid-proxy
--status-port 0`` → counting client, each its own process, loopback).  Per round, in
alternating order, one run at ``--rate`` datagrams/s (8 f32 channels × 100 samples each) for
``--seconds``.  The default, 30 000/s (3 M rows/s), is the proxy's highest loss-free rate with
one simulated device as ``benchmarks/throughput.py`` finds it (its ladder stops there: the
simulator's ceiling, not the proxy's), so the view is measured at the rate the issue asks;
``--rate 0`` finds it here first (steps of 5 000/s up to 30 000/s without viewers, the highest
loss-free one: on a busy host it can be lower):

* without viewers (the live tap decodes nothing), and
* with ``--viewers`` WebSocket viewers (``benchmarks/_live_viewers.py``, another process), each
  watching the last 100 ms of ``--channels`` channels (8: all; the page opens with 2) on
  1000 columns at up to 30 frames/s.  They are plain sockets that read each frame's header
  and skip its values, so they take little of the CPU the proxy shares (real viewers are
  browsers elsewhere; their own CPU per datagram is reported, ``viewers_us_per_datagram``);
  ``--twisted-viewers`` runs them on Twisted's WebSocket client, as before (10 of them took
  1.2–1.6 µs per datagram at 30 000/s here, the sockets 0.6–0.9).

Reported: whether the client's run was loss-free, the proxy's CPU µs per datagram and the
ratio with/without (of the medians, and the median of each round's own ratio), and the
latency from a datagram's arrival at the proxy to its frame made (``sent_at - arrived_at``,
stamped in the frame) and received by a viewer.

    .venv/bin/python benchmarks/live_view.py [--rounds 3] [--rate 30000] [--seconds 4]
        [--viewers 10] [--channels 8] [--chromium] [--proxy-pythonpath DIR] [--json FILE]
        [--twisted-viewers]

``--chromium`` also opens the page in headless Chromium during each watched run (10 viewers
plus the browser): the page's median latency from a datagram's arrival to its paint.
``--proxy-pythonpath`` runs the proxy and the viewers from another source tree (e.g.
``git archive`` of an older commit unpacked somewhere) to compare before and after.
``--via-monitor`` serves the viewers from ``pybrid-monitor --shm NAME --web 0`` instead (its own
process, started for each watched run), fed by the proxy's ``--shm-tap NAME``: what watching
costs the proxy when the view is served beside it (the unwatched runs: the tap without a
reader).  ``--live-process`` runs the proxy with ``--live-process``: the viewers connect to the
proxy's status port as usual and the proxy hands them to its child; the child's own CPU per
datagram is reported beside the proxy's (``child_us_per_datagram``).  ``--pin`` runs the proxy
on a core of its own (the last CPU this process may use) and every other process — device,
client, viewers, the live child, this script — on the others: what the view costs the proxy
itself, without the other processes contending for its core (on a 2-core host the others
share one core; the run must still be loss-free to count).  ``--profile DIR`` records the
proxy with py-spy during every run (``DIR/round1-on.raw`` …; collapsed stacks, idle excluded;
the live child's in watched runs: ``round1-on-child.raw``);
with ``--perf``, with Linux perf instead (``DIR/round1-on.perf``: where the kernel's time goes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import _peers
import throughput

HERE = _peers.ROOT / "benchmarks"


def from_log(proxy: _peers.Child, pattern: str, what: str) -> int:
    """The number ``pattern`` captures from the proxy's log, once the line came."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(proxy.lines):
            m = re.search(pattern, line)
            if m:
                return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"no {what}:\n{proxy.tail()}")


def live_child(proxy: _peers.Child) -> int:
    """The pid of the proxy's ``--live-process`` child, once it started."""
    return from_log(proxy, r"live view: process started \(pid (\d+)\)", "live process")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _peers.CLK_TCK


def status_port(proxy: _peers.Child) -> int:
    return from_log(proxy, r"status page on http://[^\s:]+:(\d+)/", "status page")


CHROMIUM = "/usr/bin/chromium"


def chromium_paint(url: str, seconds: float, out: dict[str, Any]) -> None:
    """Headless Chromium on the page (``log=1``: it logs its median arrival → paint latency
    each second) for ``seconds``; the last figures it logged."""
    with tempfile.TemporaryDirectory(prefix="pybrid-chromium-") as profile:
        proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                                 "--no-first-run", "--disable-background-networking",
                                 f"--user-data-dir={profile}", "--enable-logging=stderr",
                                 "--v=0", url + "&log=1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _o, err = proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.terminate()
            _o, err = proc.communicate(timeout=30)
    found = re.findall(r"pybrid-live painted (\d+) latency-ms ([\d.]+|nan)", err)
    if found:
        out["painted"] = int(found[-1][0])
        out["paint_median_ms"] = None if found[-1][1] == "nan" else float(found[-1][1])


def find_rate(client: _peers.Child, proxy: _peers.Child, devices: list[_peers.Child],
              seconds: float) -> int:
    """The highest step of 5 000 … 30 000 datagrams/s a run without viewers is loss-free at."""
    best = 0
    for rate in range(5000, 30_001, 5000):
        step = throughput.one_run(client, proxy, devices, rate, seconds, 8)
        throughput.log(f"rate {rate}/s without viewers: ok={step['ok']} {step['why'] or ''}")
        if not step["ok"]:
            break
        best = rate
    if not best:
        raise RuntimeError("not even 5 000 datagrams/s were loss-free")
    return best


def one_mode(args: argparse.Namespace, client: _peers.Child, proxy: _peers.Child,
             devices: list[_peers.Child], port: int, watched: bool,
             round_: int) -> dict[str, Any]:
    viewers = None
    browser: dict[str, Any] = {}
    thread = None
    monitor = None
    if watched and args.via_monitor:
        monitor, port = start_monitor(args, proxy)
    if watched and args.chromium and os.path.exists(CHROMIUM):
        page = f"http://127.0.0.1:{port}/live?window=0.1&channels=0,1,2,3,4,5,6,7"
        thread = threading.Thread(target=chromium_paint,
                                  args=(page, args.seconds + 1.0, browser))
    try:
        if watched:
            env = {"PYTHONPATH": args.proxy_pythonpath} if args.proxy_pythonpath else None
            viewers = _peers.Child("viewers", [sys.executable, str(HERE / "_live_viewers.py"),
                                               "--url", f"ws://127.0.0.1:{port}/live/ws",
                                               "--viewers", str(args.viewers),
                                               "--channels", str(args.channels),
                                               *(["--twisted"] if args.twisted_viewers else [])],
                                   stdin=True, env=env)
            if viewers.next_json(60).get("event") != "ready":
                raise RuntimeError(f"viewers not ready:\n{viewers.tail()}")
            viewers0 = cpu_of(viewers.pid)
        if thread is not None:
            thread.start()
        child0 = cpu_of(args.child_pid) if args.child_pid else 0.0
        name = f"round{round_}-{'on' if watched else 'off'}"
        spies = [profile(args, proxy.pid, name),
                 profile(args, args.child_pid if watched else 0, f"{name}-child")]
        step = throughput.one_run(client, proxy, devices, args.rate, args.seconds, 8)
        for spy in spies:
            if spy is not None:
                spy.wait(60)
        if args.child_pid and step["counted"]:
            step["child_us_per_datagram"] = round(
                (cpu_of(args.child_pid) - child0) / step["counted"] * 1e6, 2)
        if thread is not None:
            thread.join(120)
            step["chromium"] = browser
        if viewers is not None:
            if step["counted"]:  # the benchmark's own viewers share the host's CPU
                step["viewers_us_per_datagram"] = round(
                    (cpu_of(viewers.pid) - viewers0) / step["counted"] * 1e6, 2)
            viewers.send_line("report")
            step["viewers"] = viewers.next_json(30)
    finally:
        if viewers is not None:
            viewers.stop()
        if monitor is not None:
            monitor.stop()
    return step


def means_ratio(rounds: list[dict[str, Any]], draws: int = 4000) -> dict[str, float] | None:
    """Watched over unwatched mean CPU per datagram, with a 90 % bootstrap interval (the
    rounds resampled): single runs spread by ±10 % here, so one sitting's ratio needs its
    uncertainty beside it."""
    on = [r["on"]["proxy_us_per_datagram"] for r in rounds if r["on"]["proxy_us_per_datagram"]]
    off = [r["off"]["proxy_us_per_datagram"] for r in rounds
           if r["off"]["proxy_us_per_datagram"]]
    if len(on) < 2 or len(off) < 2:
        return None
    pick = random.Random(1)
    ratios = sorted(statistics.fmean(pick.choices(on, k=len(on)))
                    / statistics.fmean(pick.choices(off, k=len(off))) for _ in range(draws))
    return {"ratio": round(statistics.fmean(on) / statistics.fmean(off), 3),
            "low": round(ratios[draws // 20], 3), "high": round(ratios[draws - draws // 20], 3)}


def profile(args: argparse.Namespace, pid: int,
            name: str) -> subprocess.Popen[bytes] | None:
    """py-spy (or ``--perf``: Linux perf, kernel stacks too) recording process ``pid`` for the
    run about to start (``--profile``)."""
    if not args.profile or not pid:
        return None
    if args.perf:
        return subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid),
                                 "-o", os.path.join(args.profile, f"{name}.perf"), "--",
                                 "sleep", str(max(1, int(args.seconds)))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(args.profile, f"{name}.raw")
    spy = str(_peers.BIN / "py-spy")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-r", "200", "-d",
                             str(max(1, int(args.seconds))), "-f", "raw", "-o", out,
                             "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_monitor(args: argparse.Namespace, proxy: _peers.Child) -> tuple[_peers.Child, int]:
    """``pybrid-monitor --shm NAME --web 0``, once the proxy's tap attached to it; its port."""
    attached = sum("attached to the reader" in line for line in list(proxy.lines))
    env = {"PYTHONPATH": args.proxy_pythonpath} if args.proxy_pythonpath else None
    monitor = _peers.Child("monitor", [str(_peers.BIN / "pybrid-monitor"), "--shm", SHM_NAME,
                                       "--web", "0", "--interval", "60"],
                           ready=r"live view on http://[^\s:]+:(\d+)/", env=env)
    port = int(monitor.wait_ready(60).group(1))
    deadline = time.monotonic() + 30
    while sum("attached to the reader" in line for line in list(proxy.lines)) <= attached:
        if time.monotonic() > deadline:
            monitor.stop()
            raise RuntimeError(f"the proxy's shm tap did not attach:\n{proxy.tail()}")
        time.sleep(0.05)
    return monitor, port


#: The proxy's ``--shm-tap`` with ``--via-monitor``.
SHM_NAME = f"pybrid-bench-live-{os.getpid()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=30_000,
                    help="datagrams/s (default: the loss-free rate of throughput.py, 1 device;"
                         " 0: find it here first)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--channels", type=int, default=8,
                    help="channels each viewer watches (8: all; the page opens with 2)")
    ap.add_argument("--chromium", action="store_true",
                    help="also one headless Chromium on /live per watched run: paint latency")
    ap.add_argument("--proxy-pythonpath", help="run the proxy and viewers from this tree")
    ap.add_argument("--via-monitor", action="store_true",
                    help="serve the viewers from pybrid-monitor --shm … --web (another process)")
    ap.add_argument("--live-process", action="store_true",
                    help="run the proxy with --live-process (it hands the viewers to a child)")
    ap.add_argument("--pin", action="store_true",
                    help="the proxy on a core of its own, every other process on the others")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the proxy during every run")
    ap.add_argument("--perf", action="store_true",
                    help="--profile with Linux perf (kernel time by symbol) instead of py-spy")
    ap.add_argument("--twisted-viewers", action="store_true",
                    help="the viewers on Twisted's WebSocket client (as before; about twice "
                         "the CPU) instead of plain sockets")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin:
        if len(cpus) < 2:
            ap.error(f"--pin needs 2 CPUs or more; this process may use {cpus}")
        os.sched_setaffinity(0, set(cpus[:-1]))  # everything started from here inherits it
    devices = throughput.start_devices(1, "f32")
    extra = (["--status-port", "0"] + (["--shm-tap", SHM_NAME] if args.via_monitor else [])
             + (["--live-process"] if args.live_process else []))
    proxy, cport = throughput.start_proxy([p for _c, p in devices], extra,
                                          args.proxy_pythonpath)
    port = status_port(proxy)
    args.child_pid = live_child(proxy) if args.live_process else 0
    if args.pin:
        pin(proxy.pid, {cpus[-1]})
        if args.child_pid:
            pin(args.child_pid, set(cpus[:-1]))
    client = throughput.start_client(cport)
    children = [c for c, _p in devices]
    rounds: list[dict[str, Any]] = []
    try:
        if args.rate <= 0:
            args.rate = find_rate(client, proxy, children, args.seconds)
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            result = {}
            for watched in order:
                step = one_mode(args, client, proxy, children, port, watched, r + 1)
                result["on" if watched else "off"] = step
                v = step.get("viewers", {})
                throughput.log(
                    f"round {r + 1} viewers {'on ' if watched else 'off'}: ok={step['ok']} "
                    f"{step['why'] or ''} proxy {step['proxy_us_per_datagram']} µs/datagram"
                    + (f" (child {step.get('child_us_per_datagram')})" if args.live_process
                       else "")
                    + (f", viewers {step.get('viewers_us_per_datagram')} µs/datagram"
                       if watched else "")
                    + (f", {v.get('frames')} frames, made {v.get('made')}, "
                       f"received {v.get('wire')}" if watched else "")
                    + (f", chromium {step['chromium']}" if "chromium" in step else ""))
            rounds.append(result)
    finally:
        client.stop()
        proxy.stop()
        for c in children:
            c.stop()

    def med(mode: str) -> float:
        return statistics.median(r[mode]["proxy_us_per_datagram"] or 0 for r in rounds)

    # each round's watched run against its own unwatched one, back to back
    paired = [r["on"]["proxy_us_per_datagram"] / r["off"]["proxy_us_per_datagram"]
              for r in rounds
              if r["on"]["proxy_us_per_datagram"] and r["off"]["proxy_us_per_datagram"]]
    made = [r["on"]["viewers"]["made"].get("median_ms") for r in rounds]
    wire = [r["on"]["viewers"]["wire"].get("median_ms") for r in rounds]
    out = {"rate": args.rate, "viewers": args.viewers, "channels": args.channels,
           "pinned": args.pin,
           "served_by": ("pybrid-monitor --shm --web" if args.via_monitor else
                         "the proxy's --live-process child" if args.live_process
                         else "the proxy"),
           "child_us_per_datagram": {m: [r[m].get("child_us_per_datagram") for r in rounds]
                                     for m in ("off", "on")} if args.live_process else None,
           "viewers_us_per_datagram": [r["on"].get("viewers_us_per_datagram") for r in rounds],
           "viewer_client": "twisted" if args.twisted_viewers else "sockets",
           "rounds": rounds,
           "all_loss_free": all(r[m]["ok"] for r in rounds for m in ("on", "off")),
           "us_per_datagram_off": med("off"), "us_per_datagram_on": med("on"),
           "ratio": round(med("on") / med("off"), 3) if med("off") else None,
           "ratio_paired_median": round(statistics.median(paired), 3) if paired else None,
           "ratio_of_means": means_ratio(rounds),
           "made_median_ms": made, "received_median_ms": wire}
    throughput.log(json.dumps({k: v for k, v in out.items() if k != "rounds"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

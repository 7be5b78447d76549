"""The NATS export: its highest loss-free rate (replicas 1 and 3), and what it costs the proxy.

One run, the real objects of the proxy in this process (as ``benchmarks/shm_tap.py``): a
:class:`~pybrid.proxy.data.router.RunRouter` with one registered run and a TCP client
(:class:`~pybrid.proxy.clients.sender.ClientSender` into a real loopback connection a child
drains) receives real device datagrams (8 channels x 100 f32 samples) at ``--rate``; with the
export **on** the proxy also has the NATS feed and its link to the bridge
(``python -m pybrid.proxy.taps.nats --link-fd``, its own process, as ``twistd pybrid-proxy
--nats`` starts it; a block every 10 ms), which publishes into real ``nats-server`` processes
on 127.0.0.1 (JetStream, file storage, a temp dir): one server for replicas 1, a three-node
cluster for replicas 3.

1. **Export loss-free rate**: a step search over ``--rates`` (datagrams/s), ``--seconds`` per
   step; a step passes when JetStream acknowledged every chunk (the bridge's ``stored``) with
   nothing dropped, failed or not sent over the link.  Per step: the bridge's CPU per datagram.
2. **Proxy with the export on and off**: the router loop flat out (``--count`` datagrams, no
   pacing), ``--repeat`` times interleaved: datagrams/s (the proxy's loss-free maximum: the
   client gets every datagram in both cases; the export's own losses are counted apart) and
   proxy CPU µs per datagram (on two cores not a stable ratio: the bridge competes).
3. ``--through-proxy`` (``--only-proxy``: only this): the issue's goal (on ≥ 0.9 × off) through
   the real ``twistd pybrid-proxy`` — several multi-carrier devices, a step search of the
   proxy's loss-free rate per mode (off, on, idle: ``--nats-sched-idle``, niceN:
   ``--nats-nice N``) in interleaved rounds (:mod:`_nats_proxy`).

    .venv/bin/python benchmarks/nats_export.py [--rates 5000,10000,20000,40000]
        [--seconds 3] [--count 100000] [--repeat 3] [--replicas 1,3]
    .venv/bin/python benchmarks/nats_export.py --only-proxy [--proxy-rounds 3]
        [--proxy-modes off,on,idle] [--proxy-rates 40000,60000,…] [--devices 2] [--carriers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from twisted.internet import task

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from proxy_hotpath import PATH, Lane, datagrams
from shm_tap import RUN, SocketTransport

from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.proxy.data.router import RunRouter
from pybrid.proxy.taps.link import link_pair
from pybrid.proxy.taps.nats.child import DEFAULT_NICE, LINK_QUEUE
from pybrid.proxy.taps.nats.feed import FLUSH_EVERY

NATS_SERVER = str(pathlib.Path(sys.executable).with_name("nats-server"))
#: The bridge's ``--nice`` (``--nice``; as ``twistd pybrid-proxy --nats`` starts it).
NICE = DEFAULT_NICE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(replicas: int, store: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    ports = [free_port() for _ in range(replicas)]
    cluster = [free_port() for _ in range(replicas)] if replicas > 1 else []
    procs, urls = [], []
    for i, port in enumerate(ports):
        argv = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-n", f"b{i}",
                "-sd", os.path.join(store, f"n{i}")]
        if cluster:
            argv += ["--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{cluster[i]}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in cluster
                                          if p != cluster[i])]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        urls.append(f"nats://127.0.0.1:{port}")
    for port in ports:  # listening (the bridge retries until JetStream is ready)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    return procs, urls


class BridgeProc:
    """The bridge child; its status lines are read on demand (non-blocking)."""

    def __init__(self, urls: list[str], replicas: int) -> None:
        #: The proxy's end of the link (``--nats`` makes the same socket pair).
        self.sock, theirs = link_pair()
        argv = [sys.executable, "-m", "pybrid.proxy.taps.nats", "--link-fd",
                str(theirs.fileno()), "--proxy-name", "bench", "--replicas", str(replicas),
                "--queue", "100000", "--max-bytes", "4GiB", "--status-interval", "0.1",
                "--nice", str(NICE)]
        tag = uuid.uuid4().hex[:6]  # a stream and prefix per bridge: streams may not overlap
        argv += ["--nats-stream", f"B{tag}", "--nats-prefix", f"b{tag}"]
        for url in urls:
            argv += ["--nats", url]
        with theirs:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                         pass_fds=(theirs.fileno(),))
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        self.buffer = b""
        self.last: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)  # type: ignore[union-attr]
        except BlockingIOError:
            chunk = b""
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                self.last = json.loads(line)["nats_bridge"]
        return self.last

    def wait(self, predicate: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self.status()):
                return True
            time.sleep(0.05)
        return False

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)


class _Writers(task.Clock):
    """The reactor a link writer needs here: whether it waits for a writable socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[Any] = set()

    def addWriter(self, writer: Any) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer: Any) -> None:
        self.writers.discard(writer)


def proxy_loop(data: list[bytes], rate: float, bridge: BridgeProc | None) -> dict[str, Any]:
    """The router, a TCP client and, with ``bridge``, the export's feed into its link (a block
    every ``FLUSH_EVERY`` as the proxy sends; the rest written when the socket takes it)."""
    from pybrid.proxy.taps.link import LinkWriter
    from pybrid.proxy.taps.nats.feed import NatsFeed

    router = RunRouter()
    transport = SocketTransport()
    target = Session("bench", "127.0.0.1:1", ClientSender(transport))
    target.state = SessionState.ACTIVE
    feed = link = None
    reactor = _Writers()
    flushes = [transport.flush]
    if bridge is not None:
        link = LinkWriter(bridge.sock, reactor, LINK_QUEUE)
        feed = NatsFeed(link=link)
        router.tap = feed
        last = [0.0]

        def flush_feed() -> None:
            now = time.perf_counter()
            if link.behind:
                link.doWrite()
            if now - last[0] >= FLUSH_EVERY:
                last[0] = now
                feed.flush()
        flushes.append(flush_feed)
    router.register_run(RUN, target, [PATH])
    lane, route = Lane(), router.route_datagram
    interval = 64 / rate if rate else 0.0
    c0 = time.process_time()
    t0 = due = time.perf_counter()
    for i, d in enumerate(data):
        route(lane, d)
        if i & 63 == 63:
            for flush in flushes:
                flush()
            if interval:
                due += interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
    for flush in flushes:
        flush()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out: dict[str, Any] = {"datagrams_per_s": round(len(data) / wall),
                           "cpu_us_per_datagram": round(cpu / len(data) * 1e6, 2)}
    if feed is not None and link is not None:
        feed.flush()
        while link.behind:  # what waits for the bridge to read
            link.doWrite()
            time.sleep(0.002)
        out["tap_dropped"] = feed.not_sent
    assert router.counters.forwarded == len(data), router.counters
    transport.close()
    return out


def export_step(urls: list[str], replicas: int, rate: float, seconds: float) -> dict[str, Any]:
    data = datagrams(int(rate * seconds), 8, "f32")
    off = proxy_loop(data, rate, None)  # the same load without the export
    bridge = BridgeProc(urls, replicas)
    try:
        if not bridge.wait(lambda s: s.get("fed") and s.get("connected"), 60):
            raise RuntimeError(f"bridge not ready: {bridge.status()}")
        cpu0 = bridge.cpu()
        t0 = time.perf_counter()
        proxy = proxy_loop(data, rate, bridge)
        want = len(data) + 2  # the chunks, the run's start and layout
        # keeping up: every chunk stored within the step and a second
        kept_up = bridge.wait(lambda s: s.get("stored", 0) >= want,
                              max(0.0, t0 + seconds + 1.0 - time.perf_counter()))
        bridge.wait(lambda s: s.get("stored", 0) + s.get("dropped", 0)
                    + s.get("failed", 0) >= want, 60)
        s = bridge.status()
        took = time.perf_counter() - t0
        cpu = bridge.cpu() - cpu0
    finally:
        bridge.stop()
    ok = (kept_up and s.get("stored", 0) >= want and not s.get("dropped") and not s.get("failed")
          and not s.get("tap_gaps") and not proxy.get("tap_dropped"))
    return {"replicas": replicas, "rate": rate, "datagrams": len(data),
            "stored": s.get("stored", 0) - 2, "dropped": s.get("dropped", 0),
            "failed": s.get("failed", 0), "tap_lost": s.get("tap_gaps", 0)
            + proxy.get("tap_dropped", 0), "bridge_cpu_us_per_datagram":
            round(cpu / len(data) * 1e6, 2), "proxy_cpu_us_per_datagram_off":
            off["cpu_us_per_datagram"], "proxy_cpu_us_per_datagram":
            proxy["cpu_us_per_datagram"], "stored_per_s": round(s.get("stored", 0) / took),
            "ok": ok}


def through_proxy(args: argparse.Namespace) -> dict[str, Any]:
    """Part 3 (:mod:`_nats_proxy`): one JetStream server, the proxy's searches off and on."""
    import _nats_proxy
    import _peers

    store = tempfile.mkdtemp(prefix="pybrid-nats-bench-")
    procs, urls = start_servers(1, store)
    _nats_proxy.SERVER_PID = procs[0].pid
    try:
        return _nats_proxy.rounds(urls[0], args)
    finally:
        _peers.stop_all()
        for p in procs:
            p.kill()
            p.wait(10)
        shutil.rmtree(store, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="5000,10000,20000,40000,80000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--replicas", default="1,3")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nice", type=int, default=DEFAULT_NICE,
                    help=f"the bridge's --nice (default: {DEFAULT_NICE}, the proxy's)")
    ap.add_argument("--through-proxy", action="store_true",
                    help="also 3: the real twistd pybrid-proxy's loss-free rate, export off/on")
    ap.add_argument("--only-proxy", action="store_true", help="only 3 (implies it)")
    ap.add_argument("--devices", type=int, default=2, help="3: simulated devices")
    ap.add_argument("--carriers", type=int, default=2, help="3: carriers per device")
    ap.add_argument("--proxy-rates", default="20000,30000,40000,50000,60000,80000,100000",
                    help="3: the ladder of total datagrams/s")
    ap.add_argument("--proxy-seconds", type=float, default=2.0, help="3: seconds per step")
    ap.add_argument("--proxy-rounds", type=int, default=3, help="3: interleaved rounds")
    ap.add_argument("--attempts", type=int, default=2, help="3: tries per step")
    ap.add_argument("--proxy-modes", default="off,on",
                    help="off, on (the bridge at the default nice), idle (under SCHED_IDLE), "
                    "niceN (--nats-nice N); +old: the proxy of --old-tree")
    ap.add_argument("--old-tree", default=None, metavar="DIR",
                    help="3: a checkout of an earlier commit for the modes ending in +old")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally blocks stop the servers
    args.proxy_rates = [int(r) for r in args.proxy_rates.split(",")]
    global NICE
    NICE = args.nice
    print(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count()}), flush=True)
    summary: dict[str, Any] = {}
    if args.through_proxy or args.only_proxy:
        summary["through_proxy"] = through_proxy(args)
        print(json.dumps({"through_proxy": summary["through_proxy"]}), flush=True)
    for replicas in (int(r) for r in args.replicas.split(",") if not args.only_proxy):
        store = tempfile.mkdtemp(prefix="pybrid-nats-bench-")
        procs, urls = start_servers(replicas, store)
        best = 0.0
        try:
            for rate in (float(r) for r in args.rates.split(",")):
                step = export_step(urls, replicas, rate, args.seconds)
                print(json.dumps(step), flush=True)
                if not step["ok"]:
                    break
                best = rate
            if replicas == 1:  # the proxy with the export on and off, interleaved
                data = datagrams(args.count, 8, "f32")
                rounds = []
                for _ in range(args.repeat):
                    off = proxy_loop(data, 0, None)
                    bridge = BridgeProc(urls, 1)
                    try:
                        bridge.wait(lambda s: s.get("fed") and s.get("connected"), 60)
                        on = proxy_loop(data, 0, bridge)
                    finally:
                        bridge.stop()
                    rounds.append((off, on))
                    print(json.dumps({"export_off": off, "export_on": on}), flush=True)
                med = {k: {m: statistics.median(r[i][m] for r in rounds)
                           for m in ("datagrams_per_s", "cpu_us_per_datagram")}
                       for i, k in enumerate(("off", "on"))}
                summary["proxy"] = dict(med, rate_ratio_on_off=round(
                    med["on"]["datagrams_per_s"] / med["off"]["datagrams_per_s"], 3))
        finally:
            for p in procs:
                p.kill()
                p.wait(10)
            shutil.rmtree(store, ignore_errors=True)
        summary[f"export_loss_free_rate_replicas_{replicas}"] = best
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

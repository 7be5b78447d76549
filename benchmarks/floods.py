"""Issue 15 floods against ``twistd pybrid-proxy`` (point 3): RSS, latency, next session's run.

Starts a simulated device and our proxy, makes one client the active session, then for each
flood (bounded in time, loopback only) measures the proxy's RSS before, at the end of and 10 s
after the flood, the round trip of a standalone ping from another connection and of the active
session's ``get_overload_status`` during the flood, and whether the next session's request is
served right after the flood's connections close.  One JSON object per flood on stdout.

    .venv/bin/python benchmarks/floods.py [--seconds 8]

Floods: ``overload`` (the active session sends get_overload_status without reading),
``run_data`` (the active session sends run_data_message), ``extract`` (a queued connection
sends cached extracts at full speed, reading), ``unread`` (8 queued connections send extracts
and never read).

Issue 21 (point 14), ``--floods connect,hold``: a child process (tests/support/connect_flood.py)
opens 2 000 connections at a time and closes them (``connect``), or opens and holds 500 at a
time up to 6 000 silent ones (``hold``); the proxy's open descriptors (``/proc/PID/fd``) and RSS
are sampled every 0.1 s, each standalone ping is a fresh connection (a legitimate client's
connect, ping, close; failures counted).  ``--proxy-args`` passes options to the proxy, e.g.
``--proxy-args="--accepts-per-pass 100000 --max-pending 1000000"`` for the unbounded behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import sys
import threading
import time
from typing import Any

from _peers import ROOT, Child, start_device, start_our_proxy, stop_all
from _probes import OVERLOAD, Raw, ask_until_served, kind

from pybrid.proto import pb
from pybrid.wire.framing import encode_varint

SPEC = pb.ExtractCommand(recursive=True, specification=True)


def frame(kind_name: str, body: Any = None, rid: str = "f") -> bytes:
    env = pb.Envelope()
    field = getattr(env.message_v1, kind_name)
    if body is None:
        field.SetInParent()
    else:
        field.CopyFrom(body)
    env.message_v1.id = rid
    payload = env.SerializeToString()
    return encode_varint(len(payload)) + payload


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def blast(sock: socket.socket, data: bytes, until: float, read: bool) -> int:
    """Send ``data`` repeatedly until ``until`` (non-blocking; reading or not); bytes sent."""
    sock.setblocking(False)
    sent = 0
    while time.monotonic() < until:
        try:
            sent += sock.send(data)
        except (BlockingIOError, InterruptedError):
            time.sleep(0.0005)
        except OSError:
            break
        if read:
            try:
                while sock.recv(1 << 20):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                break
    return sent


def standalone_ping_ms(port: int) -> float:
    t0 = time.perf_counter()
    c = Raw(port)
    try:
        c.ping()
    finally:
        c.close()
    return (time.perf_counter() - t0) * 1e3


def one_flood(name: str, port: int, pid: int, seconds: float) -> dict[str, Any]:
    active = Raw(port)
    reply, _ = ask_until_served(active, OVERLOAD, 10)
    if kind(reply) != "get_overload_status_response":
        raise RuntimeError(f"active session not served: {kind(reply)}")
    before = rss_mib(pid)
    floods: list[socket.socket] = []
    until = time.monotonic() + seconds
    if name == "overload":  # on the active session's own connection
        data, targets, read = frame("get_overload_status_command") * 256, [active.sock], False
    elif name == "run_data":
        data, targets, read = frame("run_data_message") * 256, [active.sock], False
    elif name == "extract":
        floods = [socket.create_connection(("127.0.0.1", port))]
        data, targets, read = frame("extract_command", SPEC) * 64, floods, True
    else:  # unread
        floods = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        data, targets, read = frame("extract_command", SPEC) * 64, floods, False
    threads = [threading.Thread(target=blast, args=(s, data, until, read), daemon=True)
               for s in targets]
    for t in threads:
        t.start()
    pings: list[float] = []
    requests: list[float] = []
    peak = before
    probe = None if targets == [active.sock] else active
    while time.monotonic() < until:
        pings.append(standalone_ping_ms(port))
        if probe is not None:
            t0 = time.perf_counter()
            probe.ask(OVERLOAD)
            requests.append((time.perf_counter() - t0) * 1e3)
        peak = max(peak, rss_mib(pid))
        time.sleep(0.1)
    for t in threads:
        t.join(5)
    at_end = rss_mib(pid)
    for s in floods:
        s.close()
    active.close()
    t0 = time.perf_counter()
    nxt = Raw(port)
    reply, _ = ask_until_served(nxt, OVERLOAD, 15)
    next_ms = (time.perf_counter() - t0) * 1e3
    nxt.close()
    time.sleep(10)
    after = rss_mib(pid)
    return {
        "flood": name, "seconds": seconds, "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1), "rss_end_mib": round(at_end, 1),
        "rss_10s_after_mib": round(after, 1),
        "standalone_ping_ms_median": round(statistics.median(pings), 2),
        "standalone_ping_ms_max": round(max(pings), 2),
        "active_request_ms_median": round(statistics.median(requests), 2) if requests else None,
        "active_request_ms_max": round(max(requests), 2) if requests else None,
        "next_session_served": kind(reply) == "get_overload_status_response",
        "next_session_ms": round(next_ms, 1),
    }


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect_flood(mode: str, port: int, pid: int, seconds: float) -> dict[str, Any]:
    """The connect flood (see the module note): descriptors, RSS, pings, the next session."""
    active = Raw(port)
    ask_until_served(active, OVERLOAD, 10)
    fds_before, rss_before = fd_count(pid), rss_mib(pid)
    flood_args = ["--batch", "2000"] if mode == "connect" else ["--batch", "500", "--max", "6000"]
    flooder = Child(f"flood-{mode}", [sys.executable, str(ROOT / "tests" / "support" /
                                                          "connect_flood.py"), str(port),
                                      "--mode", "cycle" if mode == "connect" else "hold",
                                      "--seconds", str(seconds + 30), *flood_args],
                    ready="flooding")
    flooder.wait_ready(30)
    until = time.monotonic() + seconds
    pings: list[float] = []
    requests: list[float] = []
    failed: dict[str, int] = {}
    fds_peak, rss_peak = fds_before, rss_before
    while time.monotonic() < until:
        try:
            pings.append(standalone_ping_ms(port))
        except OSError as e:
            failed[type(e).__name__] = failed.get(type(e).__name__, 0) + 1
        t0 = time.perf_counter()
        active.ask(OVERLOAD)
        requests.append((time.perf_counter() - t0) * 1e3)
        for _ in range(3):
            fds_peak, rss_peak = max(fds_peak, fd_count(pid)), max(rss_peak, rss_mib(pid))
            time.sleep(0.1)
    flooder.stop()
    flooder._reader.join(5)  # its last line, the report
    report = next((line for line in reversed(flooder.lines) if line.startswith("{")), "{}")
    active.close()
    t0 = time.perf_counter()
    nxt = Raw(port, timeout=30)
    reply, _ = ask_until_served(nxt, OVERLOAD, 15)
    next_ms = (time.perf_counter() - t0) * 1e3
    nxt.close()
    time.sleep(10)
    return {
        "flood": mode, "seconds": seconds, "flooder": json.loads(report),
        "fds_before": fds_before, "fds_peak": fds_peak, "fds_10s_after": fd_count(pid),
        "rss_before_mib": round(rss_before, 1), "rss_peak_mib": round(rss_peak, 1),
        "rss_10s_after_mib": round(rss_mib(pid), 1),
        "standalone_pings": len(pings), "standalone_pings_failed": failed,
        "standalone_ping_ms_median": round(statistics.median(pings), 2) if pings else None,
        "standalone_ping_ms_max": round(max(pings), 2) if pings else None,
        "active_request_ms_median": round(statistics.median(requests), 2),
        "active_request_ms_max": round(max(requests), 2),
        "next_session_served": kind(reply) == "get_overload_status_response",
        "next_session_ms": round(next_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--floods", default="overload,run_data,extract,unread,connect,hold")
    ap.add_argument("--proxy-args", default="", help="more options for twistd pybrid-proxy")
    args = ap.parse_args()
    try:
        _device, device_port = start_device()
        proxy, port = start_our_proxy(device_port, 16, tuple(shlex.split(args.proxy_args)))
        for name in args.floods.split(","):
            if name in ("connect", "hold"):
                result = connect_flood(name, port, proxy.proc.pid, args.seconds)
            else:
                result = one_flood(name, port, proxy.proc.pid, args.seconds)
            print(json.dumps(result), flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()

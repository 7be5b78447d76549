"""Where our proxy spends its time per datagram: one run through ``twistd -n pybrid-proxy``
sampled with py-spy.

Starts the simulated device, our proxy and the counting client (three processes, as in
``compare.py``), warms up, then records the proxy with ``py-spy record --nonblocking`` during
one run at ``--rate`` datagrams/s and prints: what arrived, the kernel drops on the proxy's UDP
socket, CPU per datagram of the proxy, the device and the client, and the functions with the
largest share of the proxy's busy samples, converted to µs per datagram (share × proxy CPU /
datagrams).  py-spy itself costs the proxy some speed, so a run that is loss-free without it
may lose with it.

    .venv/bin/pip install py-spy     # once; not a project dependency
    .venv/bin/python benchmarks/profile_proxy.py [--rate 30000] [--seconds 4] [--top 25]
                                                 [--no-spy] [--proxy-arg=--nats=URL …]
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import _peers


def fold(path: pathlib.Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Total samples, inclusive and self counts per ``function (file)`` of a raw py-spy file."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        names = [_name(frame) for frame in stack.split(";")]
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    return total, inclusive, own


def _name(frame: str) -> str:
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else func


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=30_000)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sample-rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--proxy-arg", action="append", default=[],
                    help="extra pybrid-proxy argument (repeatable), e.g. --proxy-arg=--nats=URL")
    ap.add_argument("--no-spy", action="store_true",
                    help="only the CPU split per process, without py-spy (and its overhead)")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(_peers.BIN / "py-spy")
    if not args.no_spy and not pathlib.Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy")
        return 2
    out = pathlib.Path(tempfile.mkdtemp(prefix="proxy-profile-")) / "proxy.raw"
    try:
        device, device_port = _peers.start_device()
        proxy, port = _peers.start_our_proxy(device_port, 100, tuple(args.proxy_arg))
        client = _peers.start_counting_client(port)
        ready = client.next_json(30)
        if ready.get("event") != "ready":
            print(f"counting client: {ready}")
            return 1
        client.send_line(json.dumps({"rate": 1000, "seconds": 0.3, "timeout": 10}))  # warm-up
        client.next_json(20)
        recorder = None
        if not args.no_spy:
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(proxy.pid), "-d", str(int(args.seconds + 2)), "-r",
                 str(args.sample_rate), "-f", "raw", "-o", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )
            time.sleep(0.7)
        cpu = {"proxy": proxy.cpu_seconds(), "device": device.cpu_seconds(),
               "client": client.cpu_seconds()}
        drops = proxy.udp_drops()
        client.send_line(json.dumps({"rate": args.rate, "seconds": args.seconds,
                                     "timeout": args.seconds * 2 + 5}))
        result = client.next_json(args.seconds * 3 + 15)
        used = {"proxy": proxy.cpu_seconds() - cpu["proxy"],
                "device": device.cpu_seconds() - cpu["device"],
                "client": client.cpu_seconds() - cpu["client"]}
        drops = proxy.udp_drops() - drops
        if recorder is not None:
            try:
                recorder.wait(args.seconds + 30)
            except subprocess.TimeoutExpired:
                recorder.kill()
    finally:
        _peers.stop_all()
    counted = int(result.get("counted", 0))
    print(f"run at {args.rate:,} datagrams/s for {args.seconds:g} s: {counted:,} counted, "
          f"{result.get('missing')} missing, {drops} kernel drops on the proxy's UDP socket, "
          f"device OP phase {result.get('device_op_seconds')} s")
    for name, seconds in used.items():
        per = seconds / counted * 1e6 if counted else float("nan")
        print(f"  {name:<7} CPU {seconds:5.2f} s = {per:5.1f} µs/datagram "
              f"({seconds / args.seconds:4.0%} of a core)")
    if args.no_spy:
        return 0
    if not out.exists():
        print("py-spy wrote no profile (is ptrace allowed?)")
        return 1
    total, inclusive, own = fold(out)
    scale = used["proxy"] / counted * 1e6 if counted else 0.0
    print(f"\nproxy: {total} busy samples; share of them and µs/datagram (share × "
          f"{scale:.1f} µs)")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"--- {title}")
        for name, n in counter.most_common(args.top):
            print(f"  {n / total:6.1%} {n / total * scale:6.2f} µs  {name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        _peers.stop_all()

"""Cost of MulticastTap.emit per datagram on loopback multicast (prints µs and datagrams/s).

Run: ``.venv/bin/python benchmarks/monitor_tap.py [--count N]``.  Each case emits ``count``
datagrams in a tight loop from the calling thread, as the proxy's UDP receive path would, to
groups on 127.0.0.1 with TTL 0.  "joined" cases have one member socket per group that never
reads (after its buffer fills the kernel drops there; the sender still pays the delivery).
``bare sendto`` is the floor: the same bytes through a plain socket with no header or counting.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Callable

import numpy as np
from twisted.internet import reactor

from pybrid import samples
from pybrid.proto import pb
from pybrid.proxy.taps.multicast import MulticastTap
from pybrid.wire import messages

IFACE = "127.0.0.1"


def envelope(rows: int, channels: int) -> bytes:
    raw = np.zeros((rows, channels), dtype=np.float32)
    body = pb.RunDataMessage(run=pb.Run(id=messages.new_id(), chunk=7),
                             entity=pb.EntityId(path="/00-00-00-00-00-01"),
                             data=samples.encode(raw, "f32"))
    return messages.v1("run_data_message", body, id=messages.new_id()).SerializeToString()


def member(group: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton(IFACE))
    return s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((IFACE, 0))
        return int(s.getsockname()[1])


def timed(fn: Callable[[bytes], None], payload: bytes, count: int) -> float:
    fn(payload)  # warm up
    start = time.perf_counter()
    for _ in range(count):
        fn(payload)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    count = parser.parse_args().count
    port = free_port()
    groups = [(f"239.255.77.{n}", port) for n in range(1, 5)]
    members = [member(g, p) for g, p in groups]
    payloads = {
        "state 60 B": messages.v1(
            "run_state_change_message",
            pb.RunStateChangeMessage(old=pb.RunState.IC, new_=pb.RunState.OP),
        ).SerializeToString(),
        "100×3 f32 ≈1.3 kB": envelope(100, 3),
        "1000×2 f32 ≈8 kB": envelope(1000, 2),
        "8000×2 f32 ≈64 kB": envelope(8000, 2),
    }
    print(f"{'case':34} {'payload':>20} {'µs/datagram':>12} {'datagrams/s':>12}")
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.setblocking(False)
    plain.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(IFACE))
    plain.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)

    def bare(p: bytes) -> None:
        try:
            plain.sendto(p, groups[0])
        except OSError:
            pass

    def emitter(tap: MulticastTap) -> Callable[[bytes], None]:
        return lambda p: tap.emit(p, 0)

    cases: list[tuple[str, Callable[[bytes], None]]] = [("bare sendto, 1 group joined", bare)]
    taps = {}
    for name, targets in (("1 group joined", groups[:1]), ("4 groups joined", groups),
                          ("1 group, no member", [("239.255.78.1", port)])):
        tap = MulticastTap(reactor, targets, ttl=0, interface=IFACE)
        tap.start()
        taps[name] = tap
        cases.append((f"tap.emit, {name}", emitter(tap)))
    cases.append(("tap.emit, tap stopped", emitter(MulticastTap(reactor, groups[:1]))))
    for label, payload in payloads.items():
        for case, fn in cases:
            seconds = timed(fn, payload, count)
            print(f"{case:34} {label:>20} {seconds * 1e6:12.2f} {1 / seconds:12.0f}")
    for name, tap in taps.items():
        c = tap.counters
        print(f"{name}: emitted {c.emitted}, sent {[g.sent for g in c.groups]}, "
              f"dropped {[g.dropped for g in c.groups]}")
        tap.stop()
    for s in members:
        s.close()
    plain.close()


if __name__ == "__main__":
    main()

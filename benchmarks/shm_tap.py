"""Ways out of the proxy, per frame: TCP client, multicast tap, shared-memory tap.

One run, one process, the real objects: a :class:`~pybrid.proxy.data.router.RunRouter` with one
registered run receives ``--count`` real device datagrams (8 channels x 100 f32 samples,
``ChunkEncoder``) as fast as the loop can call ``route_datagram``, with

* ``router``: the run's target does nothing — the floor every path adds to;
* ``tcp``: a :class:`~pybrid.proxy.clients.session.Session` and its
  :class:`~pybrid.proxy.clients.sender.ClientSender` on Twisted's write buffering, flushed every 64
  datagrams as ``doWrite`` would, into a TCP connection on 127.0.0.1 a child process drains;
* ``multicast``: a :class:`~pybrid.monitor.MulticastTap` to one loopback group (TTL 0);
* ``shm``: a ``--shm-tap`` (:class:`~pybrid.proxy.taps.shm.service.ShmTaps`: feed, inline writer,
  ring) read by a separate process with :class:`pybrid.monitor.shm.ShmReader`;
  ``shm-thread`` the same with ``--shm-writer thread`` (batches of up to 512 frames per ring
  write) and ``shm-thread-batch1`` with one frame per ring write (the "before" of batching);
  ``shm-library-reader`` (not in the default list) reads with ``zerobuffer.Reader.read_frame``;
* ``all``: TCP client, multicast tap and shm tap together.

Per case: frames/s through the router loop, and for shm the frames/s until the reader had
every frame, frames lost (tap drops + reader gaps), proxy CPU µs per frame (the process,
writer thread included) and that minus the ``router`` floor: the cost of the path.

``--rate R`` offers the datagrams at R frames/s (the loop sleeps between groups of 64, as a
proxy waits for its device; sleeping costs no CPU), so every path is measured at the same,
sustainable load — the proxy's CPU per frame as a lab sees it.  Without it they go as fast as
the loop can: the loss-free maximum, where a reader slower than the proxy keeps the ring full.
``--repeat N`` runs the case list N times, interleaved, and the last line gives the medians
(path costs as the median of each run's case minus that run's ``router``).

    .venv/bin/python benchmarks/shm_tap.py [--count 100000] [--cases router,tcp,...]
        [--rate 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import task

sys.path.insert(0, str(Path(__file__).parent))
from proxy_hotpath import PATH, BufferTransport, Lane, datagrams

from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.proxy.data.router import RunRouter
from pybrid.proxy.taps.base import fan

RUN = "0d6e3c52-3f55-4c1b-9a43-2c1d3b8e7f10"
CASES = ("router", "tcp", "multicast", "shm-thread-batch1", "shm-thread", "shm", "all")


class SocketTransport(BufferTransport):
    """Twisted's write buffering flushed into a real TCP connection on 127.0.0.1 (no delay,
    as the proxy sets it for clients): a child process drains the other end, so the kernel's
    TCP work for every client byte is in the measurement."""

    def __init__(self) -> None:
        super().__init__()
        import socket

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        self.sock = socket.create_connection(server.getsockname())
        other, _ = server.accept()
        server.close()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.drain = subprocess.Popen(
            [sys.executable, "-c", f"import os\nwhile os.read({other.fileno()}, 1 << 20): pass"],
            pass_fds=(other.fileno(),))
        other.close()

    def flush(self) -> None:
        data = b"".join(self._tempDataBuffer)
        self._tempDataBuffer = []
        self._tempDataLen = 0
        self.sock.sendall(data)
        self.flushed += len(data)

    def close(self) -> None:
        self.sock.close()
        self.drain.wait(10)


class Null:
    session_id = "null"

    def deliver(self, payload: bytes) -> None:
        pass

    def run_ended(self, run_id: str, state: int) -> None:
        pass


#: The ring size the shm reader creates (``--ring-mb``).
RING_BYTES = 64 << 20


def start_reader(name: str, count: int, reference: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, str(Path(__file__).parent / "_shm_reader.py"), name, str(count),
            "--size", str(RING_BYTES)]
    proc = subprocess.Popen(argv + (["--reference"] if reference else []),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def run_case(case: str, data: list[bytes], rate: float = 0) -> dict[str, Any]:
    router = RunRouter()
    transport = None
    target: Any = Null()
    if case in ("tcp", "all"):
        transport = SocketTransport()
        sender = ClientSender(transport)
        target = Session("bench", "127.0.0.1:1", sender)
        target.state = SessionState.ACTIVE
    tap = shm = reader = None
    if case in ("multicast", "all"):
        from twisted.internet import reactor

        from pybrid.proxy.taps.multicast import MulticastTap

        tap = MulticastTap(reactor, [("239.255.77.78", 47078)], ttl=0, interface="127.0.0.1")
        tap.start()
    if case.startswith("shm") or case == "all":
        from pybrid.proxy.taps.shm import writer as W
        from pybrid.proxy.taps.shm.inline import InlineWriter
        from pybrid.proxy.taps.shm.service import ShmTaps

        name = f"pybrid-bench-{uuid.uuid4().hex[:8]}"
        reader = start_reader(name, len(data), reference=case == "shm-library-reader")
        clock: Any = task.Clock()
        clock.callFromThread = lambda f, *a: f(*a)  # reports only on failure
        threaded = case.startswith("shm-thread")
        shm = ShmTaps((name,), clock, lambda: [], write_timeout=60,
                      writer="thread" if threaded else "inline")
        batch = 1 if case == "shm-thread-batch1" else W.BATCH
        for t in shm.taps:
            if threaded:
                t.make_writer = (lambda ring, report, timeout, n, b=batch: _writer(
                    ring, report, timeout, n, b))
            else:
                t.make_writer = (lambda ring, report, timeout, n, c=clock: InlineWriter(
                    ring, report, c, write_timeout=timeout, name=n, max_frames=1 << 20,
                    max_bytes=1 << 31))
        shm.start()
        assert shm.taps[0].state == "attached", shm.taps[0].status()
    router.tap = fan([None if shm is None else shm.feed, tap])
    router.register_run(RUN, target, [PATH])
    lane = Lane()
    route = router.route_datagram
    # every 64 datagrams, what the reactor does after a pass over its sockets: the client
    # transport's doWrite, the inline shm writer's flush (callLater(0))
    flushes = []
    if transport is not None:
        flushes.append(transport.flush)
    if shm is not None:  # the clock follows real time: the writer's retries come when due
        flushes.append(lambda: clock.advance(max(0.0, time.perf_counter() - t0
                                                 - clock.seconds())))
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
    while shm is not None and shm.taps[0].status().queued and reader.poll() is None:
        clock.advance(0.002)  # the ring was full: the inline writer's retries
        time.sleep(0.002)
    loop = time.perf_counter() - t0
    out: dict[str, Any] = {"case": case, "frames": len(data), "rate": rate,
                           "loop_frames_per_s": round(len(data) / loop)}
    if shm is not None and reader is not None:
        report = json.loads(reader.communicate(timeout=120)[0].strip().splitlines()[-1])
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        status = shm.taps[0].status()
        shm.stop()
        out.update({"shm_frames_per_s": round(report["chunks"] / wall),
                    "shm_chunks_read": report["chunks"],
                    "shm_lost": status.frames_dropped + report["gaps"]
                    + (len(data) - report["chunks"]),
                    "reader_cpu_us_per_frame": round(report["cpu"] / max(1, report["chunks"])
                                                     * 1e6, 2)})
    else:
        cpu = time.process_time() - c0
    out["cpu_us_per_frame"] = round(cpu / len(data) * 1e6, 2)
    if tap is not None:
        out["multicast_dropped"] = tap.counters.dropped
        tap.stop()
    assert router.counters.forwarded == len(data), router.counters
    if transport is not None:
        out["tcp_bytes"] = transport.flushed
        transport.close()
    return out


def _writer(ring: Any, report: Any, timeout: float, name: str, batch: int) -> Any:
    from pybrid.proxy.taps.shm.writer import WriterThread

    writer = WriterThread(ring, report, write_timeout=timeout, name=name, batch=batch,
                          max_frames=1 << 20, max_bytes=1 << 31)
    writer.start()
    return writer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--ring-mb", type=int, default=64,
                    help="payload size of the ring the shm reader creates (MiB)")
    ap.add_argument("--rate", type=float, default=0,
                    help="offer the datagrams at this many frames/s (0: as fast as possible)")
    ap.add_argument("--repeat", type=int, default=1, help="run the case list this many times")
    args = ap.parse_args()
    global RING_BYTES
    RING_BYTES = args.ring_mb << 20
    data = datagrams(args.count, 8, "f32")
    print(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count(), "datagram_bytes": len(data[1]),
                      "ring_mb": args.ring_mb, "rate": args.rate}), flush=True)
    rounds: list[dict[str, dict[str, Any]]] = []
    for _ in range(args.repeat):
        results: dict[str, dict[str, Any]] = {}
        for case in args.cases.split(","):
            results[case] = run_case(case, data, args.rate)
            print(json.dumps(results[case]), flush=True)
        rounds.append(results)
    cases = [c for c in rounds[0] if c != "router"]
    summary: dict[str, Any] = {"repeat": args.repeat, "rate": args.rate}
    if "router" in rounds[0]:
        summary["path_cpu_us_per_frame"] = {c: round(statistics.median(
            r[c]["cpu_us_per_frame"] - r["router"]["cpu_us_per_frame"] for r in rounds), 2)
            for c in cases}
    summary["cpu_us_per_frame"] = {c: round(statistics.median(
        r[c]["cpu_us_per_frame"] for r in rounds), 2) for c in rounds[0]}
    summary["shm_frames_per_s"] = {c: round(statistics.median(
        r[c]["shm_frames_per_s"] for r in rounds)) for c in cases
        if "shm_frames_per_s" in rounds[0][c]}
    summary["lost"] = {c: sum(r[c].get("shm_lost", 0) + r[c].get("multicast_dropped", 0)
                              for r in rounds) for c in cases}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

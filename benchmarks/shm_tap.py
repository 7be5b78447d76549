"""Ways out of the proxy, per frame: TCP client, multicast tap, shared-memory tap.

One run, one process, the real objects: a :class:`~pybrid.proxy.router.RunRouter` with one
registered run receives ``--count`` real device datagrams (8 channels x 100 f32 samples,
``ChunkEncoder``) as fast as the loop can call ``route_datagram``, with

* ``router``: the run's target does nothing — the floor every path adds to;
* ``tcp``: a :class:`~pybrid.proxy.session.Session` and its
  :class:`~pybrid.proxy.sender.ClientSender` on Twisted's write buffering, flushed every 64
  datagrams as ``doWrite`` would (the kernel's send is left out, as in proxy_hotpath.py);
* ``multicast``: a :class:`~pybrid.monitor.MulticastTap` to one loopback group (TTL 0);
* ``shm``: a ``--shm-tap`` (:class:`~pybrid.shm.service.ShmTaps`: feed, writer thread, ring)
  read by a separate process with :class:`pybrid.monitor.shm.ShmReader`; ``shm-batch1``
  is the same with a hand-off of one frame per ring write (the "before" of batching);
* ``all``: TCP client, multicast tap and shm tap together.

Per case: frames/s through the router loop, and for shm the frames/s until the reader had
every frame, frames lost (tap drops + reader gaps), proxy CPU µs per frame (the process,
writer thread included) and that minus the ``router`` floor: the cost of the path.

    .venv/bin/python benchmarks/shm_tap.py [--count 100000] [--cases router,tcp,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import task

sys.path.insert(0, str(Path(__file__).parent))
from proxy_hotpath import PATH, BufferTransport, Lane, datagrams

from pybrid.proxy.router import RunRouter
from pybrid.proxy.sender import ClientSender
from pybrid.proxy.session import Session, SessionState

RUN = "0d6e3c52-3f55-4c1b-9a43-2c1d3b8e7f10"
CASES = ("router", "tcp", "multicast", "shm-batch1", "shm", "all")


class Null:
    session_id = "null"

    def deliver(self, payload: bytes) -> None:
        pass

    def run_ended(self, run_id: str, state: int) -> None:
        pass


def start_reader(name: str, count: int, reference: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, str(Path(__file__).parent / "_shm_reader.py"), name, str(count)]
    proc = subprocess.Popen(argv + (["--reference"] if reference else []),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def run_case(case: str, data: list[bytes]) -> dict[str, Any]:
    router = RunRouter()
    transport = None
    target: Any = Null()
    if case in ("tcp", "all"):
        transport = BufferTransport()
        sender = ClientSender(transport)
        target = Session("bench", "127.0.0.1:1", sender)
        target.state = SessionState.ACTIVE
    router.register_run(RUN, target, [PATH])
    tap = shm = reader = None
    if case in ("multicast", "all"):
        from twisted.internet import reactor

        from pybrid.monitor import MulticastTap

        tap = MulticastTap(reactor, [("239.255.77.78", 47078)], ttl=0, interface="127.0.0.1")
        tap.start()
        router.tap = tap
    if case.startswith("shm") or case == "all":
        from pybrid.shm import writer as W
        from pybrid.shm.service import ShmTaps

        name = f"pybrid-bench-{uuid.uuid4().hex[:8]}"
        reader = start_reader(name, len(data))
        clock: Any = task.Clock()
        clock.callFromThread = lambda f, *a: f(*a)  # reports only on failure
        shm = ShmTaps((name,), clock, lambda rid: router.runs[rid].carriers
                      if rid in router.runs else None, lambda: [], write_timeout=60)
        batch = 1 if case == "shm-batch1" else W.BATCH
        for t in shm.taps:
            t.make_writer = (lambda ring, report, timeout, n, b=batch: _writer(
                ring, report, timeout, n, b))
        shm.start()
        assert shm.taps[0].state == "attached", shm.taps[0].status()
        router.tap = shm.chain(tap)
    lane = Lane()
    route = router.route_datagram
    flush = transport.flush if transport is not None else None
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i, d in enumerate(data):
        route(lane, d)
        if flush is not None and i & 63 == 63:
            flush()
    loop = time.perf_counter() - t0
    out: dict[str, Any] = {"case": case, "frames": len(data),
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
    return out


def _writer(ring: Any, report: Any, timeout: float, name: str, batch: int) -> Any:
    from pybrid.shm.writer import WriterThread

    writer = WriterThread(ring, report, write_timeout=timeout, name=name, batch=batch,
                          max_frames=1 << 20, max_bytes=1 << 31)
    writer.start()
    return writer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    data = datagrams(args.count, 8, "f32")
    print(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count(), "datagram_bytes": len(data[1])}), flush=True)
    results = []
    for case in args.cases.split(","):
        results.append(run_case(case, data))
        print(json.dumps(results[-1]), flush=True)
    floor = next((r["cpu_us_per_frame"] for r in results if r["case"] == "router"), None)
    if floor is not None:
        print(json.dumps({"path_cpu_us_per_frame": {
            r["case"]: round(r["cpu_us_per_frame"] - floor, 2) for r in results
            if r["case"] != "router"}}), flush=True)


if __name__ == "__main__":
    main()

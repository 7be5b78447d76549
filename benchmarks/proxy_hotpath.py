"""Microseconds per datagram through the proxy's data path: intake → router → sender.

Builds the real objects of ``pybrid.proxy`` (a :class:`~pybrid.proxy.backend.intake.DatagramIntake`
delivering to a :class:`~pybrid.proxy.data.router.RunRouter` with one registered run, a
:class:`~pybrid.proxy.clients.session.Session` and its
:class:`~pybrid.proxy.clients.sender.ClientSender`)
on a transport whose ``write``/``writeSequence`` are Twisted's own buffering code
(``abstract.FileDescriptor``) with the socket write left out: every 64 datagrams the buffer is
emptied as ``doWrite`` would.  Datagrams are real device chunks (``ChunkEncoder``) of
``--channels`` × 100 samples.  Prints one JSON line per variant: µs per datagram (best of
``--repeat`` runs of ``--count`` datagrams).

    .venv/bin/python benchmarks/proxy_hotpath.py [--count 200000] [--repeat 5] [--channels 8]
        [--dtype f32] [--tap]

``--tap`` adds a monitor tap sending to 239.255.77.77:(free port) on 127.0.0.1 (TTL 0).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from twisted.internet import abstract, task

from pybrid.device.encoding import ChunkEncoder, WireChannel
from pybrid.proxy.backend.intake import DatagramIntake
from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.proxy.data.router import RunRouter

PATH = "/00-00-00-00-00-01"
ITEMSIZE = {"f32": 4, "f64": 8, "i16": 2, "u16": 2}


class BufferTransport(abstract.FileDescriptor):
    """Twisted's write buffering without a socket; ``flush`` plays ``doWrite``."""

    connected = 1

    def __init__(self) -> None:
        super().__init__(reactor=task.Clock())  # type: ignore[arg-type]
        self.flushed = 0

    def startWriting(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass

    def flush(self) -> None:
        self.flushed += self._tempDataLen
        self._tempDataBuffer = []
        self._tempDataLen = 0
        if self.producer is not None and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()  # type: ignore[attr-defined]

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


class Lane:
    name = "127.0.0.1:5732"
    carriers = (PATH,)
    index = 0


def datagrams(n: int, channels: int, dtype: str) -> list[bytes]:
    wire = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(channels))
    enc = ChunkEncoder("0d6e3c52-3f55-4c1b-9a43-2c1d3b8e7f10", PATH, wire, dtype, ITEMSIZE[dtype])
    raw = np.arange(100 * channels, dtype=np.uint8).tobytes() * ITEMSIZE[dtype]
    return [enc.encode(i, raw, 100) for i in range(n)]


def build(tap: Any = None, same_id: bool = False) -> tuple[DatagramIntake, BufferTransport, Any]:
    router = RunRouter()
    if tap is not None and hasattr(router, "tap"):
        router.tap = tap
    transport = BufferTransport()
    sender = ClientSender(transport)
    if hasattr(sender, "attach"):
        sender.attach()
    session = Session("bench", "127.0.0.1:1", sender)
    session.state = SessionState.ACTIVE
    # the client knows the run by another id (as every client does since issue 15): the router
    # puts the client's id back into every datagram (pybrid.wire.layout.with_run_id)
    client_id = None if same_id else "11111111-2222-4333-8444-555555555555"
    router.register_run("0d6e3c52-3f55-4c1b-9a43-2c1d3b8e7f10", session, [PATH],
                        client_id=client_id)
    lane = Lane()
    intake = DatagramIntake(lane.name, lane, router)
    intake.peer_host = "127.0.0.1"
    return intake, transport, router


def measure(intake: DatagramIntake, transport: BufferTransport, data: list[bytes]) -> float:
    addr = ("127.0.0.1", 9999)
    receive = intake.datagramReceived
    flush = transport.flush
    t0 = time.perf_counter()
    for i, d in enumerate(data):
        receive(d, addr)
        if i & 63 == 63:
            flush()
    return (time.perf_counter() - t0) / len(data) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--dtype", default="f32", choices=sorted(ITEMSIZE))
    ap.add_argument("--tap", action="store_true")
    ap.add_argument("--same-id", action="store_true",
                    help="the client's run id is the proxy's (no rewrite; before issue 15)")
    args = ap.parse_args()
    tap = None
    if args.tap:
        from twisted.internet import reactor

        from pybrid.proxy.taps.multicast import MulticastTap

        tap = MulticastTap(reactor, [("239.255.77.77", 47077)], ttl=0, interface="127.0.0.1")
        tap.start()
    # chunk numbers up to count: the encoder's per-varint-length cache keeps this cheap
    data = datagrams(args.count, args.channels, args.dtype)
    best = float("inf")
    for _ in range(args.repeat):
        intake, transport, router = build(tap, args.same_id)
        best = min(best, measure(intake, transport, data))
        assert router.counters.forwarded == args.count, router.counters
    print(json.dumps({"us_per_datagram": round(best, 3), "datagram_bytes": len(data[1]),
                      "count": args.count, "channels": args.channels, "dtype": args.dtype,
                      "tap": args.tap}))


if __name__ == "__main__":
    main()

"""The live view's WebSocket transport: Twisted's own ``twisted.web.websocket`` against autobahn.

Issue 23 asks to choose the transport by measurement.  Both servers run the same load in a
child process on the default reactor: ``--viewers`` connected clients, each sent one binary
message of ``--size`` bytes ``--fps`` times a second for ``--seconds`` (the live view's shape:
10 viewers × 30 frames/s × 64 KB), then once more flat out (as fast as the clients read, one
message in flight per client).  The clients are the same for both (Twisted's WebSocket client
in this process).  Per server: its CPU (user + system) per message sent, messages received,
and the median time from a message's send to its arrival.  autobahn is not a dependency of
pybrid; install it beside to run this (``.venv/bin/pip install autobahn``).

    .venv/bin/python benchmarks/ws_transport.py [--viewers 10] [--fps 30] [--size 65536]
        [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

from pybrid.live.ws import binary_header  # what the live view writes

SERVERS = ("twisted", "twisted-frames", "autobahn")


# ---- the server (child process) -------------------------------------------------------------

def serve(kind: str, viewers: int, fps: float, size: int, seconds: float) -> None:
    from twisted.internet import reactor as r
    from twisted.internet import task

    reactor: Any = r
    clients: list[Any] = []
    payload = bytes(size - 8)

    def frame() -> bytes:
        return struct.pack("<d", time.time()) + payload

    if kind.startswith("twisted"):
        from twisted.web import resource, server
        from twisted.web.websocket import WebSocketResource

        class Proto:
            def __init__(self) -> None:
                self.transport: Any = None

            def negotiationStarted(self, transport: Any) -> None:
                self.transport = transport

            def negotiationFinished(self) -> None:
                clients.append(self)

            def textMessageReceived(self, message: str) -> None:  # "next": flat out
                self.send()

            def bytesMessageReceived(self, data: bytes) -> None:
                pass

            def pongReceived(self, payload: bytes) -> None:
                pass

            def connectionLost(self, reason: Any) -> None:
                pass

            def send(self) -> None:
                if kind == "twisted":
                    self.transport.sendBytesMessage(frame())
                else:  # the frame header written by hand, the payload not copied
                    data = frame()
                    self.transport.transport.writeSequence([binary_header(len(data)), data])

        class Factory:
            def buildProtocol(self, request: Any) -> Proto:
                return Proto()

        root = resource.Resource()
        root.putChild(b"ws", WebSocketResource(Factory()))  # type: ignore[arg-type]
        port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    else:
        from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

        class AProto(WebSocketServerProtocol):  # type: ignore[misc]
            def onOpen(self) -> None:
                clients.append(self)

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                self.send()

            def send(self) -> None:
                self.sendMessage(frame(), isBinary=True)

        factory = WebSocketServerFactory()
        factory.protocol = AProto
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    print(json.dumps({"port": port.getHost().port}), flush=True)

    def paced() -> None:
        for c in clients:
            c.send()

    state: dict[str, Any] = {}

    def control() -> None:
        line = sys.stdin.readline().strip()
        if line == "paced":
            t = os.times()
            state["cpu"] = t.user + t.system
            state["loop"] = task.LoopingCall(paced)
            state["loop"].clock = reactor
            state["loop"].start(1.0 / fps)
        elif line == "stop":
            state["loop"].stop()
            t = os.times()
            print(json.dumps({"cpu": t.user + t.system - state["cpu"]}), flush=True)
        elif line == "mark":
            t = os.times()
            state["cpu"] = t.user + t.system
        elif line == "cpu":
            t = os.times()
            print(json.dumps({"cpu": t.user + t.system - state["cpu"]}), flush=True)
        elif line in ("", "quit"):
            reactor.stop()

    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    class Stdin(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            sys.stdin = _Line(line.decode())  # type: ignore[assignment]
            control()

        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Stdin())
    reactor.run()


class _Line:
    def __init__(self, line: str) -> None:
        self.line = line

    def readline(self) -> str:
        return self.line


# ---- the clients and the driver (this process) ----------------------------------------------

def run_round(kind: str, args: argparse.Namespace) -> None:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--viewers", str(args.viewers),
         "--fps", str(args.fps), "--size", str(args.size), "--seconds", str(args.seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    port = json.loads(child.stdout.readline())["port"]
    try:
        drive(child, port, args)
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def drive(child: subprocess.Popen[str], port: int, args: argparse.Namespace) -> None:
    from twisted.internet import defer, task
    from twisted.web.websocket import WebSocketClientEndpoint

    out: dict[str, Any] = {}
    assert child.stdin is not None and child.stdout is not None
    cin, cout = child.stdin, child.stdout

    def say(line: str) -> None:
        cin.write(line + "\n")
        cin.flush()

    class Client:
        def __init__(self) -> None:
            self.transport: Any = None
            self.latency: list[float] = []
            self.flat = False
            self.got = 0

        def buildProtocol(self, url: str) -> Client:
            return self

        def negotiationStarted(self, transport: Any) -> None:
            self.transport = transport

        def negotiationFinished(self) -> None:
            pass

        def pongReceived(self, payload: bytes) -> None:
            pass

        def textMessageReceived(self, message: str) -> None:
            pass

        def bytesMessageReceived(self, data: bytes) -> None:
            self.got += 1
            self.latency.append(time.time() - struct.unpack_from("<d", data)[0])
            if self.flat:
                self.transport.sendTextMessage("next")

        def connectionLost(self, reason: Any) -> None:
            pass

    async def main(reactor: Any) -> None:
        clients = [Client() for _ in range(args.viewers)]
        for c in clients:
            await WebSocketClientEndpoint.new(reactor, f"ws://127.0.0.1:{port}/ws").connect(c)
        say("paced")
        await task.deferLater(reactor, args.seconds, lambda: None)
        say("stop")
        await task.deferLater(reactor, 0.5, lambda: None)
        cpu = json.loads(cout.readline())["cpu"]
        got = sum(c.got for c in clients)
        lat = [x for c in clients for x in c.latency]
        median = round(statistics.median(lat) * 1e3, 2) if lat else None
        out["paced"] = {"messages": got, "cpu_us_per_message": round(cpu / max(got, 1) * 1e6, 1),
                        "cpu_share": round(cpu / args.seconds, 3), "latency_ms_median": median}
        for c in clients:
            c.got = 0
            c.latency.clear()
            c.flat = True
        say("mark")
        for c in clients:
            c.transport.sendTextMessage("next")
        await task.deferLater(reactor, args.seconds, lambda: None)
        for c in clients:
            c.flat = False
        await task.deferLater(reactor, 0.5, lambda: None)
        say("cpu")
        cpu = json.loads(cout.readline())["cpu"]
        got = sum(c.got for c in clients)
        out["flat_out"] = {"messages_per_s": round(got / args.seconds),
                           "cpu_us_per_message": round(cpu / max(got, 1) * 1e6, 1)}
        for c in clients:
            c.transport.loseConnection()
        print(json.dumps(out), flush=True)

    task.react(lambda r: defer.ensureDeferred(main(r)))  # prints the result, then exits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", choices=SERVERS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.viewers, args.fps, args.size, args.seconds)
        return
    try:
        import autobahn  # noqa: F401
    except ImportError:
        sys.exit("ws_transport: autobahn is not installed (.venv/bin/pip install autobahn)")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in SERVERS}
    for i in range(args.rounds):
        for kind in SERVERS if i % 2 == 0 else SERVERS[::-1]:
            res = _subround(kind, args)
            results[kind].append(res)
            print(json.dumps({"round": i + 1, "server": kind, **res}), flush=True)
    print(json.dumps({"load_average": os.getloadavg()[0]}), flush=True)
    for kind, rs in results.items():
        paced = statistics.median(r["paced"]["cpu_us_per_message"] for r in rs)
        flat = statistics.median(r["flat_out"]["messages_per_s"] for r in rs)
        flat_cpu = statistics.median(r["flat_out"]["cpu_us_per_message"] for r in rs)
        print(f"{kind:9s} paced: {paced:7.1f} µs CPU/message   flat out: {flat:7.0f} messages/s, "
              f"{flat_cpu:6.1f} µs CPU/message  (medians of {len(rs)})")


def _subround(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    # Each round in a fresh driver process: the global reactor runs once per process.
    cmd = [sys.executable, __file__, "--round-of", kind] + [
        f"--{k}={getattr(args, k)}" for k in ("viewers", "fps", "size", "seconds")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds * 4 + 60)
    if res.returncode:
        raise SystemExit(f"ws_transport: the {kind} round failed:\n{res.stderr[-2000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--round-of":
        ap = argparse.ArgumentParser()
        ap.add_argument("--round-of")
        for k, t in (("viewers", int), ("fps", float), ("size", int), ("seconds", float)):
            ap.add_argument(f"--{k}", type=t)
        run_round(ap.parse_args().round_of, ap.parse_args())
    else:
        main()

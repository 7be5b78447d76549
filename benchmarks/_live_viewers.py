"""Child of benchmarks/live_view.py: N WebSocket viewers of a live view, reporting latencies.

Prints ``{"event": "ready"}`` once every viewer is connected; on a ``report`` line on stdin,
one JSON line: frames received, and the medians / 95th percentiles of ``sent_at - arrived_at``
(datagram arrival → frame made, server clock) and ``received - arrived_at`` (→ frame in this
process: on the wire and decoded).  Same host, so both clocks are the system's.  Then it
starts counting afresh.  EOF on stdin: exit.

By default the viewers are plain sockets read into one reused buffer each (``raw_main``: the
WebSocket handshake, then frame headers parsed and payloads skipped but for a frame's header
and meta), so the benchmark's own viewers take as little of the host's CPU as they can — real
viewers are browsers on other hosts.  ``--twisted`` uses Twisted's WebSocket client instead
(what the benchmark did before: about twice the CPU for 10 viewers here).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import selectors
import socket
import statistics
import struct
import sys
import time
import urllib.parse
from typing import Any

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver
from twisted.web.websocket import WebSocketClientEndpoint

from pybrid.wire import live_frames


class Viewer:
    def __init__(self, stats: dict[str, list[float]]) -> None:
        self.stats = stats
        self.transport: Any = None

    def buildProtocol(self, url: str) -> Viewer:
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
        record(self.stats, data, 0, time.time())

    def connectionLost(self, reason: Any) -> None:
        pass


def record(stats: dict[str, list[float]], data: Any, at: int, now: float) -> None:
    """The latencies of the frame at ``data[at:]`` received ``now``, from its header and meta
    only: decoding the values would take CPU the proxy shares."""
    head = live_frames.HEAD.unpack_from(data, at)
    if head[0] != live_frames.MAGIC:
        raise ValueError("not a live view frame")
    meta_at = at + live_frames.HEAD.size
    meta = json.loads(bytes(data[meta_at : meta_at + head[3]]))
    if meta.get("run") and meta["run"].get("active"):
        stats["made"].append(head[5] - head[6])  # sent_at - arrived_at
        stats["wire"].append(now - head[6])


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "median_ms": round(statistics.median(ordered) * 1e3, 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1e3, 2)}


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, stats: dict[str, list[float]], done: defer.Deferred[None]) -> None:
        self.stats = stats
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        if line.strip() == b"report":
            print(json.dumps(report(self.stats)), flush=True)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    stats: dict[str, list[float]] = {"made": [], "wire": []}
    viewers = [Viewer(stats) for _ in range(args.viewers)]
    for v in viewers:
        await WebSocketClientEndpoint.new(reactor, args.url).connect(v)
        v.transport.sendTextMessage(json.dumps({"window": 0.1, "columns": 1000,
                                                "channels": list(range(args.channels))}))
    print(json.dumps({"event": "ready"}), flush=True)
    done: defer.Deferred[None] = defer.Deferred()
    stdio.StandardIO(Control(stats, done), reactor=reactor)
    await done
    for v in viewers:
        v.transport.loseConnection()


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: A viewer's read buffer: a few frames (a frame of 1000 columns × 8 channels is ~35 KB).
_BUF = 1 << 20


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client's frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


class RawViewer:
    """One viewer on a blocking-free socket: its frames parsed in place, payloads skipped."""

    def __init__(self, url: str, request: str, stats: dict[str, list[float]]) -> None:
        u = urllib.parse.urlsplit(url)
        host, port = u.hostname or "127.0.0.1", u.port or 80
        self.stats = stats
        self.sock = socket.create_connection((host, port), timeout=30)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n"
                          % (u.path.encode(), host.encode(), port, key))
        head = b""
        while b"\r\n\r\n" not in head:
            got = self.sock.recv(4096)
            if not got:
                raise RuntimeError("the server closed during the handshake")
            head += got
        head, rest = head.split(b"\r\n\r\n", 1)
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        if b" 101 " not in head.split(b"\r\n", 1)[0] or accept not in head:
            raise RuntimeError(f"not a WebSocket upgrade: {head[:200]!r}")
        self.buf = bytearray(_BUF)
        self.view = memoryview(self.buf)
        self.start, self.end = 0, len(rest)
        self.buf[: len(rest)] = rest
        self.sock.setblocking(False)
        self.sock.sendall(_masked(0x1, request.encode()))
        self.open = True

    def readable(self) -> None:
        if self.end == len(self.buf):  # make room: what is left of a frame to the front
            left = self.end - self.start
            self.buf[:left] = self.view[self.start : self.end]
            self.start, self.end = 0, left
        try:
            n = self.sock.recv_into(self.view[self.end :])
        except BlockingIOError:
            return
        if not n:
            self.open = False
            return
        self.end += n
        self.frames()

    def frames(self) -> None:
        buf, at, end = self.buf, self.start, self.end
        while end - at >= 2:
            opcode, n, head = buf[at] & 0x0F, buf[at + 1] & 0x7F, 2
            if n == 126:
                if end - at < 4:
                    break
                n, head = struct.unpack_from("!H", buf, at + 2)[0], 4
            elif n == 127:
                if end - at < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, at + 2)[0], 10
            if head + n > len(buf):
                raise RuntimeError(f"a frame of {n} bytes: more than the buffer")
            if end - at < head + n:
                break
            payload = at + head
            if opcode == 0x2:
                record(self.stats, buf, payload, time.time())
            elif opcode == 0x9:  # ping: pong with its payload
                self.sock.sendall(_masked(0xA, bytes(buf[payload : payload + n])))
            elif opcode == 0x8:
                self.open = False
            at = payload + n
        self.start = at
        if at == end:
            self.start = self.end = 0



def raw_main(args: argparse.Namespace) -> None:
    stats: dict[str, list[float]] = {"made": [], "wire": []}
    request = json.dumps({"window": 0.1, "columns": 1000,
                          "channels": list(range(args.channels))})
    viewers = [RawViewer(args.url, request, stats) for _ in range(args.viewers)]
    print(json.dumps({"event": "ready"}), flush=True)
    sel = selectors.DefaultSelector()
    for v in viewers:
        sel.register(v.sock, selectors.EVENT_READ, v)
    sel.register(sys.stdin.buffer, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                line = sys.stdin.buffer.readline()
                if not line:
                    for v in viewers:
                        v.sock.close()
                    return
                if line.strip() == b"report":
                    print(json.dumps(report(stats)), flush=True)
                continue
            key.data.readable()
            if not key.data.open:
                sel.unregister(key.data.sock)


def report(stats: dict[str, list[float]]) -> dict[str, Any]:
    out = {"event": "report", "frames": len(stats["wire"]), "made": summary(stats["made"]),
           "wire": summary(stats["wire"])}
    stats["made"].clear()
    stats["wire"].clear()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--twisted", action="store_true",
                    help="Twisted's WebSocket client (costlier) instead of plain sockets")
    parsed = ap.parse_args()
    if parsed.twisted:
        task.react(lambda r: defer.ensureDeferred(main(r, parsed)))
    else:
        raw_main(parsed)
    sys.exit(0)

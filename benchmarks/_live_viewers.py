"""Child of benchmarks/live_view.py: N WebSocket viewers of a live view, reporting latencies.

Prints ``{"event": "ready"}`` once every viewer is connected; on a ``report`` line on stdin,
one JSON line: frames received, and the medians / 95th percentiles of ``sent_at - arrived_at``
(datagram arrival → frame made, server clock) and ``received - arrived_at`` (→ frame in this
process: on the wire and decoded).  Same host, so both clocks are the system's.  Then it
starts counting afresh.  EOF on stdin: exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
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
        now = time.time()
        # the header and meta only: decoding the values would take CPU the proxy shares
        head = live_frames.HEAD.unpack_from(data)
        if head[0] != live_frames.MAGIC:
            raise ValueError("not a live view frame")
        sent_at, arrived_at = head[5], head[6]
        meta = json.loads(bytes(data[live_frames.HEAD.size : live_frames.HEAD.size + head[3]]))
        if meta.get("run") and meta["run"].get("active"):
            self.stats["made"].append(sent_at - arrived_at)
            self.stats["wire"].append(now - arrived_at)

    def connectionLost(self, reason: Any) -> None:
        pass


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
            out = {"event": "report", "frames": len(self.stats["wire"]),
                   "made": summary(self.stats["made"]), "wire": summary(self.stats["wire"])}
            self.stats["made"].clear()
            self.stats["wire"].clear()
            print(json.dumps(out), flush=True)

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


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--channels", type=int, default=8)
    parsed = ap.parse_args()
    task.react(lambda r: defer.ensureDeferred(main(r, parsed)))
    sys.exit(0)

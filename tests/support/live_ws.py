"""A WebSocket viewer of the live view for tests and the benchmark (twisted.web.websocket)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.web.websocket import WebSocketClientEndpoint

from pybrid.wire import live_frames


class FrameCollector:
    """Keeps the frames it receives; ``wait(predicate)`` fires with the first that fits."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.frames: list[live_frames.Frame] = []
        self.received_at: list[float] = []
        self.texts: list[str] = []
        self.transport: Any = None
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[Any, defer.Deferred[live_frames.Frame]]] = []

    def buildProtocol(self, url: str) -> FrameCollector:
        return self

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.texts.append(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        frame = live_frames.decode(bytes(data))
        self.frames.append(frame)
        self.received_at.append(self.clock.seconds())
        for item in list(self._waiting):
            if item[0](frame):
                self._waiting.remove(item)
                item[1].callback(frame)

    def connectionLost(self, reason: Any) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def ask(self, **request: Any) -> None:
        self.transport.sendTextMessage(json.dumps(request))

    def wait(self, predicate: Any, seconds: float = 30.0) -> defer.Deferred[live_frames.Frame]:
        if self.frames and predicate(self.frames[-1]):  # the newest frame may fit already
            return defer.succeed(self.frames[-1])
        d: defer.Deferred[live_frames.Frame] = defer.Deferred()
        self._waiting.append((predicate, d))
        return d.addTimeout(seconds, self.clock)


async def view(reactor: Any, url: str, **request: Any) -> FrameCollector:
    """A viewer connected to ``url`` (``ws://host:port/live/ws``) that asked for ``request``."""
    viewer = FrameCollector(reactor)
    await WebSocketClientEndpoint.new(reactor, url).connect(viewer)
    if request:
        viewer.ask(**request)
    return viewer


def assert_holds(frame: live_frames.Frame, index: int, want: np.ndarray) -> None:
    """Channel ``index`` of ``frame`` (16-bit codes) holds ``want`` (float32 samples, one row a
    column; NaN columns skipped): lo ≤ value ≤ hi, each at most one code's step away."""
    seen = ~np.isnan(frame.lo[index])
    lo, hi = frame.lo[index][seen], frame.hi[index][seen]
    value = want[seen].astype(np.float32).astype(np.float64)
    step = frame.step[index] * (1 + 1e-9) + 1e-12
    assert ((lo <= value + 1e-12) & (value - lo <= step)).all(), "lo does not hold the samples"
    assert ((hi >= value - 1e-12) & (hi - value <= step)).all(), "hi does not hold the samples"

"""The live view's WebSocket: per viewer, the newest frame at most ``rate`` times a second.

Design note
-----------
:class:`LiveHub` holds the viewers of one :class:`~.store.LiveStore` and, while any is
connected, ticks on the injected clock (``rate`` per second, 30 by default).  On each tick a
viewer whose request or run changed gets one frame built then from the store — latest wins:
there is no queue of frames, only the newest state.  A viewer registers itself as the push
producer of its TCP connection, so when it stops reading and the transport's buffer fills,
Twisted pauses it: no frames are made for it (memory stays at the transport's buffer, one
frame past its high-water mark); paused for longer than ``deadline`` seconds, it is dropped
(counted in ``dropped``).  The tap decodes samples only while ``tap.watchers`` (viewers
connected) is above zero, and the store bins only the channels some viewer asks for.

:class:`OriginCheckedResource` refuses an upgrade whose ``Origin`` is not the page's own
(``http(s)://`` + the ``Host`` header): another site's page cannot read the samples.  A
request without an ``Origin`` (a script, not a browser) is let through.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import numpy as np
from twisted.internet import task
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from zope.interface import implementer

from pybrid.live.store import LiveStore
from pybrid.recording.envelope import Envelope
from pybrid.wire import live_frames

#: Seconds a viewer may leave its connection unread (paused) before it is dropped.
DEADLINE = 10.0


def binary_header(size: int) -> bytes:
    """RFC 6455 §5.2: a final binary frame of ``size`` bytes, unmasked (server to client)."""
    if size < 126:
        return struct.pack("!BB", 0x82, size)
    if size < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, size)
    return struct.pack("!BBQ", 0x82, 127, size)


def send_binary(ws: Any, data: bytes) -> None:
    """One binary message; the header by hand and the frame not copied (benchmarks/ws_transport.py:
    wsproto's ``send`` copies it, 133 against 73 µs of CPU per 64 KB frame)."""
    tcp = getattr(ws, "transport", None)
    if tcp is None or not hasattr(tcp, "writeSequence"):
        ws.sendBytesMessage(data)
    elif not getattr(tcp, "disconnecting", False):  # nothing after a close frame
        tcp.writeSequence([binary_header(len(data)), data])


def build_frame(store: LiveStore, req: live_frames.ViewRequest, now: float) -> tuple[Any, bytes]:
    """The frame ``req`` asks for now and the key that says whether it changed."""
    run = store.runs.get(req.run) if req.run else store.current()
    runs = [r.summary(now) for r in reversed(store.runs.values())]
    if run is None:
        empty = Envelope(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0)),
                         np.zeros((0, 0)), 1)
        return (None, req), live_frames.encode(empty, 0, {"runs": runs, "run": None}, now, now,
                                          float("nan"), 0)
    paths = sorted(run.traces)
    path = req.carrier if req.carrier in run.traces else (paths[0] if paths else "")
    trace = run.traces.get(path)
    rate = run.sample_rate
    meta: dict[str, Any] = {"runs": runs, "run": run.summary(now), "carrier": path,
                            "carriers": paths, "window": req.window}
    end_t = (float("nan") if run.ended_at is None or trace is None
             else trace.rows / rate if rate else float(trace.rows))
    flags = live_frames.FLAG_ENDED if run.ended_at is not None else 0
    if trace is None:
        empty = Envelope(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0)),
                         np.zeros((0, 0)), 1)
        return (run.run_id, run.version, req), live_frames.encode(empty, rate, meta, now,
                                                             run.arrived, end_t, flags)
    channels = [c for c in req.channels if c < trace.channels] or [0]
    stop = trace.rows
    if req.window <= 0:
        first = 0
        flags |= live_frames.FLAG_OVERVIEW
    else:
        first = stop - max(1, round(req.window * (rate or 1)))
    env = trace.window(first, stop, req.columns, channels)
    meta.update(channels=channels, per=env.per, rows=trace.rows, channel_count=trace.channels,
                watched_from=trace.first_chunk * trace.per_chunk / (rate or 1))
    frame = live_frames.encode(env, rate, meta, now, run.arrived, end_t, flags)
    return (run.run_id, run.version, req), frame


@implementer(IPushProducer)
class Viewer:
    """One WebSocket viewer (a ``twisted.web.websocket.WebSocketProtocol``)."""

    log = Logger()

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.transport: WebSocketTransport | None = None
        self.request = live_frames.ViewRequest()
        self.sent_key: Any = None
        self.paused_since: float | None = None
        self.frames = 0
        self.gone = False

    # WebSocketProtocol
    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport
        tcp = IConsumer(getattr(transport, "transport", None), None)
        if tcp is not None:  # the HTTP channel that upgraded is still the producer: replace it
            tcp.unregisterProducer()
            tcp.registerProducer(self, True)
        else:
            transport.attachProducer(self)

    def negotiationFinished(self) -> None:
        self.hub.joined(self)

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        try:
            self.request = live_frames.ViewRequest.parse(message)
        except live_frames.BadRequest as e:
            self.hub.bad_requests += 1
            if self.transport is not None:
                self.transport.sendTextMessage(f'{{"error": "{e}"}}')

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.hub.bad_requests += 1

    def connectionLost(self, reason: Failure) -> None:
        self.gone = True
        self.hub.left(self)

    # IPushProducer: the transport's buffer is full / drained again
    def pauseProducing(self) -> None:
        if self.paused_since is None:
            self.paused_since = self.hub.clock.seconds()

    def resumeProducing(self) -> None:
        self.paused_since = None

    def stopProducing(self) -> None:
        self.gone = True

    def tick(self, now: float) -> None:
        if self.gone or self.transport is None:
            return
        if self.paused_since is not None:
            if now - self.paused_since > self.hub.deadline:
                self.drop()
            return
        if self.request.paused:
            return
        key, frame = self.hub.frame(self.request, now)
        if key == self.sent_key and key[0] is not None:
            return
        self.sent_key = key
        self.frames += 1
        self.hub.frames += 1
        send_binary(self.transport, frame)

    def drop(self) -> None:
        """A viewer that stopped reading: its connection is aborted, its buffer freed."""
        self.gone = True
        self.hub.dropped += 1
        self.log.info("live view: a viewer stopped reading for {seconds} s; dropped",
                      seconds=self.hub.deadline)
        self.hub.left(self)
        tcp = getattr(self.transport, "transport", None)
        if tcp is not None and hasattr(tcp, "abortConnection"):
            tcp.abortConnection()
        elif self.transport is not None:
            self.transport.loseConnection()


@attrs.define(eq=False)
class LiveHub:
    """The viewers of one store and their ticker; see the module note."""

    store: LiveStore
    clock: IReactorTime
    #: Told how many viewers watch (the tap decodes only while some do), or None.
    tap: Any = None
    #: ``--live-process``: takes a viewer's upgrade to serve it in another process
    #: (``hand_over(request) -> bool``; pybrid.proxy.taps.live.child), or None.
    handoff: Any = None
    rate: float = 30.0
    deadline: float = DEADLINE
    max_viewers: int = 64
    viewers: list[Viewer] = attrs.field(factory=list)
    frames: int = 0
    dropped: int = 0
    refused: int = 0
    bad_requests: int = 0
    _loop: task.LoopingCall | None = None
    _made: dict[live_frames.ViewRequest, tuple[Any, bytes]] = attrs.field(factory=dict)

    def buildProtocol(self, request: server.Request) -> Viewer:
        return Viewer(self)

    def joined(self, viewer: Viewer) -> None:
        if len(self.viewers) >= self.max_viewers:
            self.refused += 1
            viewer.gone = True
            if viewer.transport is not None:
                viewer.transport.loseConnection(1013)
            return
        self.viewers.append(viewer)
        self._watchers()
        if self._loop is None:
            self._loop = task.LoopingCall(self.tick)
            self._loop.clock = self.clock
            self._loop.start(1.0 / self.rate, now=True)

    def left(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)
        self._watchers()
        if not self.viewers and self._loop is not None:
            loop, self._loop = self._loop, None
            if loop.running:
                loop.stop()

    def tick(self) -> None:
        now = self.clock.seconds()
        # only the channels some viewer asks for are binned (see LiveStore.watch)
        self.store.watch(frozenset(c for v in self.viewers for c in v.request.channels))
        flush = getattr(self.tap, "flush", None)
        if flush is not None:  # the proxy's tap decodes what came since the last tick
            flush()
        self._made.clear()
        for viewer in list(self.viewers):
            try:
                viewer.tick(now)
            except Exception:
                Viewer.log.failure("live view: a frame could not be made")
                viewer.drop()

    def frame(self, req: live_frames.ViewRequest, now: float) -> tuple[Any, bytes]:
        """The frame for ``req`` this tick: made once for every viewer that asks the same."""
        made = self._made.get(req)
        if made is None:
            made = self._made[req] = build_frame(self.store, req, now)
        return made

    def stop(self) -> None:
        for viewer in list(self.viewers):
            if viewer.transport is not None:
                viewer.transport.loseConnection(1001)
            self.left(viewer)

    def _watchers(self) -> None:
        if self.tap is not None:
            self.tap.watchers = len(self.viewers)


def _same_origin(request: server.Request) -> bool:
    origin = request.getHeader("origin")
    if origin is None:
        return True
    host = request.getHeader("host") or ""
    return origin in (f"http://{host}", f"https://{host}")


class OriginCheckedResource(WebSocketResource):
    """A WebSocket upgrade only from the page's own origin (see the module note)."""

    def __init__(self, hub: LiveHub) -> None:
        super().__init__(hub)  # type: ignore[arg-type]
        self.hub = hub

    def render_GET(self, request: server.Request) -> bytes | int:
        if not _same_origin(request):
            self.hub.refused += 1
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"cross-origin WebSocket refused\n"
        if self.hub.handoff is not None and self.hub.handoff.hand_over(request):
            return server.NOT_DONE_YET  # the connection is the live process's now
        return super().render_GET(request)

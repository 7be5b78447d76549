"""Live view viewers: latest-wins frames on the clock, paused viewers dropped, origins checked."""

from __future__ import annotations

import numpy as np
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from pybrid.live.ws import LiveHub, OriginCheckedResource
from pybrid.proxy.taps.live.tap import LiveTap
from pybrid.wire import live_frames as frames


class FakeWS:
    """A WebSocketTransport that records what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []
        self.closed: int | None = None
        self.producer = None

    def sendBytesMessage(self, data: bytes) -> None:
        self.sent.append(data)

    def sendTextMessage(self, text: str) -> None:
        self.sent.append(text)

    def loseConnection(self, code: int = 1000) -> None:
        self.closed = code

    def attachProducer(self, producer) -> None:
        self.producer = producer


def setup(**kw):
    clock = Clock()
    tap = LiveTap(clock)
    hub = LiveHub(tap.store, clock, tap=tap, **kw)
    viewer = hub.buildProtocol(DummyRequest([b""]))
    ws = FakeWS()
    viewer.negotiationStarted(ws)
    viewer.negotiationFinished()
    return clock, tap, hub, viewer, ws


def feed(tap: LiveTap, number: int) -> None:
    tap.store.add("r", "/c", number, np.full((100, 2), float(number)), 0.0)


def test_a_viewer_gets_a_frame_per_change_at_most_rate_per_second():
    clock, tap, _hub, viewer, ws = setup()
    assert tap.watchers == 1 and ws.producer is viewer
    tap.store.start("r", 1, 1000, 0.0)
    assert len(ws.sent) == 1  # the first tick, at once: no run data yet
    for k in range(10):  # ten chunks within one tick: one frame, the newest
        feed(tap, k)
    clock.advance(1 / 30)
    assert len(ws.sent) == 2
    fr = frames.decode(ws.sent[-1])
    assert fr.meta["rows"] == 1000 and fr.meta["carrier"] == "/c"
    assert fr.t1 == 1.0 and fr.t0 == 0.9  # the last 100 ms
    clock.advance(1 / 30)
    assert len(ws.sent) == 2  # nothing changed: nothing sent
    viewer.textMessageReceived('{"window": 0, "columns": 100, "channels": [1]}')
    clock.advance(1 / 30)
    fr = frames.decode(ws.sent[-1])
    assert fr.flags & frames.FLAG_OVERVIEW and fr.lo.shape == (1, 100) and fr.t0 == 0.0
    np.testing.assert_allclose(fr.hi[0], np.repeat(np.arange(10), 10), rtol=0, atol=fr.step[0])


def test_pause_stops_frames_and_resume_brings_the_newest():
    clock, tap, _hub, viewer, ws = setup()
    tap.store.start("r", 1, 1000, 0.0)
    viewer.textMessageReceived('{"paused": true}')
    feed(tap, 0)
    clock.advance(1)
    n = len(ws.sent)
    viewer.textMessageReceived('{"paused": false}')
    clock.advance(1 / 30)
    assert len(ws.sent) == n + 1


def test_a_viewer_that_stops_reading_is_dropped_after_the_deadline():
    clock, tap, hub, viewer, ws = setup(deadline=10.0)
    tap.store.start("r", 1, 1000, 0.0)
    viewer.pauseProducing()  # the transport's buffer is full
    n = len(ws.sent)
    for k in range(400):  # 13 s
        feed(tap, k)
        clock.advance(1 / 30)
    assert len(ws.sent) == n  # nothing queued for it while paused
    assert viewer.gone and hub.dropped == 1 and hub.viewers == [] and tap.watchers == 0
    assert ws.closed is not None


def test_bad_requests_are_answered_and_counted():
    _clock, _tap, hub, viewer, ws = setup()
    viewer.textMessageReceived("{")
    viewer.bytesMessageReceived(b"x")
    assert hub.bad_requests == 2 and "error" in ws.sent[-1]


def test_the_last_viewer_leaving_stops_decoding_and_the_ticker():
    clock, tap, _hub, viewer, _ws = setup()
    viewer.connectionLost(None)  # type: ignore[arg-type]
    assert tap.watchers == 0 and not clock.getDelayedCalls()


def test_cross_origin_upgrades_are_refused():
    _clock, _tap, hub, _viewer, _ws = setup()
    res = OriginCheckedResource(hub)
    req = DummyRequest([b""])
    req.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1:8080"])
    req.requestHeaders.setRawHeaders(b"origin", [b"http://evil.example"])
    assert res.render_GET(req) == b"cross-origin WebSocket refused\n"
    assert req.responseCode == 403 and hub.refused == 1


def _decoded(wire: bytes) -> list[bytes]:
    """The messages a browser would read from ``wire`` (wsproto as the client)."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage

    client = Connection(ConnectionType.CLIENT)
    client.receive_data(wire)
    messages: list[bytes] = []
    part = b""
    for event in client.events():
        assert isinstance(event, BytesMessage), event
        part += event.data
        if event.message_finished:
            messages.append(part)
            part = b""
    return messages


def test_frames_go_out_as_websocket_binary_messages_of_every_length_form():
    from twisted.internet.testing import StringTransport

    from pybrid.live.ws import send_binary

    class WS:
        def __init__(self) -> None:
            self.transport = StringTransport()

    ws = WS()
    sent = [bytes(range(256))[:n] * (1 + n // 256) for n in (0, 125, 126, 65535, 65536)]
    sent.append(np.arange(20_000, dtype=np.float32).tobytes())
    for data in sent:
        send_binary(ws, data)
    assert _decoded(ws.transport.value()) == sent


def test_nothing_is_sent_after_the_connection_began_to_close():
    from twisted.internet.testing import StringTransport

    from pybrid.live.ws import send_binary

    class WS:
        transport = StringTransport()

    WS.transport.loseConnection()
    send_binary(WS(), b"late")
    assert WS.transport.value() == b""


def test_the_store_bins_only_the_channels_the_viewers_ask_for():
    clock, tap, hub, viewer, _ws = setup()
    assert tap.store.watched == frozenset({0})  # a viewer's request before it sent one
    viewer.textMessageReceived('{"channels": [1, 3]}')
    other = hub.buildProtocol(DummyRequest([b""]))
    other.negotiationStarted(FakeWS())
    other.negotiationFinished()
    other.textMessageReceived('{"channels": [3, 5]}')
    clock.advance(1 / 30)
    assert tap.store.watched == frozenset({1, 3, 5})
    tap.store.start("r", 1, 1000, 0.0)
    tap.store.add("r", "/c", 0, np.zeros((100, 8)), 0.0)
    assert tap.store.runs["r"].traces["/c"].binned == [1, 3, 5]

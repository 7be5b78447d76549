"""The proxy's NATS feed (pybrid.proxy.taps.nats.feed) over a real socket pair into the bridge's
tracker (pybrid.proxy.taps.nats.runs): what reaches the stream, and what does not, counted."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import numpy as np
from twisted.internet.testing import MemoryReactorClock

from pybrid import samples as S
from pybrid.proto import pb
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.proxy.taps.link import LinkWriter, split
from pybrid.proxy.taps.nats.child import LINK_QUEUE
from pybrid.proxy.taps.nats.feed import CHUNK, MAX_PENDING, NatsFeed
from pybrid.proxy.taps.nats.runs import BATCH, Outgoing, RunTracker
from pybrid.wire import nats_format as N
from pybrid.wire.layout import layout_of

PATHS = ("/00-00-00-00-00-01", "/00-00-00-00-00-02")
RID = str(uuid.UUID(int=9))
CARRIERS = [{"index": i, "lane": 0, "path": p} for i, p in enumerate(PATHS)]


def data_message(path: str, chunk: int, raw: np.ndarray, end: bool = False) -> bytes:
    env = pb.Envelope()
    env.message_v1.id = str(uuid.uuid4())
    body = env.message_v1.run_data_end_message if end else env.message_v1.run_data_message
    body.run.id = RID
    body.run.chunk = chunk
    body.entity.path = path
    body.data.CopyFrom(S.encode(raw, "i16", gains=[0.5, 2.0]))
    return env.SerializeToString()


def raw(carrier: int, chunk: int) -> np.ndarray:
    return (np.arange(200).reshape(100, 2) + chunk * 10 + carrier * 5000).astype(np.int16)


def info() -> RunInfo:
    """The run; its ``chunks_seen`` is the router's count, which :func:`send` keeps."""
    return RunInfo("client-run", RID, PATHS, 3, {"sample_rate": 1000, "channels": 2}, {})


class Bridge:
    """The bridge's end of the link: the messages it would queue."""

    def __init__(self, sock: socket.socket, link: LinkWriter) -> None:
        self.sock = sock
        self.link = link
        self.tracker = RunTracker("pybrid", "lab")
        self.out: list[Outgoing] = []
        self.buffer = bytearray()

    def read(self) -> list[Outgoing]:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            self.buffer += data
        for kind, head, body in split(self.buffer):
            self.out += self.tracker.link(kind, head, body)
        return self.out

    def pump(self) -> list[Outgoing]:
        """Read until the proxy's end has nothing left (the reactor writes what waits)."""
        self.read()
        while self.link.behind:
            self.link.doWrite()
            self.read()
        return self.out

    def end(self) -> dict[str, Any]:
        return N.decode_json(self.tracker.end(3).payload)

    def stored(self) -> None:
        for out in self.out:
            self.tracker.stored(out)

    def records(self) -> dict[tuple[int, int], np.ndarray]:
        """(carrier, chunk) → raw samples of every chunk record sent (gains per channel)."""
        got: dict[tuple[int, int], np.ndarray] = {}
        for out in self.out:
            if out.kind == "chunk":
                for flags, carrier, chunk, _s, _c, _g, _o, values, _e in \
                        N.iter_chunks(out.payload):
                    assert flags & N.FLAG_PER_CHANNEL
                    got[(carrier, chunk)] = values
        return got


def linked(sndbuf: int | None = None,
           max_queued: int = LINK_QUEUE) -> tuple[NatsFeed, Bridge, LinkWriter]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    if sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    link = LinkWriter(ours, MemoryReactorClock(), max_queued)
    feed = NatsFeed(lambda: CARRIERS, link=link)
    return feed, Bridge(theirs, link), link


def send(feed: NatsFeed, run: RunInfo, carrier: int, chunk: int) -> None:
    seen: Any = run.chunks_seen  # as the router counts
    key = PATHS[carrier].encode()
    seen[key] = max(seen.get(key, 0), chunk + 1)
    payload = data_message(PATHS[carrier], chunk, raw(carrier, chunk))
    feed.chunk(run, 0, layout_of(payload), chunk, payload, 0)


def finish(feed: NatsFeed, run: RunInfo) -> None:
    for path in PATHS:
        feed.state_changed(run, 0, path, pb.DONE, "", b"", 0)
    feed.run_ended(run, RunEnd(pb.DONE, {}, 0, 0))


def test_two_carriers_taking_turns_reach_the_stream_chunk_for_chunk():
    feed, bridge, _link = linked()
    run = info()
    feed.run_started(run)
    for chunk in range(150):
        for carrier in (0, 1):
            send(feed, run, carrier, chunk)
    feed.flush()
    bridge.pump()
    for chunk in range(150, 200):  # a second block of each
        for carrier in (0, 1):
            send(feed, run, carrier, chunk)
    finish(feed, run)
    out = bridge.pump()
    kinds = [o.kind for o in out]
    assert kinds[0] == "start" and kinds.count("layout") == 2 and kinds[-2:] == ["state"] * 2
    chunks = [o for o in out if o.kind == "chunk"]
    assert all(1 <= len(o.members) <= BATCH for o in chunks)
    assert len({o.msg_id for o in chunks}) == len(chunks)  # JetStream stores each once
    got = bridge.records()
    assert sorted(got) == [(c, n) for c in (0, 1) for n in range(200)]
    for (carrier, chunk), values in got.items():
        assert np.array_equal(values, raw(carrier, chunk))
    layouts = [N.decode_json(o.payload) for o in out if o.kind == "layout"]
    assert [lay["gains"] for lay in layouts] == [[0.5, 2.0]] * 2
    bridge.stored()
    end = bridge.end()
    assert end["condition"] == "complete" and end["tap_gaps"] == 0
    assert end["chunks"] == {PATHS[0]: 200, PATHS[1]: 200}
    assert (feed.sent, feed.not_sent) == (400, 0)


def test_a_bridge_that_does_not_read_costs_one_message_and_the_run_end_names_the_lost_chunks():
    feed, bridge, link = linked(sndbuf=64 << 10, max_queued=100 << 10)
    run = info()
    feed.run_started(run)
    for flush in range(10):  # blocks of ~47 KB: the socket fills, two wait, the rest counted
        for n in range(flush * 100, flush * 100 + 100):
            send(feed, run, 0, n)
        feed.flush()
    assert link.behind and feed.not_sent > 0 and 0 < link.queued <= (100 << 10) + 47_000
    assert feed.sent + feed.not_sent == 1000
    lost = feed.not_sent
    bridge.pump()  # the bridge reads again
    for n in range(1000, 1010):
        send(feed, run, 0, n)
    finish(feed, run)
    bridge.pump()
    bridge.stored()
    end = bridge.end()
    assert end["condition"] == "incomplete" and end["tap_gaps"] == lost
    missing = end["missing"][PATHS[0]] + end["missing"][PATHS[1]]
    assert len(missing) == lost
    assert set(bridge.records()) == {(0, n) for n in range(1010) if n not in missing}


def test_the_feed_yields_while_the_proxy_is_behind_and_events_still_go():
    from pybrid.proxy.taps.common import GAUGE_EVERY

    fill = [0.0]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in (ours, theirs):
        s.setblocking(False)
    feed = NatsFeed(lambda: CARRIERS, lambda: fill[0], 0.5, link=LinkWriter(
        ours, MemoryReactorClock(), LINK_QUEUE))
    bridge = Bridge(theirs, feed.link)
    run = info()
    feed.run_started(run)
    for n in range(GAUGE_EVERY - 1):
        send(feed, run, 0, n)
    fill[0] = 0.6
    for n in range(GAUGE_EVERY - 1, 2 * GAUGE_EVERY):  # from the next look on: skipped
        send(feed, run, 0, n)
        if n % 100 == 0:
            feed.flush()
            bridge.pump()
    assert feed.yielded == feed.not_sent == GAUGE_EVERY + 1 and feed.yields == 1
    finish(feed, run)
    bridge.pump()
    bridge.stored()
    end = bridge.end()
    assert end["tap_gaps"] == GAUGE_EVERY + 1 and end["condition"] == "incomplete"
    assert end["missing"][PATHS[0]] == list(range(GAUGE_EVERY - 1, 2 * GAUGE_EVERY))
    assert len(bridge.records()) == GAUGE_EVERY - 1


def test_a_parsed_chunk_goes_alone_and_in_order_and_a_final_record_is_no_member():
    feed, bridge, _link = linked()
    run = info()
    feed.run_started(run)
    send(feed, run, 0, 0)
    parsed = data_message(PATHS[0], 1, raw(0, 1))
    feed.chunk(run, 0, None, 1, parsed, 0)  # no layout: the router parsed it
    last = data_message(PATHS[0], 2, raw(0, 2), end=True)
    feed.chunk(run, 0, layout_of(last), 2, last, 0)
    finish(feed, run)
    out = [o for o in bridge.pump() if o.kind == "chunk"]
    assert [o.members for o in out] == [((0, 0),), ((0, 1),), ()]
    records = [r for o in out for r in N.iter_chunks(o.payload)]
    assert [r[0] & N.FLAG_END_MESSAGE for r in records] == [0, 0, N.FLAG_END_MESSAGE]
    assert np.array_equal(records[1][7], raw(0, 1))
    assert CHUNK != 0 and feed.sent == 3


def test_without_a_bridge_chunks_are_counted_and_a_new_bridge_first_learns_the_run():
    feed = NatsFeed(lambda: CARRIERS)
    run = info()
    feed.run_started(run)
    send(feed, run, 0, 0)
    assert feed.not_sent == 1 and feed.sent == 0
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in (ours, theirs):
        s.setblocking(False)
    link = LinkWriter(ours, MemoryReactorClock(), LINK_QUEUE)
    for parts in feed.replay():  # as the bridge's service does when it spawns one
        link.event(parts)
    feed.link = link
    bridge = Bridge(theirs, link)
    for n in range(1, MAX_PENDING + 5):  # MAX_PENDING chunks flush at once
        send(feed, run, 0, n)
    assert link.behind  # the block of MAX_PENDING chunks went at once: more than the socket
    bridge.pump()
    finish(feed, run)
    bridge.pump()
    bridge.stored()
    end = bridge.end()
    assert end["tap_gaps"] == 1 and end["missing"][PATHS[0]] == [0]
    assert len(bridge.records()) == MAX_PENDING + 4

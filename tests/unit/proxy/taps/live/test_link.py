"""The live tap's link to the ``--live-process`` child: the tap's blocks go over a real Unix
socket pair undecoded and come out of :class:`LinkReader` as the rows the proxy's own store
would have; a child that does not read costs one message and counted blocks, not memory."""

from __future__ import annotations

import socket

import numpy as np
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from pybrid import samples as S
from pybrid.monitor.web import MonitorLive
from pybrid.proto import pb
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.proxy.taps.link import split
from pybrid.proxy.taps.live.link import LinkReader, LiveLink, message
from pybrid.proxy.taps.live.tap import LiveTap
from pybrid.wire.layout import layout_of

from .test_tap import PATH, RID, data_message, info, raw


def pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


def child(clock: Clock) -> tuple[MonitorLive, LinkReader]:
    live = MonitorLive(clock)
    live.watchers = 1  # a viewer: the child stores what comes
    return live, LinkReader(live)


def drain(theirs: socket.socket, reader: LinkReader, size: int = 7000) -> int:
    """Everything the socket holds into ``reader``, in pieces of ``size`` bytes."""
    got = 0
    while True:
        try:
            data = theirs.recv(size)
        except BlockingIOError:
            return got
        got += len(data)
        reader.dataReceived(data)


def test_the_child_stores_the_rows_the_proxy_would_with_gains_and_the_lost_chunk():
    reactor = MemoryReactorClock()
    ours, theirs = pair()
    tap = LiveTap(reactor)
    tap.link = LiveLink(ours, reactor)
    tap.remote = 1  # the child has a viewer; the proxy's own hub has none
    run = info()
    tap.run_started(run)
    gains = [0.5, 2.0]
    learned: dict = {}  # as the router: one layout object per datagram length
    for k in (0, 1, 3):  # chunk 2 lost
        p = data_message(k, raw(k), gains=gains)
        tap.chunk(run, 0, learned.setdefault(len(p), layout_of(p)), k, p, 0)
    p4 = data_message(4, raw(4), gains=gains)
    tap.chunk(run, 0, None, 4, p4, 0)  # no layout: decoded in the proxy, sent as float64
    tap.run_ended(run, RunEnd(pb.RunState.DONE, {}, 5, 1))
    assert tap.store.runs["client-run"].traces == {}  # not decoded in the proxy
    assert tap.link.sent == 4 and tap.link.not_sent == 0
    live, reader = child(Clock())
    drain(theirs, reader)
    # chunk 0 (its message shorter: protobuf leaves out a zero), 1, 3 (after the lost 2), 4
    assert reader.blocks == 4
    child_run = live.store.runs["client-run"]
    assert child_run.sample_rate == 1000 and child_run.result == "DONE"
    trace = child_run.traces[PATH]
    assert trace.rows == 500 and trace.missing == 1
    env = trace.window(0, 500, 500)
    scale = np.array(gains)
    np.testing.assert_array_equal(env.lo[:200], np.concatenate([raw(0), raw(1)]) * scale)
    assert np.isnan(env.lo[200:300]).all()
    np.testing.assert_array_equal(env.hi[300:400], raw(3) * scale)
    np.testing.assert_array_equal(env.hi[400:], raw(4) * scale)


def test_a_child_that_does_not_read_costs_one_message_and_counted_blocks():
    reactor = MemoryReactorClock()
    ours, theirs = pair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    link = LiveLink(ours, reactor)
    run = info()
    learned: dict = {}  # as the router: one layout object per datagram length
    tap = LiveTap(reactor, link=link, remote=1)
    tap.run_started(run)
    sent_blocks = 0
    number = 0
    while not link.behind:  # the socket fills: the rest of a message waits for writability
        for _ in range(50):
            q = data_message(number, raw(number % 9))
            tap.chunk(run, 0, learned.setdefault(len(q), layout_of(q)), number, q, 0)
            number += 1
        tap.flush()
        sent_blocks += 1
        assert sent_blocks < 10_000
    assert link in reactor.getWriters()
    for _ in range(20):  # meanwhile: counted, not kept
        for _ in range(50):
            q = data_message(number, raw(number % 9))
            tap.chunk(run, 0, learned.setdefault(len(q), layout_of(q)), number, q, 0)
            number += 1
        tap.flush()
    assert link.not_sent == 20 * 50
    assert link.sent + link.not_sent == number
    tap.run_ended(run, RunEnd(pb.RunState.DONE, {}, number, 0))  # queued behind the rest
    live, reader = child(Clock())
    for _ in range(10_000):  # the child reads again; the writer sends the rest
        drain(theirs, reader)
        if not link.behind:
            break
        link.doWrite()
    drain(theirs, reader)
    assert link not in reactor.getWriters()
    trace = live.store.runs["client-run"].traces[PATH]
    assert trace.rows == link.sent * 100  # every message arrived whole and in order
    assert live.store.runs["client-run"].result == "DONE"


def test_a_malformed_message_closes_the_link_and_stores_nothing():
    live, reader = child(Clock())
    head = message(1, {"run": "r", "number": 1, "rate": 10, "at": 0.0})
    reader.dataReceived(b"".join(head))
    assert "r" in live.store.runs
    reader.dataReceived(b"\xff\xff\xff\xff\x02\x00\x00\x00\x00")  # 4 GiB announced
    assert reader.closed


def test_the_live_process_nice_comes_from_the_environment_or_defaults_to_0():
    from pybrid.proxy.taps.live.child import nice_from

    assert nice_from({}) == 0
    assert nice_from({"PYBRID_LIVE_NICE": "10"}) == 10
    assert nice_from({"PYBRID_LIVE_NICE": "19"}) == 19
    assert nice_from({"PYBRID_LIVE_NICE": "x"}) == 0
    assert nice_from({"PYBRID_LIVE_NICE": "25"}) == 0


def test_carriers_taking_turns_each_keep_one_block_per_flush():
    reactor = MemoryReactorClock()
    ours, theirs = pair()
    tap = LiveTap(reactor, link=LiveLink(ours, reactor), remote=1)
    paths = (PATH, "/00-00-00-00-00-02")
    run = RunInfo("client-run", RID, paths, 1, {"sample_rate": 1000})
    tap.run_started(run)
    learned: dict = {}  # as the router: one layout object per backend, carrier and length
    for k in range(1, 41):  # the device's two carriers alternate, chunk by chunk
        for c, path in enumerate(paths):
            p = data_message(k, raw(k) + c, path=path)
            tap.chunk(run, 0, learned.setdefault((path, len(p)), layout_of(p)), k, p, 0)
    tap.flush()
    live, reader = child(Clock())
    drain(theirs, reader)
    assert reader.blocks == 2 and tap.link.sent == 80  # a message per carrier, not per chunk
    for c, path in enumerate(paths):
        trace = live.store.runs["client-run"].traces[path]
        assert trace.rows == 4100 and trace.missing == 0  # from chunk 1: 100 rows left empty
        env = trace.window(4000, 4100, 100)
        np.testing.assert_array_equal(env.lo, raw(40) + c)


def test_the_child_reads_the_socket_into_its_inbox_and_stops_when_the_proxy_closes():
    reactor = MemoryReactorClock()
    ours, theirs = pair()
    tap = LiveTap(reactor, link=LiveLink(ours, reactor), remote=1)
    run = info()
    tap.run_started(run)
    learned: dict = {}
    for k in range(1, 31):  # (chunk 0 is shorter: protobuf leaves out a zero)
        p = data_message(k, raw(k))
        tap.chunk(run, 0, learned.setdefault(len(p), layout_of(p)), k, p, 0)
    tap.flush()
    live = MonitorLive(Clock())
    live.watchers = 1
    gone = []
    reader = LinkReader(live, theirs, reactor, lost=lambda: gone.append(True))
    reader.start()
    assert reader in reactor.getReaders()
    assert reader.doRead() is None and reader.blocks == 1
    assert live.store.runs["client-run"].traces[PATH].rows == 3100  # chunk 0 left empty
    ours.close()
    why = reader.doRead()  # the proxy's end closed: the reactor is told the link is done
    assert why is not None
    reader.connectionLost(why)
    assert gone == [True] and reader.fileno() == -1


def test_a_block_header_keeps_any_run_id_and_says_where_each_block_starts():
    reactor = MemoryReactorClock()
    ours, theirs = pair()
    link = LiveLink(ours, reactor)
    p = data_message(1, raw(1))
    lay = layout_of(p)
    fmt = S.format_of(pb.Envelope.FromString(p).message_v1.run_data_message.data)
    cut = (lay.samples_at, lay.length - len(lay.tail), lay.length)
    odd = 'run "quoted" \\ é'
    for first, at in ((1, 0.25), (3, 1765000000.125)):
        link.block(odd, PATH, first, [p, p], fmt, cut, at)
    got = [(h["run"], h["first"], h["chunks"], h["at"], len(d))
           for _k, h, d in split(bytearray(theirs.recv(1 << 20)))]
    assert got == [(odd, 1, 2, 0.25, 2 * len(p)), (odd, 3, 2, 1765000000.125, 2 * len(p))]

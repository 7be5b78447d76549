"""The link to a child (pybrid.proxy.taps.link): messages cut from any split of the bytes,
malformed ones refused, and a writer that never blocks and keeps the order."""

from __future__ import annotations

import socket
import struct

import pytest
from twisted.internet.testing import MemoryReactorClock

from pybrid.proxy.taps.link import MAX_PARTS, Inbox, LinkError, LinkWriter, message, split


def test_messages_come_out_whole_from_any_split_of_the_bytes():
    wire = b"".join(b"".join(message(k, {"n": k}, [bytes([k]) * k] * 3)) for k in range(1, 6))
    for cut in (1, 7, 13, len(wire)):
        buf, got = bytearray(), []
        for at in range(0, len(wire), cut):
            buf += wire[at:at + cut]
            got += [(kind, head["n"], bytes(data)) for kind, head, data in split(buf)]
        assert got == [(k, k, bytes([k]) * 3 * k) for k in range(1, 6)] and buf == b""


@pytest.mark.parametrize("wire, why", [
    (struct.pack("!IBI", 1 << 30, 1, 2) + b"{}", "malformed"),
    (struct.pack("!IBI", 5 + 10, 1, 20) + b"x" * 10, "malformed"),
    (struct.pack("!IBI", 5 + 3, 1, 3) + b"{x}", "not JSON"),
    (struct.pack("!IBI", 5 + 2, 1, 2) + b"[]", "not a JSON object"),
])
def test_a_malformed_message_is_refused(wire, why):
    with pytest.raises(LinkError, match=why):
        list(split(bytearray(wire)))


def test_more_parts_than_sendmsg_takes_are_joined():
    parts = message(2, {}, [b"ab"] * (MAX_PARTS + 1))
    assert len(parts) == 3 and parts[2] == b"ab" * (MAX_PARTS + 1)


def test_behind_a_full_socket_data_waits_within_its_bound_events_always_in_order():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
    reactor = MemoryReactorClock()
    link = LinkWriter(ours, reactor, max_queued=300 << 10)
    block = [b"x" * (100 << 10)]
    sent = [n for n in range(8) if link.data(message(3, {"n": n}, block))]
    assert link.behind and link in reactor.getWriters()
    assert 2 <= len(sent) < 8 and sent == list(range(len(sent)))  # the rest: not sent
    link.event(message(5, {"n": "end"}))  # never refused
    buf, got = bytearray(), []
    while True:
        try:
            buf += theirs.recv(1 << 20)
        except BlockingIOError:
            if not link.behind:
                break
            link.doWrite()
            continue
        got += [head["n"] for _kind, head, _data in split(buf)]
    got += [head["n"] for _kind, head, _data in split(buf)]
    assert got == [*sent, "end"] and link not in reactor.getWriters()
    link.close()
    assert not link.data(message(3, {}, block)) and link.fileno() == -1


def test_the_inbox_hands_out_whole_messages_as_views_from_any_split_and_grows_for_big_ones():
    big = b"z" * 5000  # longer than the inbox: it grows to hold the message
    wire = b"".join(b"".join(message(k, {"n": k}, [bytes([k]) * k] * 3)) for k in range(1, 6))
    wire += b"".join(message(6, {"n": 6}, [big]))
    for cut in (1, 7, 13, len(wire)):
        inbox, got = Inbox(1024), []
        for at in range(0, len(wire), cut):
            inbox.feed(wire[at:at + cut])
            got += [(kind, head["n"], bytes(data)) for kind, head, data in inbox.messages()]
        assert got == [(k, k, bytes([k]) * 3 * k) for k in range(1, 6)] + [(6, 6, big)]


def test_the_inbox_reads_a_socket_and_refuses_a_malformed_head_before_making_room():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    inbox = Inbox(64)
    ours.sendall(b"".join(message(1, {"n": 1}, [b"a" * 40])))
    got = []
    while len(got) < 1:
        assert inbox.recv(theirs) > 0
        got += [(head["n"], bytes(data)) for _kind, head, data in inbox.messages()]
    assert got == [(1, b"a" * 40)]
    with pytest.raises(BlockingIOError):
        inbox.recv(theirs)
    ours.sendall(struct.pack("!IBI", 1 << 30, 1, 2) + b"x" * 100)  # 1 GiB announced
    with pytest.raises(LinkError, match="malformed"):
        while True:
            inbox.recv(theirs)
            list(inbox.messages())
    ours.close()

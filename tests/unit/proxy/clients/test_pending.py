"""Connections without a first frame: at most ``--max-pending``, the oldest closed first.

Issue 21, point 14: a connect flood (connections opened and closed, or opened and held
silent) was held by the proxy up to the open-file limit.  On a memory reactor: past the limit
the oldest silent connection is told and closed, counted (status page, ``/metrics``), and a
client that sends its request is never pushed out by the flood.
"""

from __future__ import annotations

from support.proxy_fakes import FakeReactor, connect_client, make_proxy

from pybrid.proto import pb
from pybrid.proxy.clients.pending import PendingLimit
from pybrid.proxy.clients.session import SessionState
from pybrid.proxy.status.collect import proxy_counters
from pybrid.wire import messages

TOKEN = "t" * 32


def test_the_limit_keeps_arrival_order_and_gives_back_the_oldest():
    pending: PendingLimit[str] = PendingLimit(limit=3)
    assert pending.add("a") == [] and pending.add("b") == [] and pending.add("c") == []
    pending.discard("b")  # sent its first frame
    assert pending.add("d") == []
    assert pending.add("e") == ["a"]
    assert pending.add("f") == ["c"]
    assert len(pending) == 3 and "d" in pending and "a" not in pending
    pending.discard("nobody")  # gone already: nothing happens
    assert len(pending) == 3


def test_a_silent_flood_closes_its_oldest_connections_and_counts_them():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, max_pending=4)
    flood = [connect_client(service, 42000 + i) for i in range(10)]
    closed = [peer for peer in flood if peer.closing]
    assert closed == flood[:6]  # the oldest six; the four newest still wait
    texts = {e.message_v1.error_message.description for peer in closed for e in peer.frames()}
    assert texts == {service.front.pending.text()}
    assert "more than 4 connections without a request" in service.front.pending.text()
    assert all(peer.proto.session.state is SessionState.CLOSED for peer in closed)
    assert len(service.front.pending) == 4
    assert service.front.status().pending_closed == 6
    assert proxy_counters(service.status())["pending_closed"] == 6
    assert service.front.counters.deadlines == 0
    for peer in closed:  # their connections go: nothing stays counted as waiting
        peer.close()
    assert len(service.front.pending) == 4


def test_a_client_that_sends_its_request_is_not_pushed_out_by_the_flood():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, max_pending=3)
    user = connect_client(service, 43000)
    user.request("get_overload_status_command", id="o")
    pinger = connect_client(service, 43001)
    pinger.send(messages.generic_ping())  # a standalone ping holds no pending place either
    flood = [connect_client(service, 42000 + i) for i in range(50)]
    assert not user.closing and not pinger.closing
    assert user.proto.session.state is SessionState.ACTIVE
    assert sum(peer.closing for peer in flood) == 47
    late = connect_client(service, 43002)  # a client arriving during the flood
    late.request("get_overload_status_command", id="q")
    more = [connect_client(service, 44000 + i) for i in range(20)]
    assert not late.closing and late.kinds() == ["busy_response"]
    assert all(not peer.closing for peer in more[-3:])
    assert service.front.counters.pending_closed == 47 + 1 + 19  # late took a place, then left


def test_with_auth_a_connection_is_pending_until_it_authenticates():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, auth_token=TOKEN, max_pending=2)
    user = connect_client(service, 43000)
    user.request("reset_command", id="r")  # a request, but no token yet: still pending
    assert user.kinds() == ["error_message"]
    flood = [connect_client(service, 42000 + i) for i in range(2)]
    assert user.closing and not any(peer.closing for peer in flood)
    second = connect_client(service, 43001)
    request = pb.AuthRequest()
    request.bearer.token = TOKEN
    second.request("auth_request", request, id="a")
    assert second.kinds() == ["success_message"]
    for i in range(5):
        connect_client(service, 44000 + i)
    assert not second.closing


def test_the_deadline_still_closes_what_the_limit_left_waiting():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, max_pending=100)
    silent = [connect_client(service, 42000 + i) for i in range(5)]
    reactor.advance(service.front.first_frame_deadline)
    assert all(peer.closing for peer in silent)
    assert service.front.counters.deadlines == 5 and service.front.counters.pending_closed == 0
    assert len(service.front.pending) == 0


def test_a_connection_closed_for_another_reason_is_not_closed_again_nor_counted():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, auth_token=TOKEN, max_pending=2)
    guesser = connect_client(service, 42000)
    for n in range(3):  # three wrong tokens: closed by the auth throttle
        request = pb.AuthRequest()
        request.bearer.token = f"guess-{n}"
        guesser.request("auth_request", request, id=f"g{n}")
        reactor.advance(1.1)  # past the throttle's delay, before the 5 s deadline
    assert guesser.closing and service.front.counters.auth_closed == 1
    guesser.frames()
    others = [connect_client(service, 43000 + i) for i in range(2)]  # the guesser leaves the set
    assert guesser.frames() == []  # not told twice
    assert service.front.counters.pending_closed == 0
    assert not any(peer.closing for peer in others)

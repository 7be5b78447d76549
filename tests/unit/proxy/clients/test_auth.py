"""Authentication (issue 15, point 4): token strength, per-connection throttling, and session
slots only for connections that authenticated (or, without --auth, sent a complete frame)."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy
from twisted.python import usage

from pybrid.proto import pb
from pybrid.proxy.clients.auth import (
    FAILED,
    MIN_TOKEN_BITS,
    AuthThrottle,
    token_bits,
    too_many_text,
    weak_token_text,
)
from pybrid.proxy.clients.scheduler import OVERLOADED
from pybrid.wire import messages

TOKEN = "J3x9_kQ2vLr8TzWm4NyB7cHd1FgP6sAe0uXo5iKj-Z"  # urlsafe characters: 6 bits each


def auth(client, token, id):
    request = pb.AuthRequest()
    request.bearer.token = token
    client.request("auth_request", request, id=id)
    [reply] = client.frames()
    assert reply.message_v1.id == id
    if messages.kind_of(reply) == "success_message":
        return "ok"
    return reply.message_v1.error_message.description


@pytest.mark.parametrize(("token", "bits"), [
    ("0123456789" * 4, 40 * 3.3219), ("deadbeef" * 4, 128.0), ("a" * 22, 22 * 4.0),
    ("Ab1" * 8, 24 * 5.954), (TOKEN, len(TOKEN) * 6.0),
])
def test_token_bits_are_length_times_the_alphabet(token, bits):
    assert token_bits(token) == pytest.approx(bits, rel=1e-3)


def test_a_token_under_128_bits_is_refused_with_a_clear_message():
    text = weak_token_text("PYBRID_AUTHENTICATION", "s3cret")
    assert text is not None and "PYBRID_AUTHENTICATION" in text and "128 bits" in text
    assert weak_token_text("PYBRID_AUTHENTICATION", TOKEN) is None
    assert token_bits("deadbeef" * 4) >= MIN_TOKEN_BITS > token_bits("f" * 31)


def test_the_proxy_refuses_to_start_with_a_weak_token():
    from pybrid.proxy.plugin import Options

    options = Options()
    options.environ = {"PYBRID_AUTHENTICATION": "correct horse"}
    with pytest.raises(usage.UsageError, match="at least 128 bits"):
        options.parseOptions(["--auth", "--backend", "127.0.0.1:5732"])
    options = Options()
    options.environ = {"PYBRID_AUTHENTICATION": TOKEN}
    options.parseOptions(["--auth", "--backend", "127.0.0.1:5732"])
    assert options.config.auth_token == TOKEN


def test_the_throttle_delays_doubling_and_closes_after_three():
    throttle = AuthThrottle()
    assert [throttle.pause_after(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [throttle.exhausted(n) for n in (1, 2, 3)] == [False, False, True]


def test_wrong_tokens_delay_their_own_connection_only_and_close_it_after_three():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, auth_token=TOKEN)
    guesser = connect_client(service, 41000)
    assert auth(guesser, "guess-1", "g1") == FAILED
    guesser.request("auth_request", pb.AuthRequest(), id="g2")  # held: not read for 0.5 s
    assert guesser.frames() == []
    user = connect_client(service, 41001)  # same address: not affected at all
    assert auth(user, TOKEN, "right") == "ok"
    reactor.advance(0.5)
    assert [e.message_v1.error_message.description for e in guesser.frames()] == [FAILED]
    reactor.advance(1.0)
    request = pb.AuthRequest()
    request.bearer.token = "guess-3"
    guesser.request("auth_request", request, id="g3")
    texts = [e.message_v1.error_message.description for e in guesser.frames()]
    assert texts == [FAILED, too_many_text(3)]
    assert guesser.closing
    assert service.front.counters.auth_closed == 1
    assert too_many_text(3).startswith(FAILED)


def test_unauthenticated_and_half_frame_peers_hold_no_slot_and_are_closed_at_the_deadline():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, auth_token=TOKEN, max_sessions=2)
    peers = [connect_client(service, 42000 + i) for i in range(8)]
    for i, peer in enumerate(peers):
        if i % 2:
            peer.proto.dataReceived(b"\x40\xaa\x06")  # half a frame
        else:
            peer.request("reset_command", id="r")  # a request every 2 s, never authenticated
    reactor.advance(2.0)
    for peer in peers[::2]:
        peer.request("reset_command", id="r")
    assert service.scheduler.count == 0
    user = connect_client(service, 43000)
    assert auth(user, TOKEN, "right") == "ok"
    assert service.scheduler.count == 1
    reactor.advance(service.front.auth_deadline)
    assert all(peer.closing for peer in peers)
    assert not user.closing
    assert service.front.counters.deadlines == 8


def test_without_auth_a_slot_is_taken_by_the_first_complete_frame_only():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, max_sessions=1)
    halves = [connect_client(service, 42000 + i) for i in range(8)]
    for peer in halves:
        peer.proto.dataReceived(b"\x40\xaa\x06")
    reactor.advance(1.0)
    assert service.scheduler.count == 0
    user = connect_client(service, 43000)
    user.request("reset_command", id="r")
    assert service.scheduler.count == 1
    late = connect_client(service, 43001)
    late.request("reset_command", id="r")
    assert OVERLOADED in late.frames()[-1].message_v1.error_message.description
    reactor.advance(service.front.first_frame_deadline)
    assert all(peer.closing for peer in halves)
    assert service.front.counters.deadlines == 8


def test_without_auth_nothing_is_throttled():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor)
    client = connect_client(service, 41000)
    assert [auth(client, f"anything-{i}", f"x{i}") for i in range(20)] == ["ok"] * 20

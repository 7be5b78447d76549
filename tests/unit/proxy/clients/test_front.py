"""The client side of the proxy on a memory reactor: ping window, pings, auth, cache, busy."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy

from pybrid.proto import pb
from pybrid.proxy.clients.auth import FAILED, REQUIRED
from pybrid.proxy.clients.session import SessionState
from pybrid.wire import messages

SPEC = pb.ExtractCommand(recursive=True, specification=True)


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def proxy(reactor):
    service, _backends = make_proxy(reactor)
    return service


def test_standalone_ping_is_answered_then_closed_after_the_linger(reactor, proxy):
    client = connect_client(proxy)
    client.send(messages.generic_ping())
    assert client.kinds() == ["generic.ping_response"]
    assert client.proto.session.state is SessionState.PING
    assert not client.closing
    reactor.advance(proxy.config.timing.ping_linger - 0.01)
    assert not client.closing
    reactor.advance(0.02)
    assert client.closing  # loseConnection: the pong is flushed before the close
    assert proxy.scheduler.count == 0
    assert proxy.front.counters.standalone_pings == 1


def test_a_ping_connection_answers_every_ping_without_taking_a_session(reactor, proxy):
    client = connect_client(proxy)
    for _ in range(3):
        client.send(messages.generic_ping())
        reactor.advance(proxy.config.timing.ping_linger * 0.9)  # each ping restarts the linger
    assert client.kinds() == ["generic.ping_response"] * 3
    assert not client.closing
    assert proxy.scheduler.count == 0
    reactor.advance(proxy.config.timing.ping_linger)
    assert client.closing


def test_a_request_on_a_ping_connection_opens_a_session(reactor, proxy):
    client = connect_client(proxy)
    client.send(messages.generic_ping())
    client.request("extract_command", SPEC, id="e1")
    assert client.kinds() == ["generic.ping_response", "extract_response"]
    assert client.proto.session.state is SessionState.IDLE
    assert proxy.scheduler.count == 1
    reactor.advance(proxy.config.timing.ping_linger * 2)
    assert not client.closing


def test_ping_linger_zero_closes_after_the_first_pong_like_the_reference(reactor):
    from pybrid.proxy.config import Timing

    service, _backends = make_proxy(reactor, timing=Timing(ping_linger=0.0))
    client = connect_client(service)
    client.send(messages.generic_ping())
    assert client.kinds() == ["generic.ping_response"]
    assert client.closing


def test_ping_after_the_window_keeps_the_connection(reactor, proxy):
    client = connect_client(proxy)
    reactor.advance(0.006)  # window over: no slot until a complete frame (issue 15)
    assert client.proto.session.state is SessionState.PENDING
    client.send(messages.generic_ping())
    assert client.kinds() == ["generic.ping_response"]
    assert client.proto.session.state is SessionState.IDLE
    assert not client.closing


def test_ping_after_another_first_frame_keeps_the_connection(proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    client.send(messages.generic_ping())
    assert client.kinds() == ["extract_response", "generic.ping_response"]
    assert not client.closing


def test_v1_ping_is_answered_like_the_reference_proxy(proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    client.request("ping_command", id="p1")
    assert client.kinds() == ["extract_response", "generic.ping_response"]


def test_extract_is_served_from_the_cache_with_the_request_id(proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC, id="x-1")
    [reply] = client.frames()
    assert reply.message_v1.id == "x-1"
    [item] = reply.message_v1.extract_response.module.items
    carrier = item.entity_specification.entity.children[0]
    assert carrier.id == "/00-00-00-00-00-00" and carrier.class_ == pb.Entity.CARRIER


def test_queued_session_gets_cache_pings_auth_and_busy(proxy):
    first = connect_client(proxy, 1)
    first.request("reset_command")  # claims the device
    second = connect_client(proxy, 2)
    second.request("extract_command", SPEC, id="a")
    second.send(messages.generic_ping())
    second.request("auth_request", pb.AuthRequest(bearer=pb.BearerAuth(token="t")), id="b")
    second.request("start_run_command", id="c")
    second.request("udp_data_streaming_command", id="d")
    frames = second.frames()
    assert [messages.kind_of(f) for f in frames] == [
        "extract_response", "generic.ping_response", "success_message",
        "busy_response", "busy_response",
    ]
    assert [f.message_v1.id for f in frames[3:]] == ["c", "d"]
    assert second.proto.session.state is SessionState.QUEUED


def test_promotion_is_immediate_when_the_active_session_leaves(proxy):
    first = connect_client(proxy, 1)
    first.request("udp_data_streaming_command", id="d0")
    assert first.kinds() == ["udp_data_streaming_refused_response"]
    second = connect_client(proxy, 2)
    second.request("udp_data_streaming_command", id="d1")
    assert second.kinds() == ["busy_response"]
    first.close()
    second.request("udp_data_streaming_command", id="d2")
    [reply] = second.frames()
    assert messages.kind_of(reply) == "udp_data_streaming_refused_response"
    assert reply.message_v1.id == "d2"


def test_discovery_connection_does_not_block_others(proxy):
    discovery = connect_client(proxy, 1)
    discovery.request("extract_command", SPEC)
    other = connect_client(proxy, 2)
    other.request("udp_data_streaming_command", id="u")
    assert other.kinds() == ["udp_data_streaming_refused_response"]
    assert proxy.scheduler.active is other.proto.session
    discovery.request("extract_command", SPEC)  # still served while someone else is active
    assert discovery.kinds() == ["extract_response", "extract_response"]


def test_pings_do_not_count_as_activity(reactor, proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    for _ in range(11):
        reactor.advance(1.0)
        client.send(messages.generic_ping())
    assert client.closing
    last = client.frames()[-1]
    assert "timed out" in last.message_v1.error_message.description


def test_session_that_never_sent_anything_times_out(reactor, proxy):
    client = connect_client(proxy)
    reactor.advance(0.006)
    reactor.advance(9.9)
    assert not client.closing
    reactor.advance(0.2)
    [frame] = client.frames()
    assert frame.message_v1.error_message.description == "no complete request within 10 s"
    assert client.closing
    assert proxy.scheduler.count == 0  # it never held a slot


def test_overloaded_proxy_answers_then_closes():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, max_sessions=2)
    clients = [connect_client(service, i) for i in range(3)]
    for c in clients:
        c.request("extract_command", SPEC)
    [refused] = clients[2].frames()
    assert refused.message_v1.error_message.description == "Server overloaded"
    assert clients[2].closing
    assert not clients[1].closing


@pytest.fixture
def auth_proxy(reactor):
    service, _ = make_proxy(reactor, auth_token="s3cret")
    return service


def _auth(token):
    return pb.AuthRequest(bearer=pb.BearerAuth(token=token))


def test_auth_required_before_any_v1_request(auth_proxy):
    client = connect_client(auth_proxy)
    client.request("extract_command", SPEC, id="e1")
    client.request("reset_command", id="e2")
    frames = client.frames()
    assert [f.message_v1.error_message.description for f in frames] == [REQUIRED, REQUIRED]
    assert [f.message_v1.id for f in frames] == ["e1", "e2"]


def test_wrong_token_fails_right_token_unlocks(auth_proxy):
    client = connect_client(auth_proxy)
    client.request("auth_request", _auth("wrong"), id="a1")
    [failed] = client.frames()
    assert failed.message_v1.error_message.description == FAILED
    assert failed.message_v1.id == "a1"
    client.request("extract_command", SPEC)
    assert client.kinds() == []  # not read during the wrong token's delay
    auth_proxy.front.clock.advance(0.5)
    assert client.kinds() == ["error_message"]
    client.request("auth_request", _auth("s3cret"), id="a2")
    client.request("extract_command", SPEC)
    assert client.kinds() == ["success_message", "extract_response"]


def test_pings_need_no_auth(reactor, auth_proxy):
    client = connect_client(auth_proxy)
    client.send(messages.generic_ping())
    assert client.kinds() == ["generic.ping_response"]
    other = connect_client(auth_proxy, 2)
    reactor.advance(0.01)
    other.request("ping_command")
    assert other.kinds() == ["generic.ping_response"]


def test_nudges_follow_a_cached_extract_until_the_next_frame(reactor, proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    assert client.kinds() == ["extract_response"]
    reactor.advance(0.0035)
    assert client.kinds() == ["generic.ping_response"] * 2  # at 1 and 3 ms
    client.request("udp_data_streaming_command")  # the next frame stops them …
    assert client.kinds() == ["udp_data_streaming_refused_response"]
    reactor.advance(0.001)  # … and the refusal starts a new round
    assert client.kinds() == ["generic.ping_response"]
    client.request("reset_command")
    for _ in range(10):
        reactor.advance(0.01)
    assert client.kinds() == []


def test_nudges_stop_when_the_connection_closes(reactor, proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    client.close()
    # only the backend's liveness ping is left on the clock
    assert all(c.getTime() >= 0.5 for c in reactor.getDelayedCalls())
    reactor.advance(0.1)
    assert client.kinds() == ["extract_response"]


def test_no_nudges_when_disabled():
    from pybrid.proxy.config import Timing

    reactor = FakeReactor()
    service, _ = make_proxy(reactor, timing=Timing(nudge_delays=()))
    client = connect_client(service)
    client.request("extract_command", SPEC)
    client.request("udp_data_streaming_command")
    reactor.advance(0.1)
    assert client.kinds() == ["extract_response", "udp_data_streaming_refused_response"]


def test_frames_that_are_not_requests_are_counted_and_dropped(proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    client.kinds()
    client.send(pb.Envelope(version=pb.Version(major=1)))  # no message at all
    client.send(messages.generic_pong())  # a stray ping response
    empty_generic = pb.Envelope()
    empty_generic.generic.SetInParent()  # a generic message without a kind
    client.send(empty_generic)
    assert client.kinds() == []
    assert proxy.front.counters.not_v1 == 1
    assert proxy.front.counters.generic_dropped == 2
    assert not client.closing
    client.send(messages.generic_ping())
    assert client.kinds() == ["generic.ping_response"]


def test_without_nudges_a_cached_extract_gets_no_unsolicited_pongs(reactor):
    from pybrid.proxy.config import Timing

    service, _backends = make_proxy(reactor, timing=Timing(nudge_delays=()))
    client = connect_client(service)
    client.request("extract_command", SPEC)
    reactor.advance(1.0)
    assert client.kinds() == ["extract_response"]


def test_with_nudges_a_cached_extract_is_followed_by_pongs(reactor, proxy):
    client = connect_client(proxy)
    client.request("extract_command", SPEC)
    reactor.advance(1.0)
    kinds = client.kinds()
    assert kinds[0] == "extract_response" and "generic.ping_response" in kinds[1:]

"""Bounded work per connection (issue 15, point 3): the read gate under a memory reactor."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy
from support.proxy_multi import active_client

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import frame


@pytest.fixture
def reactor():
    return FakeReactor()


def frame_of(kind, body, rid):
    env = messages.v1(kind, body, id=rid)
    return frame(env.SerializeToString())


def overload_requests(backend):
    return [e for e in backend.received() if messages.kind_of(e) == "get_overload_status_command"]


def test_a_request_flood_is_not_read_beyond_max_outstanding(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    bound = service.front.max_outstanding
    for i in range(3 * bound):
        client.request("get_overload_status_command", id=f"o{i}")
    assert len(overload_requests(backend)) == bound  # the rest waits, unread
    assert client.transport.producerState == "paused"
    assert service.dispatcher.outstanding(client.proto.session) == bound
    answered = 0
    while answered < 3 * bound:
        reactor.advance(0.1)  # the frame-rate bucket refills meanwhile
        pending = [e for e in backend.inbox if messages.kind_of(e) == "get_overload_status_command"]
        assert 0 < len(pending) <= bound
        for env in pending:
            backend.inbox.remove(env)
            backend.send(messages.v1("get_overload_status_response", id=env.message_v1.id))
            answered += 1
        backend.received()
    assert [messages.request_id(e) for e in client.frames()] == [f"o{i}" for i in range(3 * bound)]
    assert client.transport.producerState == "producing"
    assert service.dispatcher.outstanding(client.proto.session) == 0


@pytest.mark.parametrize("kind", ["run_data_message", "run_data_end_message",
                                  "run_state_change_message"])
def test_client_sent_run_traffic_is_refused_not_forwarded(reactor, kind):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    backend.received()
    backend.inbox.clear()
    for i in range(100):
        client.request(kind, id=f"r{i}")
    reactor.advance(1.0)  # the metered frames after the first burst
    frames = client.frames()
    assert [messages.kind_of(e) for e in frames] == ["error_message"] * 100
    assert "refused, not forwarded" in frames[0].message_v1.error_message.description
    assert [e for e in backend.received() if e.WhichOneof("kind") == "message_v1"] == []
    assert service.front.counters.client_run_traffic == 100


def test_a_client_that_does_not_read_its_replies_is_not_read(reactor):
    """A queued connection flooding cached extracts while not reading: once its sender is
    paused (Twisted's buffer full), the proxy stops reading it; reading resumes with the
    sender."""
    service, _ = make_proxy(reactor)
    active_client(service)
    queued = connect_client(service, 41001)
    queued.request("reset_command", id="q")
    assert queued.kinds() == ["busy_response"]
    sender = queued.proto.session.sender
    sender.pauseProducing()  # what Twisted does when the client does not read
    spec = pb.ExtractCommand(recursive=True, specification=True)
    for i in range(50):
        queued.request("extract_command", spec, id=f"e{i}")
    gate = service.front.gates[queued.proto.session]
    assert not gate.open and queued.transport.producerState == "paused"
    assert not gate.held  # what was read waits as raw bytes in the receiver, not parsed
    waiting = sum(len(frame_of("extract_command", spec, f"e{i}")) for i in range(1, 50))
    assert queued.proto.bufferedBytes == waiting
    assert queued.proto.counters.frames == 2  # parsed: the reset and the first extract
    assert sender.counters.frames == 2  # the busy reply and one extract reply
    sender.resumeProducing()
    for _ in range(100):  # the frame-rate bucket refills (100/s for a queued connection)
        reactor.advance(0.02)
    assert gate.open and not gate.held and queued.proto.bufferedBytes == 0
    assert len([e for e in queued.frames() if messages.kind_of(e) == "extract_response"]) == 50


def test_a_waiting_connection_has_small_buffers_until_it_is_active(reactor):
    """Issue 15, point 3: a queued session needs kilobytes, not --client-buffer."""
    from pybrid.proxy.sizes import WAITING_CLIENT_BUFFER

    service, _ = make_proxy(reactor)
    first = connect_client(service, 41001)
    first.request("ping_command")  # admitted, not active
    sender = first.proto.session.sender
    assert sender.waiting and sender.limit == WAITING_CLIENT_BUFFER
    first.request("extract_command", pb.ExtractCommand(recursive=True, specification=True))
    first.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
    assert first.proto.session is service.scheduler.active
    assert not sender.waiting and sender.limit == service.front.client_buffer
    queued = connect_client(service, 41002)
    queued.request("reset_command", id="q")
    assert queued.kinds() == ["busy_response"]
    waiting = queued.proto.session.sender
    waiting.pauseProducing()  # the queued client does not read
    waiting.send_payload(b"x" * (WAITING_CLIENT_BUFFER + 1))
    waiting.resumeProducing()  # the error waited in place of the dropped frame
    error = queued.frames()[-1].message_v1.error_message.description
    assert "for a connection that is not the active session" in error
    assert waiting.overflow is not None and waiting.overflow.limit == WAITING_CLIENT_BUFFER
    assert first.proto.session is service.scheduler.active  # the active session is untouched


def test_partial_frames_of_waiting_connections_share_one_budget(reactor):
    """Half frames cannot take the proxy's memory: past the budget the connection that grew
    is told and closed; others and the active session are untouched."""
    from pybrid.wire.framing import encode_varint

    service, _ = make_proxy(reactor)
    front = service.front
    front.budget.limit = 300_000
    active = active_client(service)
    big = encode_varint(250_000)  # declared within the frame limit, never finished
    active.proto.dataReceived(big + b"a" * 200_000)  # the active session is not charged
    holders = [connect_client(service, 42000 + i) for i in range(3)]
    for h in holders[:2]:
        h.proto.dataReceived(big + b"h" * 100_000)
    assert front.budget.total == 2 * (100_000 + len(big))
    assert not any(h.closing for h in holders[:2])
    holders[2].proto.dataReceived(big + b"h" * 100_000)  # 300 006 > 300 000
    assert holders[2].closing and not holders[0].closing and not holders[1].closing
    assert "memory budget" in holders[2].frames()[-1].message_v1.error_message.description
    assert front.budget.closed == 1
    assert front.budget.total == 2 * (100_000 + len(big))
    holders[0].close()
    assert front.budget.total == 100_000 + len(big)
    assert active.proto.session is service.scheduler.active and not active.closing

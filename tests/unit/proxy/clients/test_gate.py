"""Bounded work per connection (issue 15, point 3): the read gate under a memory reactor."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy
from support.proxy_multi import active_client

from pybrid.proto import pb
from pybrid.wire.framing import frame
from pybrid.wire import messages


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

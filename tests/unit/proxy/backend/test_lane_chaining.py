"""A backend lane whose backend is another proxy (chaining), under a memory reactor."""

from __future__ import annotations

import pytest
from support.proxy_fakes import carrier_entity, connect_backend, spec_reply
from twisted.logger import capturedLogs

from pybrid.proto import pb
from pybrid.proxy.backend.lane import BackendLane, LaneState
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import Timing
from pybrid.wire import messages


@pytest.fixture
def lane(reactor, events):
    lane = BackendLane(Backend("127.0.0.1", 5999), reactor, events, events,
                       Timing(keepalive_interval=2.0, busy_retry=1.0))
    lane.start()
    return lane


def proxy_extract(rid):
    """What our proxy answers: one item per backend (a CARRIER root, a DEVICE root) + a wire."""
    response = pb.ExtractResponse()
    response.module.items.add().entity_specification.entity.CopyFrom(
        carrier_entity("aa-00-00-00-00-00"))
    device = spec_reply("x", ["bb-00-00-00-00-00", "bb-00-00-00-00-01"])
    response.module.items.extend(device.message_v1.extract_response.module.items)
    wire = response.module.items.add().wiring_specification
    wire.source.entity.path, wire.source.indexed_pin = "/aa-00-00-00-00-00", 1
    wire.target.entity.path, wire.target.named_pin = "/bb-00-00-00-00-01", "aux1"
    return messages.v1("extract_response", response, id=rid)


def v1_kinds(backend):
    return [k for k in map(messages.kind_of, backend.received()) if not k.startswith("generic")]


def test_every_carrier_of_a_proxy_backend_counts_and_its_wires_are_kept(reactor, lane):
    backend = connect_backend(reactor, accept_udp=False)
    request = backend.take("extract_command")
    backend.send(messages.generic_pong())  # the inner proxy's nudges: signs of life only
    backend.send(proxy_extract(request.message_v1.id))
    backend.send(messages.generic_pong())
    backend.answer("reset_command", "reset_response")
    backend.answer("udp_data_streaming_command", "udp_data_streaming_refused_response")
    assert lane.healthy and lane.data_mode == "tcp"
    assert lane.carriers == ("/aa-00-00-00-00-00", "/bb-00-00-00-00-00", "/bb-00-00-00-00-01")
    assert len(lane.spec_items) == 2
    [wire] = lane.wiring_items
    assert wire.wiring_specification.target.named_pin == "aux1"
    assert lane.counters.pongs == 2 and lane.counters.unsolicited == 0


def test_a_busy_proxy_is_asked_again_until_it_serves_us(reactor, events, lane):
    backend = connect_backend(reactor, accept_udp=False)
    request = backend.take("extract_command")
    backend.send(proxy_extract(request.message_v1.id))
    for _ in range(3):  # the inner proxy serves another client meanwhile
        busy = backend.answer("reset_command", "busy_response")
        assert lane.state is LaneState.HANDSHAKE
        reactor.advance(0.5)
        backend.send(messages.generic_pong())
        assert "reset_command" not in v1_kinds(backend)
        reactor.advance(0.5)
    retry = backend.take("reset_command")
    assert retry.message_v1.id != busy.message_v1.id  # a fresh id each time
    assert retry.message_v1.reset_command.sync
    backend.send(messages.v1("reset_response", id=retry.message_v1.id))
    backend.answer("udp_data_streaming_command", "udp_data_streaming_refused_response")
    assert lane.healthy and events.ready == [lane]
    assert lane.counters.busy == 3 and lane.counters.connects == 1  # same connection


def test_an_idle_tcp_lane_sends_a_cached_extract_to_stay_alive(reactor, lane):
    backend = connect_backend(reactor, accept_udp=False)
    backend.handshake()
    v1_kinds(backend)
    backend.inbox.clear()
    reactor.advance(1.5)
    backend.send(messages.generic_pong())
    assert v1_kinds(backend) == []
    reactor.advance(0.5)  # 2 s without a request
    keepalive = backend.take("extract_command")
    assert keepalive.message_v1.extract_command.specification
    backend.send(spec_reply(keepalive.message_v1.id, ["00-00-00-00-00-00"]))
    # a request through the lane counts: no keepalive right after it
    reactor.advance(1.5)
    lane.request(messages.v1("get_overload_status_command"))
    backend.take("get_overload_status_command")
    reactor.advance(1.0)
    assert v1_kinds(backend) == []
    assert lane.counters.keepalives == 1 and lane.healthy


def test_a_udp_lane_sends_no_keepalive(reactor, lane):
    backend = connect_backend(reactor)
    backend.handshake()
    for _ in range(10):
        reactor.advance(0.5)
        backend.send(messages.generic_pong())
    assert v1_kinds(backend) == [] and lane.counters.keepalives == 0


def test_an_id_less_error_from_an_inner_proxy_is_logged_with_its_text(reactor, lane):
    backend = connect_backend(reactor, accept_udp=False)
    backend.handshake()
    with capturedLogs() as events:
        backend.send(messages.error("Cluster degraded: backend 10.0.0.9:5732 lost (gone)"))
    texts = [e.get("error") for e in events]
    assert "Cluster degraded: backend 10.0.0.9:5732 lost (gone)" in texts

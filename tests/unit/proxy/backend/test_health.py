"""Cluster health and promotion on a memory reactor: every backend ready, no conflicts,
late backends joining, a backend reconnecting with a new description."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_backend, connect_client, make_proxy
from support.proxy_multi import SPEC
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure

from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.wire import messages

ZERO = "00-00-00-00-00-00"


@pytest.fixture
def reactor():
    return FakeReactor()


def claim(service, port=41000):
    client = connect_client(service, port)
    client.request("reset_command", id="claim")
    return client


def test_two_backends_with_the_same_carrier_serve_nobody_and_say_why(reactor):
    with capturedLogs() as logs:
        service, backends = make_proxy(reactor, carriers=[[ZERO], [ZERO, "00-00-00-00-00-01"]])
    errors = [e for e in logs if e.get("log_level") is LogLevel.error]
    assert len(errors) == 1
    problem = errors[0]["problem"]
    assert "carrier /00-00-00-00-00-00 is reported by backend 127.0.0.1:6000 and by backend " \
           "127.0.0.1:6001" in problem
    assert all(lane.healthy for lane in service.lanes) and not service.all_healthy()
    client = claim(service)
    assert client.kinds() == ["busy_response"]  # queued, never promoted
    client.request("extract_command", SPEC, id="x")
    [reply] = client.frames()
    text = reply.message_v1.error_message.description
    assert text.startswith("Cluster not ready: cluster misconfigured: carrier /00-00-00-00-00-00")
    assert reply.message_v1.id == "x"
    assert [b.received() for b in backends] == [[], []]  # nothing forwarded
    assert service.health.problems() == [problem]


def test_the_conflict_ends_when_the_backend_comes_back_with_another_mac(reactor):
    service, (_first, second) = make_proxy(reactor, carriers=[[ZERO], [ZERO]])
    client = claim(service)
    assert client.kinds() == ["busy_response"]
    second.proto.connectionLost(Failure(ConnectionLost("replaced")))
    reactor.advance(0.5)
    with capturedLogs() as logs:
        connect_backend(reactor, index=2, macs=["00-00-00-00-00-0b"]).handshake()
    assert any("resolved" in e.get("log_format", "") for e in logs)
    assert service.all_healthy()
    assert service.scheduler.active is client.proto.session  # promoted at once


def test_no_promotion_until_every_backend_is_ready_then_late_backends_join(reactor):
    config = ProxyConfig(backends=(Backend("127.0.0.1", 6000), Backend("127.0.0.1", 6001)),
                         interface="127.0.0.1", port=0)
    service = ProxyService(config, reactor)
    service.startService()
    connect_backend(reactor, index=0).handshake()
    _, _, factory, _, _ = reactor.tcpClients[1]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))  # down at start
    client = claim(service)
    assert client.kinds() == ["busy_response"]
    assert service.health.problems() == ["backend 127.0.0.1:6001 is waiting"]
    client.request("extract_command", SPEC, id="x")
    [reply] = client.frames()
    assert "backend 127.0.0.1:6001 has not been reached yet" in \
        reply.message_v1.error_message.description
    reactor.advance(0.5)  # the lane retries …
    late = connect_backend(reactor, index=2, macs=["bb-00-00-00-00-00"])
    assert service.scheduler.active is None  # … connected is not ready: handshake first
    late.handshake()
    assert service.scheduler.active is client.proto.session
    client.request("extract_command", SPEC, id="y")
    [reply] = client.frames()
    assert len(reply.message_v1.extract_response.module.items) == 2


def test_a_lost_backend_closes_the_active_session_and_keeps_the_queue(reactor):
    service, backends = make_proxy(reactor, carriers=[[ZERO], ["bb-00-00-00-00-00"]])
    active = claim(service, 1)
    queued = claim(service, 2)
    active.frames()
    assert queued.kinds() == ["busy_response"]
    backends[1].proto.connectionLost(Failure(ConnectionLost("reset by peer")))
    [reply] = active.frames()
    text = reply.message_v1.error_message.description
    assert text.startswith("Cluster degraded: backend 127.0.0.1:6001 lost (")
    assert "reset by peer" in text
    assert not reply.message_v1.HasField("id") and active.closing
    assert queued.frames() == [] and not queued.closing
    assert service.scheduler.queue[0] is queued.proto.session
    reactor.advance(0.5)
    connect_backend(reactor, index=2, macs=["bb-00-00-00-00-00"]).handshake()
    assert service.scheduler.active is queued.proto.session
    queued.request("reset_command", id="now")
    assert messages.kind_of(backends[0].take("reset_command")) == "reset_command"


def test_the_status_page_shows_the_conflict_that_keeps_sessions_out(reactor):
    """Issue 21: the page's health is the scheduler's verdict — one function, one reason."""
    import json

    from prometheus_client.parser import text_string_to_metric_families

    from pybrid.proxy.status import html as status_html
    from pybrid.proxy.status import metrics as status_metrics
    from pybrid.proxy.status.collect import StatusCollector

    service, _ = make_proxy(reactor, carriers=[[ZERO], [ZERO]])
    assert all(lane.healthy for lane in service.lanes)  # each backend on its own is fine
    client = claim(service)
    assert client.kinds() == ["busy_response"]  # the scheduler refuses …
    conflict = ("carrier /00-00-00-00-00-00 is reported by backend 127.0.0.1:6000 and by "
                "backend 127.0.0.1:6001")
    status = StatusCollector(service, reactor).snapshot()  # … and the page says so
    data = json.loads(json.dumps(status.to_json()))
    assert data["healthy"] is False
    assert conflict in data["readiness"]["reason"]
    assert data["readiness"]["state"] == "misconfigured"
    samples = {s.name: s.value for f in text_string_to_metric_families(
        status_metrics.render(status)) for s in f.samples if not s.labels}
    assert samples["pybrid_proxy_healthy"] == 0
    page = status_html.render(status)
    top = page[:page.index("<main>")]  # the header and the banner above every section
    assert "all backends ready" not in page
    assert '<span class="pill bad">misconfigured</span>' in top
    assert conflict in top and "give the devices distinct MAC addresses" in top

    from pybrid.proxy.backend.health import readiness

    verdict = readiness(service.lanes)  # the scheduler's verdict is the page's
    assert not verdict.ready and status.readiness == verdict and not service.all_healthy()
    assert data["readiness"]["reason"] == verdict.reason
    assert data["readiness"]["conflicts"] == list(verdict.conflicts) == [
        service.health.problems()[0]]


def test_a_ready_cluster_has_no_banner_and_one_verdict(reactor):
    from pybrid.proxy.backend.health import readiness
    from pybrid.proxy.status import html as status_html
    from pybrid.proxy.status.collect import StatusCollector

    service, _ = make_proxy(reactor, carriers=[[ZERO], ["00-00-00-00-00-01"]])
    verdict = readiness(service.lanes)
    assert verdict.ready and verdict.reason is None and service.all_healthy()
    status = StatusCollector(service, reactor).snapshot()
    assert status.healthy
    page = status_html.render(status)
    assert "all backends ready" in page and 'role="alert"' not in page


def test_no_backend_at_all_is_not_ready():
    from pybrid.proxy.backend.health import readiness

    verdict = readiness([])
    assert not verdict.ready and verdict.reason == "no backend configured"

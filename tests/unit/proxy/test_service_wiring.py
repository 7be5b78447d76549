"""The proxy's service tree: parts are child services, objects complete when built."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, make_proxy

from pybrid.proxy.clients.listen import ListeningService
from pybrid.wire.services import PartService


@pytest.fixture
def reactor():
    return FakeReactor()


def test_lanes_intake_watch_and_listener_are_child_services_started_with_the_proxy(reactor):
    service, _backends = make_proxy(reactor, carriers=[["00-00-00-00-00-00"],
                                                       ["00-00-00-00-00-01"]])
    children = list(service)
    parts = [c.part for c in children if isinstance(c, PartService)]
    assert parts == [*service.lanes, service.intake_watch]
    assert [c for c in children if isinstance(c, ListeningService)] == [service.listener]
    assert all(c.running for c in children)
    assert service.port is service.listener.port is not None
    assert service.address[1] == service.port.getHost().port


def test_front_and_dispatcher_share_one_in_flight_count_from_construction(reactor):
    service, _backends = make_proxy(reactor)
    assert service.front.in_flight is service.dispatcher.in_flight


def test_stopping_stops_listening_first_and_every_child_once_done(reactor):
    service, _backends = make_proxy(reactor)
    done: list[object] = []
    service.stopService().addBoth(done.append)
    assert service.port is None  # no new clients while the sessions are told
    reactor.advance(10.0)
    assert done == [None]
    assert not any(c.running for c in service)
    with pytest.raises(RuntimeError):
        service.address  # noqa: B018


def test_when_healthy_waits_for_the_lanes_and_fires_at_once_after(reactor):
    from support.proxy_fakes import connect_backend

    from pybrid.proxy.backendfile import Backend
    from pybrid.proxy.config import ProxyConfig
    from pybrid.proxy.service import ProxyService

    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", 6000),),
                                       interface="127.0.0.1", port=0), reactor)
    service.startService()
    waited: list[object] = []
    service.when_healthy().addCallback(waited.append)
    assert waited == []
    connect_backend(reactor, index=0, macs=["00-00-00-00-00-00"]).handshake()
    assert waited == [None]
    again: list[object] = []
    service.when_healthy().addCallback(again.append)
    assert again == [None]

"""Shared set-up of the backend-lane tests: a memory reactor, and a recorder standing in for
both of a lane's partners — the service (:class:`~pybrid.proxy.backend.lane.LaneEvents`) and
the router (:class:`~pybrid.proxy.backend.lane.RunSink`)."""

from __future__ import annotations

import attrs
import pytest
from support.reactor import FakeReactor


@attrs.define
class LanePartners:
    """Records what a lane reports (ready, lost) and the run traffic it hands on."""

    ready: list = attrs.field(factory=list)
    lost: list = attrs.field(factory=list)
    messages: list = attrs.field(factory=list)
    datagrams: list = attrs.field(factory=list)

    def lane_ready(self, lane):
        self.ready.append(lane)

    def lane_lost(self, lane, reason):
        self.lost.append(reason)

    def route_message(self, lane, env, payload):
        self.messages.append((env, payload))

    def route_datagram(self, lane, data):
        self.datagrams.append(data)


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def events():
    return LanePartners()

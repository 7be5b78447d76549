"""``connect()`` refuses a reactor that can never answer, and connects to addresses directly."""

from __future__ import annotations

import asyncio

import pytest
from twisted.internet import endpoints
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactorClock

from pybrid.client import ClientError, connect
from pybrid.client.connect import _endpoint, reactor_problem


def test_a_stopped_reactor_outside_an_asyncio_loop_is_fine():
    # task.react calls its function before reactor.run(): not running yet is normal here
    assert reactor_problem(SelectReactor()) is None
    assert reactor_problem(MemoryReactorClock()) is None


def test_a_stopped_reactor_inside_a_running_asyncio_loop_says_so():
    reactor = SelectReactor()

    async def inside() -> str | None:
        return reactor_problem(reactor)

    problem = asyncio.run(inside())
    assert problem is not None
    assert problem.startswith("the Twisted reactor (SelectReactor) is not running")
    assert "pybrid.client.blocking.connect()" in problem

    async def via_connect() -> BaseException:
        d = connect("127.0.0.1", 5732, reactor=reactor)
        failures: list[BaseException] = []
        d.addErrback(lambda f: failures.append(f.value))
        return failures[0]

    err = asyncio.run(via_connect())
    assert isinstance(err, ClientError) and "is not running" in str(err)
    assert reactor.getDelayedCalls() == []  # nothing was scheduled


def test_an_asyncio_reactor_on_the_loop_but_not_started_says_how_to_start_it():
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    async def inside() -> str | None:
        reactor = AsyncioSelectorReactor(asyncio.get_running_loop())
        return reactor_problem(reactor)

    problem = asyncio.run(inside())
    assert problem is not None and "reactor.startRunning(installSignalHandlers=False)" in problem


@pytest.mark.parametrize(("host", "kind"), [
    ("127.0.0.1", endpoints.TCP4ClientEndpoint),
    ("::1", endpoints.TCP6ClientEndpoint),
    ("[::1]:5733", endpoints.TCP6ClientEndpoint),
    ("lucidac.local", endpoints.HostnameEndpoint),
])
def test_addresses_are_not_resolved(host, kind):
    endpoint, _label, _tls = _endpoint(MemoryReactorClock(), host, 5732, 5.0)
    assert isinstance(endpoint, kind)


def test_an_address_connects_without_resolving():
    reactor = MemoryReactorClock()
    connect("10.0.0.5", 5733, reactor=reactor)
    (host, port, *_rest), = reactor.tcpClients
    assert (host, port) == ("10.0.0.5", 5733)

"""The client listener's accept loop: at most ``--accepts-per-pass`` connections per pass.

Twisted's ``tcp.Port.doRead`` takes ``numberAccepts`` connections per pass and adds 20 each time
a pass was full, with no ceiling (issue 21, point 14).  The port below is driven with a fake
listening socket that always has another connection waiting (a connect flood), so a pass takes
exactly as many as the port allows; each "accepted" socket is /dev/null's descriptor.
"""

from __future__ import annotations

import errno
import os
import socket

import pytest
from twisted.internet import protocol, tcp
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactor

from pybrid.proxy.clients.listen import DEFAULT_ACCEPTS_PER_PASS, BoundedPort, bounded_accepts


class _Refusing(protocol.ServerFactory):
    """Counts what the port accepted; returns no protocol, so the port closes each one."""

    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr):
        self.built += 1
        return None


class _Accepted:
    """An accepted socket; Twisted 25.5 marks its descriptor close-on-exec (any real fd does)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        pass


class _Flood:
    """A listening socket with ``waiting`` connections in its queue."""

    def __init__(self, waiting: int, fd: int) -> None:
        self.waiting = waiting
        self.fd = fd

    def accept(self):
        if self.waiting == 0:
            raise BlockingIOError(errno.EAGAIN, "no connection waiting")
        self.waiting -= 1
        return _Accepted(self.fd), ("127.0.0.1", 40000 + self.waiting)


def passes(port_class, waiting: int, rounds: int, cap: int | None = None) -> list[int]:
    """Connections taken by each of ``rounds`` passes of ``port_class``'s accept loop."""
    factory = _Refusing()
    port = port_class(0, factory, reactor=MemoryReactor())
    if cap is not None:
        port.max_accepts = cap
    taken = []
    with open(os.devnull, "rb") as null:
        port.socket = _Flood(waiting, null.fileno())
        port.numberAccepts = 100  # what startListening sets
        for _ in range(rounds):
            before = factory.built
            port.doRead()
            taken.append(factory.built - before)
    return taken


def test_twisted_s_own_port_takes_twenty_more_each_full_pass():
    assert passes(tcp.Port, 100_000, 5) == [100, 120, 140, 160, 180]  # the defect


def test_the_bounded_port_never_takes_more_than_its_cap_per_pass():
    assert passes(BoundedPort, 100_000, 5) == [DEFAULT_ACCEPTS_PER_PASS] * 5
    assert passes(BoundedPort, 100_000, 4, cap=7) == [7, 7, 7, 7]


def test_the_bounded_port_still_shrinks_after_a_quiet_pass_and_drains_a_burst():
    taken = passes(BoundedPort, 250, 5)
    assert taken == [100, 100, 50, 0, 0]
    port = BoundedPort(0, _Refusing(), reactor=MemoryReactor())
    port.numberAccepts = 3
    assert port.numberAccepts == 3
    port.numberAccepts = 0
    assert port.numberAccepts == 1  # as Twisted: never below one


@pytest.fixture
def posix_reactor():
    """A reactor that is never run nor installed (for its listenTCP/adoptStreamPort)."""
    reactor = SelectReactor()
    yield reactor
    for reader in reactor.getReaders():
        reactor.removeReader(reader)
    reactor.waker.connectionLost(None)


def test_every_listening_call_of_the_bounded_reactor_builds_the_bounded_port(posix_reactor):
    bounded = bounded_accepts(posix_reactor, 9)
    ports = [bounded.listenTCP(0, protocol.ServerFactory(), backlog=5, interface="127.0.0.1")]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    try:
        ports.append(bounded.adoptStreamPort(listener.fileno(), socket.AF_INET,
                                             protocol.ServerFactory()))
        for port in ports:
            assert type(port) is BoundedPort and port.max_accepts == 9
            assert port.numberAccepts == 9  # startListening's 100, capped
            assert port.getHost().host == "127.0.0.1"
        assert ports[0].backlog == 5
        assert bounded.listenUDP.__self__ is posix_reactor  # everything else: the reactor's
    finally:
        for port in ports:
            posix_reactor.removeReader(port)
            port.socket.close()
        listener.close()


def test_the_bounded_reactor_wraps_the_tls_factory_like_twisted(posix_reactor):
    from twisted.protocols.tls import TLSMemoryBIOFactory

    pytest.importorskip("OpenSSL")
    from twisted.internet import ssl

    context = ssl.CertificateOptions()
    port = bounded_accepts(posix_reactor, 4).listenSSL(0, protocol.ServerFactory(), context,
                                                      interface="127.0.0.1")
    try:
        assert type(port) is BoundedPort and port.numberAccepts == 4
        assert isinstance(port.factory, TLSMemoryBIOFactory) and port._type == "TLS"
    finally:
        posix_reactor.removeReader(port)
        port.socket.close()


def test_a_memory_reactor_is_left_as_it_is():
    reactor = MemoryReactor()
    assert bounded_accepts(reactor, 5) is reactor


def test_the_listening_service_binds_at_privileged_start_and_knows_its_port(posix_reactor):
    from twisted.internet.error import CannotListenError

    from pybrid.proxy.clients.listen import client_listener

    listener = client_listener(posix_reactor, protocol.ServerFactory(), None, 0, "127.0.0.1",
                               7, per_pass=9)
    listener.privilegedStartService()
    port = listener.port
    assert type(port) is BoundedPort and port.max_accepts == 9 and port.backlog == 7
    taken = port.getHost().port
    other = client_listener(posix_reactor, protocol.ServerFactory(), f"tcp:{taken}:"
                            "interface=127.0.0.1", 0, "", 7, per_pass=9)
    with pytest.raises(CannotListenError):  # a port in use stops start-up there
        other.privilegedStartService()
    assert other.port is None
    listener.startService()  # does not bind a second time
    assert listener.port is port
    first, second = [], []
    listener.stopService().addBoth(first.append)
    listener.stopService().addBoth(second.append)  # the parent's stop after the proxy's own
    assert listener.port is None and first == second == []
    posix_reactor.runUntilCurrent()  # the port's connectionLost (callLater 0)
    assert first == [None] and second == [None]
    assert listener.port is None and not listener.running
    listener.privilegedStartService()  # started again: a new port
    assert listener.port is not None and listener.port is not port
    listener.stopService()
    posix_reactor.runUntilCurrent()


def test_a_listen_description_gets_the_backlog_and_the_cap(posix_reactor):
    from pybrid.proxy.clients.listen import client_listener

    listener = client_listener(posix_reactor, protocol.ServerFactory(),
                               "tcp:0:interface=127.0.0.1", 0, "", 33, per_pass=4)
    listener.privilegedStartService()
    port = listener.port
    assert type(port) is BoundedPort and port.max_accepts == 4 and port.backlog == 33
    listener.stopService()
    posix_reactor.runUntilCurrent()

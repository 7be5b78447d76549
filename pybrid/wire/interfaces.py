"""The Twisted interfaces pybrid's objects are typed with, where one interface is not enough.

A service's reactor does time, TCP, UDP and multicast; a client connection's transport is
written to and takes a streaming producer.  Twisted declares each of these as its own
interface, and Python's typing has no intersection, so the combinations are declared here as
zope interfaces extending Twisted's: a value typed :class:`INetworkReactor` may be passed
wherever an :class:`~twisted.internet.interfaces.IReactorTime` (or TCP, UDP…) is expected.
They are annotations only — nothing here is checked at run time, and an object handed in (the
global reactor, ``MemoryReactorClock``, a test's fake) needs only the methods it is asked for.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IReactorMulticast,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    ITCPTransport,
)


class INetworkReactor(IReactorTime, IReactorTCP, IReactorUDP, IReactorMulticast):
    """The reactor of a service: time, TCP (listen and connect), UDP and multicast."""


class IStreamTransport(ITCPTransport, IConsumer):
    """A TCP connection's transport as a sender uses it: write, close, register a producer."""




def host_port(address: IAddress) -> tuple[str, int]:
    """``(host, port)`` of the address a TCP or UDP port reports (``getHost()``/``getPeer()``):
    :class:`~twisted.internet.address.IPv4Address` or ``IPv6Address``, whose fields
    :class:`IAddress` does not declare."""
    inet: Any = address
    return str(inet.host), int(inet.port)


__all__ = ["INetworkReactor", "IStreamTransport", "host_port"]

"""``connect()``: open a control connection, authenticate, learn the topology.

The sequence is: TCP connect (``connect_timeout``; for TLS also the handshake, the server's
certificate verified: :mod:`pybrid.client.tls`), ``auth_request{bearer}`` when a token is
given, ``extract{recursive, specification}``; the carriers in that reply decide the topology
(see :mod:`pybrid.client.topology`).  Unlike the reference client, one connection serves both
discovery and the session.  The data lane is negotiated later, before the first run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import defer, endpoints, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.base import ReactorBase

from pybrid.client.computer import Computer
from pybrid.client.control import ClientFactory, ControlChannel, reply_body
from pybrid.client.errors import ClientError, ConnectError, RequestFailed
from pybrid.client.tls import (
    TlsClientFactory,
    TlsTarget,
    handshake_error,
    is_tls_description,
    parse_tls_description,
    tls_endpoint,
)
from pybrid.client.topology import find_carriers, parse_target
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import DEFAULT_PORT

DATA_LANES = ("auto", "udp", "tcp")
#: Defaults of :func:`connect` (pybrid.client.blocking bounds its wait with them).
CONNECT_TIMEOUT = 5.0
BUSY_TIMEOUT = 60.0


def connect(
    host: str | None = None,
    port: int = DEFAULT_PORT,
    *,
    reactor: Any,
    auth_token: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    request_timeout: float = 5.0,
    busy_retry: float = 0.2,
    busy_timeout: float = BUSY_TIMEOUT,
    data_lane: str = "auto",
    tls: bool = False,
    ca_cert: str | None = None,
) -> defer.Deferred[Computer]:
    """Connect to a device or proxy; fires with a :class:`~pybrid.client.computer.Computer`.

    ``host`` is a name or address (optionally ``"host:port"``) or a Twisted client endpoint
    string (``"tcp:host=127.0.0.1:port=5732"``; ``"tls:HOST:PORT[:ca=FILE]"`` or ``"ssl:…"``
    for TLS).  ``tls=True`` or a ``ca_cert`` (PEM file of the CA to trust instead of the
    platform's) connect with TLS; the server's certificate and host name are always verified
    (:mod:`pybrid.client.tls`).  ``data_lane`` is ``"auto"`` (UDP, falling
    back to TCP when refused), ``"udp"`` (fail when refused) or ``"tcp"`` (never ask for UDP).
    Errors: :class:`ConnectError`, :class:`AuthenticationError`, :class:`DeviceBusyError`,
    :class:`RequestTimeout`, :class:`ClientError` (no carrier in the reply).

    Without ``host`` the network is browsed for ``_lucijsonl._tcp`` services for a few seconds
    (:mod:`pybrid.discovery`; the ``discovery`` extra): the only one found is used, several
    raise :class:`~pybrid.discovery.DiscoveryError` listing them (proxies first).
    """
    if data_lane not in DATA_LANES:
        return defer.fail(ValueError(f"data_lane must be one of {DATA_LANES}, not {data_lane!r}"))
    if busy_retry <= 0 or busy_timeout < 0:
        return defer.fail(ValueError("busy_retry must be positive and busy_timeout >= 0"))
    problem = reactor_problem(reactor)
    if problem is not None:
        return defer.fail(ClientError(problem))
    if host is None:
        return defer.ensureDeferred(_discover_and_connect(
            reactor, auth_token, connect_timeout, request_timeout, busy_retry, busy_timeout,
            data_lane, tls, ca_cert,
        ))
    return defer.ensureDeferred(
        _connect(
            reactor, host, port, auth_token, connect_timeout, request_timeout, busy_retry,
            busy_timeout, data_lane, tls, ca_cert,
        )
    )


def _endpoint(reactor: Any, host: str, port: int, timeout: float, tls: bool = False,
              ca_cert: str | None = None) -> tuple[Any, str, bool]:
    """The endpoint, its label, and whether it is TLS."""
    if is_tls_description(host) or tls or ca_cert is not None:
        try:
            if is_tls_description(host):
                target = parse_tls_description(host, port)
                if ca_cert is not None:
                    target = TlsTarget(target.host, target.port, ca_cert)
            else:
                _desc, name, number = parse_target(host, port)
                if _desc is not None:
                    raise ValueError(f"{host!r}: TLS takes tls:HOST:PORT or a host name")
                target = TlsTarget(name, number, ca_cert)
            label = (f"[{target.host}]:{target.port}" if ":" in target.host
                     else f"{target.host}:{target.port}")
            return tls_endpoint(reactor, target, timeout), f"tls:{label}", True
        except ValueError as e:
            raise ConnectError(host, str(e)) from None
    endpoint, label = _plain_endpoint(reactor, host, port, timeout)
    return endpoint, label, False


def _plain_endpoint(reactor: Any, host: str, port: int, timeout: float) -> tuple[Any, str]:
    desc, name, number = parse_target(host, port)
    if desc is not None:
        try:
            return endpoints.clientFromString(reactor, desc), desc
        except (ValueError, TypeError, KeyError) as e:
            raise ConnectError(desc, f"bad endpoint description: {e}") from None
    label = f"[{name}]:{number}" if ":" in name else f"{name}:{number}"
    # An address needs no name resolution (which a reactor that is not running never finishes,
    # reported as "host name not found"): connect to it directly.
    if isIPAddress(name):
        return endpoints.TCP4ClientEndpoint(reactor, name, number, timeout=timeout), label
    if isIPv6Address(name):
        return endpoints.TCP6ClientEndpoint(reactor, name, number, timeout=timeout), label
    return endpoints.HostnameEndpoint(reactor, name, number, timeout=timeout), label


def reactor_problem(reactor: Any) -> str | None:
    """Why ``reactor`` can never answer in this thread, or None.

    A reactor not yet running is normal before ``reactor.run()`` (``task.react`` calls its
    function first), but not inside a running asyncio loop (Jupyter), where nothing will ever
    run it: the Deferred would never fire.
    """
    if not isinstance(reactor, ReactorBase) or reactor.running:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    name = type(reactor).__name__
    hint = "use pybrid.client.blocking.connect() instead (docs/client.md, \"Notebooks\")"
    if getattr(reactor, "_asyncioEventloop", None) is loop:
        return (f"the Twisted reactor ({name}) runs on this asyncio loop but was never started: "
                f"call reactor.startRunning(installSignalHandlers=False) once, or {hint}")
    return (f"the Twisted reactor ({name}) is not running, and this thread runs an asyncio "
            f"loop (Jupyter?) that does not drive it: the request would never be answered; "
            f"{hint}")


def _why(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        return "host name not found"
    if isinstance(exc, (error.TimeoutError, defer.TimeoutError, defer.CancelledError)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, error.NoRouteError):
        return "no route to host"
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return text or type(exc).__name__


async def _discover_and_connect(
    reactor: Any, auth_token: str | None, connect_timeout: float, request_timeout: float,
    busy_retry: float, busy_timeout: float, data_lane: str, tls: bool, ca_cert: str | None,
) -> Computer:
    from pybrid.discovery.browse import find_target  # pybrid.discovery imports client.errors

    target = await find_target(reactor)
    return await _connect(reactor, target.address, DEFAULT_PORT, auth_token, connect_timeout,
                          request_timeout, busy_retry, busy_timeout, data_lane,
                          tls or target.tls, ca_cert)


async def _connect(
    reactor: Any,
    host: str,
    port: int,
    auth_token: str | None,
    connect_timeout: float,
    request_timeout: float,
    busy_retry: float,
    busy_timeout: float,
    data_lane: str,
    tls: bool = False,
    ca_cert: str | None = None,
) -> Computer:
    endpoint, label, secure = _endpoint(reactor, host, port, connect_timeout, tls, ca_cert)
    control = ControlChannel(
        clock=reactor, peer=label, request_timeout=request_timeout, busy_retry=busy_retry,
        busy_timeout=busy_timeout,
    )
    factory = TlsClientFactory(control) if secure else ClientFactory(control)
    try:
        proto = await endpoint.connect(factory).addTimeout(connect_timeout, reactor)
    except (error.ConnectError, error.DNSLookupError, defer.TimeoutError, OSError) as e:
        raise ConnectError(label, _why(e, connect_timeout)) from None
    if isinstance(factory, TlsClientFactory):
        try:
            await factory.handshake.addTimeout(connect_timeout, reactor)
        except Exception as e:
            if control.lost is None:
                proto.transport.abortConnection()  # no TLS close_notify exchange to wait for
            raise handshake_error(label, e) from None
    try:
        if auth_token is not None:
            body = pb.AuthRequest(bearer=pb.BearerAuth(token=auth_token))
            await control.request("auth_request", body)
        env = await control.request(
            "extract_command", pb.ExtractCommand(recursive=True, specification=True)
        )
        if messages.kind_of(env) != "extract_response":
            raise RequestFailed(
                "extract_command", f"unexpected reply {messages.kind_of(env)}", label
            )
        module = reply_body(env).module
        carriers = find_carriers(module)
        if not carriers:
            raise ClientError(f"{label}: the extract reply lists no carrier")
    except BaseException:
        await control.close()
        raise
    peer, local = proto.transport.getPeer(), proto.transport.getHost()
    ip = (IPv4Address, IPv6Address)
    return Computer(
        reactor=reactor,
        control=control,
        target=label,
        carriers=tuple(carriers),
        specification=module,
        peer_host=peer.host if isinstance(peer, ip) else None,
        local_host=local.host if isinstance(local, ip) else None,
        data_lane_mode=data_lane,
    )

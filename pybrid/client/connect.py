"""``connect()``: open a control connection, authenticate, learn the topology.

The sequence is: TCP connect (``connect_timeout``), ``auth_request{bearer}`` when a token is
given, ``extract{recursive, specification}``; the carriers in that reply decide the topology
(see :mod:`pybrid.client.topology`).  Unlike the reference client, one connection serves both
discovery and the session.  The data lane is negotiated later, before the first run.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, endpoints, error
from twisted.internet.address import IPv4Address, IPv6Address

from pybrid.client.computer import Computer
from pybrid.client.control import ClientFactory, ControlChannel, reply_body
from pybrid.client.errors import ClientError, ConnectError, RequestFailed
from pybrid.client.topology import find_carriers, parse_target
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import DEFAULT_PORT

DATA_LANES = ("auto", "udp", "tcp")


def connect(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    reactor: Any,
    auth_token: str | None = None,
    connect_timeout: float = 5.0,
    request_timeout: float = 5.0,
    busy_retry: float = 0.2,
    busy_timeout: float = 60.0,
    data_lane: str = "auto",
) -> defer.Deferred[Computer]:
    """Connect to a device or proxy; fires with a :class:`~pybrid.client.computer.Computer`.

    ``host`` is a name or address (optionally ``"host:port"``) or a Twisted client endpoint
    string (``"tcp:host=127.0.0.1:port=5732"``).  ``data_lane`` is ``"auto"`` (UDP, falling
    back to TCP when refused), ``"udp"`` (fail when refused) or ``"tcp"`` (never ask for UDP).
    Errors: :class:`ConnectError`, :class:`AuthenticationError`, :class:`DeviceBusyError`,
    :class:`RequestTimeout`, :class:`ClientError` (no carrier in the reply).
    """
    if data_lane not in DATA_LANES:
        return defer.fail(ValueError(f"data_lane must be one of {DATA_LANES}, not {data_lane!r}"))
    if busy_retry <= 0 or busy_timeout < 0:
        return defer.fail(ValueError("busy_retry must be positive and busy_timeout >= 0"))
    return defer.ensureDeferred(
        _connect(
            reactor, host, port, auth_token, connect_timeout, request_timeout, busy_retry,
            busy_timeout, data_lane,
        )
    )


def _endpoint(reactor: Any, host: str, port: int, timeout: float) -> tuple[Any, str]:
    desc, name, number = parse_target(host, port)
    if desc is not None:
        try:
            return endpoints.clientFromString(reactor, desc), desc
        except (ValueError, TypeError, KeyError) as e:
            raise ConnectError(desc, f"bad endpoint description: {e}") from None
    label = f"[{name}]:{number}" if ":" in name else f"{name}:{number}"
    return endpoints.HostnameEndpoint(reactor, name, number, timeout=timeout), label


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
) -> Computer:
    endpoint, label = _endpoint(reactor, host, port, connect_timeout)
    control = ControlChannel(
        clock=reactor, peer=label, request_timeout=request_timeout, busy_retry=busy_retry,
        busy_timeout=busy_timeout,
    )
    factory = ClientFactory(control)
    try:
        proto = await endpoint.connect(factory).addTimeout(connect_timeout, reactor)
    except (error.ConnectError, error.DNSLookupError, defer.TimeoutError, OSError) as e:
        raise ConnectError(label, _why(e, connect_timeout)) from None
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

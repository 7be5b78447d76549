"""TLS for the client's control connection: verified by default.

Design note
-----------
A target is TLS when :func:`pybrid.client.connect` is given ``tls=True`` (``pybrid-run
--tls``), a CA file (``ca_cert=``, ``--ca-cert``), or an ``ssl:`` / ``tls:`` endpoint string:

* ``tls:HOST:PORT`` or ``ssl:HOST:PORT`` (positional), or ``ssl:host=HOST:port=PORT``;
* ``:ca=FILE.pem`` — trust the CA certificate(s) in that PEM file instead of the platform's
  trust store.  Backslash escapes a colon in a value (``ca=C\\:/certs/ca.pem``).

Twisted's own ``ssl:`` client endpoint verifies nothing unless told where the CA
certificates are; this module does not use it.  Every TLS connection here verifies the
server's certificate against the CA (the given file, else the platform's trust roots) **and**
checks that it names the host connected to (``service_identity``: DNS name or IP address),
with ``twisted.internet.ssl.optionsForClientTLS``.  There is no switch to turn verification
off.

The protocol is told when the handshake is over (``IHandshakeListener``), so ``connect`` waits
for it and reports a failed verification as such — "certificate verify failed … is the
CA right?" — instead of a connection that closes on the first request.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from pybrid.client.control import ClientFactory, ClientProtocol, ControlChannel
from pybrid.client.errors import ConnectError
from pybrid.version import install_hint

TLS_SCHEMES = ("ssl", "tls")
_KEYS = ("host", "port", "ca")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


@attrs.frozen
class TlsTarget:
    host: str
    port: int
    ca_cert: str | None = None


def is_tls_description(text: str) -> bool:
    return text.partition(":")[0].lower() in TLS_SCHEMES and ":" in text


def _fields(text: str) -> list[str]:
    out, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def parse_tls_description(text: str, default_port: int) -> TlsTarget:
    """``ssl:…`` / ``tls:…`` as a :class:`TlsTarget`; ValueError with a clear message."""
    scheme, *fields = _fields(text)
    if scheme.lower() not in TLS_SCHEMES:
        raise ValueError(f"not a TLS endpoint: {text!r}")
    positional: list[str] = []
    named: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            positional.append(field)
        elif key in _KEYS:
            named[key] = value
        else:
            raise ValueError(f"unknown option {key!r} in {text!r} (known: {', '.join(_KEYS)})")
    if len(positional) > 2:
        raise ValueError(f"too many fields in {text!r}: {scheme}:HOST:PORT[:ca=FILE]")
    host = named.get("host", positional[0] if positional else "")
    port_text = named.get("port", positional[1] if len(positional) > 1 else str(default_port))
    if not host:
        raise ValueError(f"no host in {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number in {text!r}, not {port_text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return TlsTarget(host.strip("[]"), port, named.get("ca") or None)


def _trust_root(ca_cert: str | None) -> Any:
    from twisted.internet import ssl

    if ca_cert is None:
        return ssl.platformTrust()
    try:
        data = open(ca_cert, "rb").read()
    except OSError as e:
        raise ValueError(f"cannot read the CA file {ca_cert}: {e.strerror or e}") from None
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise ValueError(f"{ca_cert} holds no PEM certificate")
    try:
        certs = [ssl.Certificate.loadPEM(b) for b in blocks]
    except Exception as e:
        raise ValueError(f"{ca_cert}: not a usable certificate ({e})") from None
    return ssl.trustRootFromCertificates(certs)


def tls_endpoint(reactor: Any, target: TlsTarget, timeout: float) -> Any:
    """A verifying TLS client endpoint for ``target`` (ValueError for a bad CA file)."""
    try:
        from twisted.internet import ssl
    except ImportError:  # pragma: no cover - Twisted always has the module
        raise ValueError("TLS needs pyOpenSSL: "
                         + install_hint("tls", "pyOpenSSL service_identity")) from None
    try:
        import OpenSSL  # noqa: F401
        import service_identity  # noqa: F401
    except ImportError:
        raise ValueError("TLS needs pyOpenSSL and service_identity: "
                         + install_hint("tls", "pyOpenSSL service_identity")) from None
    options = ssl.optionsForClientTLS(target.host, trustRoot=_trust_root(target.ca_cert))
    tcp = endpoints.HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
    return endpoints.wrapClientTLS(options, tcp)


@implementer(IHandshakeListener)
class TlsClientProtocol(ClientProtocol):
    """A client protocol that reports the end of its TLS handshake (or its failure)."""

    def __init__(self, channel: ControlChannel, handshake: defer.Deferred[None]) -> None:
        super().__init__(channel)
        self.handshake = handshake

    def handshakeCompleted(self) -> None:
        if not self.handshake.called:
            self.handshake.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.handshake.called:
            self.handshake.errback(reason)
        super().connectionLost(reason)


class TlsClientFactory(ClientFactory):
    """Builds the :class:`TlsClientProtocol` of a TLS connection; ``handshake`` fires with it."""

    def __init__(self, channel: ControlChannel) -> None:
        super().__init__(channel)
        self.handshake: defer.Deferred[None] = defer.Deferred()

    def buildProtocol(self, addr: Any) -> TlsClientProtocol:
        p = TlsClientProtocol(self.channel, self.handshake)
        p.factory = self
        return p


def handshake_error(label: str, failure: Failure | BaseException) -> ConnectError:
    """A failed TLS handshake as a :class:`ConnectError` saying why."""
    exc = failure.value if isinstance(failure, Failure) else failure
    detail = _openssl_reasons(exc) or str(exc) or type(exc).__name__
    if "certificate verify failed" in detail or type(exc).__name__ == "VerificationError":
        return ConnectError(label, f"TLS certificate verification failed ({detail}): is the "
                                   "CA file (--ca-cert) the one that signed the server's "
                                   "certificate, and does the certificate name this host?")
    if isinstance(exc, defer.TimeoutError):
        return ConnectError(label, "TLS handshake not completed in time: does the server "
                                   "speak TLS on this port?")
    return ConnectError(label, f"TLS handshake failed ({detail}): does the server speak TLS "
                               "on this port?")


def _openssl_reasons(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], list):
        parts = [str(e[-1]) for e in args[0] if isinstance(e, tuple) and e]
        return "; ".join(p for p in parts if p)
    return ""

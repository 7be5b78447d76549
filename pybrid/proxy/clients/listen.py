"""Where the client lane listens: ``--listen HOST --port N`` or a Twisted server endpoint string.

Design note
-----------
``--listen`` takes either an IP address (with ``--port``: the original form, plain TCP) or a
Twisted server endpoint description, parsed by
:func:`twisted.internet.endpoints.serverFromString`:

* ``tcp:5732`` (``tcp:5732:interface=127.0.0.1``) — plain TCP;
* ``ssl:5732:privateKey=key.pem:certKey=cert.pem`` — TLS (needs the ``tls`` extra:
  pyOpenSSL, service_identity); ``extraCertChain=`` and ``dhParameters=`` as Twisted has them;
* ``systemd:domain=INET:index=0`` — the socket systemd passed (socket activation: the unit's
  ``.socket`` binds the port, ``LISTEN_FDS``/``LISTEN_PID`` name the descriptors).

:func:`check_listen` validates a description when the options are parsed, with no reactor in
use, so a missing key file, a plugin that does not exist or an inherited descriptor that is
not there stops ``twistd`` with a clear message instead of a traceback at start-up.  TCP and
SSL descriptions without ``backlog=`` get the proxy's listen backlog.  :func:`listen_now`
binds synchronously (every endpoint above listens at once), so a port in use still stops
``twistd`` in ``privilegedStartService``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from pybrid.version import install_hint

#: Schemes whose descriptions take ``backlog=``.
_BACKLOG_SCHEMES = ("tcp", "ssl", "tcp6")


def is_endpoint(text: str) -> bool:
    """True for an endpoint description, False for an IP address (the original form)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return ":" in text
    return False


def scheme_of(description: str) -> str:
    return description.partition(":")[0].strip().lower()


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added when its scheme takes one and it has none."""
    if scheme_of(description) in _BACKLOG_SCHEMES and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


class _NoReactor:
    """Stands in for the reactor while a description is only being checked."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("endpoint checked without a reactor")


def check_listen(description: str) -> str:
    """A usable description, or ValueError with a message for the user."""
    scheme = scheme_of(description)
    if scheme == "ssl":
        try:
            import OpenSSL  # noqa: F401
            import service_identity  # noqa: F401
        except ImportError:
            raise ValueError(
                "--listen ssl:… needs pyOpenSSL and service_identity: "
                + install_hint("tls", "pyOpenSSL service_identity")) from None
    try:
        endpoints.serverFromString(_NoReactor(), description)
    except ValueError as e:
        raise ValueError(f"--listen {description!r}: {e}") from None
    except (KeyError, IndexError) as e:
        where = "no such descriptor was passed (LISTEN_FDS)" if scheme == "systemd" else e
        raise ValueError(f"--listen {description!r}: {where}") from None
    except (OSError, TypeError) as e:  # unreadable key or certificate, bad arguments
        raise ValueError(f"--listen {description!r}: {e}") from None
    except Exception as e:  # e.g. OpenSSL.crypto.Error for a file that is no PEM key
        raise ValueError(f"--listen {description!r}: {type(e).__name__}: {e}") from None
    return description


def listen_now(reactor: Any, description: str,
               factory: protocol.ServerFactory) -> IListeningPort:
    """Listen on ``description`` and return the port (raises what listening raised)."""
    endpoint = endpoints.serverFromString(reactor, description)
    outcome: list[Any] = []
    d: defer.Deferred[Any] = endpoint.listen(factory)
    d.addBoth(outcome.append)
    if not outcome:
        d.cancel()
        raise RuntimeError(f"--listen {description!r} did not listen at once")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    port: IListeningPort = result
    return port

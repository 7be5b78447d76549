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
SSL descriptions without ``backlog=`` get the proxy's listen backlog.
:class:`ListeningService` (a ``StreamServerEndpointService``) binds in
``privilegedStartService`` (every endpoint above listens at once), so a port in use still stops
``twistd`` there.

**Accepts per reactor pass.**  Twisted's ``tcp.Port`` accepts up to ``numberAccepts``
connections each time its socket is readable and adds 20 whenever a pass took that many, with
no ceiling: under a connect flood one pass took thousands, and the proxy held them all until
later passes read their EOFs (3 800 growing to 10 100 descriptors in the issue's flood).
:class:`BoundedPort` caps that figure (``--accepts-per-pass``); :func:`bounded_accepts` gives
the endpoints a reactor whose ``listenTCP``, ``listenSSL`` and ``adoptStreamPort`` build it, so
every scheme above gets the cap.  The rest of a burst waits in the kernel's listen queue
(``backlog``, 1 024 unless the description names one).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, tcp
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.posixbase import PosixReactorBase

from pybrid.version import install_hint
from pybrid.wire.observer import OneShotObserver

#: Connections accepted per reactor pass at most (Twisted starts at 100 and grows without bound).
DEFAULT_ACCEPTS_PER_PASS = 100
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


class ListeningService(StreamServerEndpointService):
    """The client lane's endpoint as a child service: it binds in ``privilegedStartService``
    (every endpoint above listens at once, so a port in use stops start-up there), knows its
    :attr:`port` from then on (the discovery advertiser needs it), and stopping it a second time
    waits for the first stop (the proxy stops listening before it closes its sessions)."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory,
                 what: str = "the client port") -> None:
        super().__init__(endpoint, factory)
        self.what = what
        #: The bound port while listening, else None.
        self.port: IListeningPort | None = None
        self._stopping: OneShotObserver[Any] | None = None

    def privilegedStartService(self) -> None:
        self._raiseSynchronously = True
        self._stopping = None
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._bound)
        if self.port is None:
            self._waitingForPort.cancel()
            raise RuntimeError(f"{self.what} did not listen at once")

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def stopService(self) -> defer.Deferred[Any]:
        if self._stopping is None:
            self._stopping = OneShotObserver()
            self.port = None
            if self._waitingForPort is None:
                self.running = False
                self._stopping.fire(None)
            else:
                super().stopService().addBoth(self._stopped)
        return self._stopping.when_fired()

    def _stopped(self, result: Any) -> None:
        self._waitingForPort = None
        if self._stopping is not None:
            self._stopping.fire(result)


def listen_now(reactor: Any, description: str, factory: IProtocolFactory) -> IListeningPort:
    """Listen on an endpoint description at once, outside a service tree (the status page);
    raises what listening raised."""
    listener = ListeningService(endpoints.serverFromString(reactor, description), factory,
                                f"{description!r}")
    listener.privilegedStartService()
    assert listener.port is not None
    return listener.port


def client_listener(reactor: Any, factory: IProtocolFactory, listen: str | None, port: int,
                    interface: str, backlog: int, per_pass: int) -> ListeningService:
    """``--listen`` (a description) or ``--interface``/``--port`` as a :class:`ListeningService`
    with accepts capped at ``per_pass`` (see the note) and ``backlog`` unless it names one."""
    bounded = bounded_accepts(reactor, per_pass)
    if listen is None:
        endpoint: IStreamServerEndpoint = endpoints.TCP4ServerEndpoint(
            bounded, port, backlog=backlog, interface=interface)
        return ListeningService(endpoint, factory, f"port {port}")
    endpoint = endpoints.serverFromString(bounded, with_backlog(listen, backlog))
    return ListeningService(endpoint, factory, f"--listen {listen!r}")


class BoundedPort(tcp.Port):
    """A ``tcp.Port`` that accepts at most ``max_accepts`` connections per reactor pass."""

    max_accepts: int = DEFAULT_ACCEPTS_PER_PASS
    _accepts: int = 1

    @property
    def numberAccepts(self) -> int:
        """How many ``doRead`` accepts this pass (Twisted's own attribute, capped)."""
        return self._accepts

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        self._accepts = max(1, min(int(value), self.max_accepts))


class _BoundedAccepts:
    """The reactor, but its TCP listening ports are :class:`BoundedPort` (see the note)."""

    def __init__(self, reactor: PosixReactorBase, per_pass: int) -> None:
        self._reactor = reactor
        self._per_pass = per_pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def _start(self, port: BoundedPort) -> BoundedPort:
        port.max_accepts = self._per_pass
        port.startListening()
        return port

    def listenTCP(self, port: int, factory: IProtocolFactory, backlog: int = 50,
                  interface: str = "") -> BoundedPort:
        return self._start(BoundedPort(port, factory, backlog, interface, self._reactor))

    def listenSSL(self, port: int, factory: IProtocolFactory, contextFactory: Any,
                  backlog: int = 50, interface: str = "") -> BoundedPort:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        bound = self.listenTCP(port, TLSMemoryBIOFactory(contextFactory, False, factory),
                               backlog, interface)
        bound._type = "TLS"
        return bound

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int,
                        factory: IProtocolFactory) -> IListeningPort:
        if addressFamily not in (socket.AF_INET, socket.AF_INET6):
            port: IListeningPort = self._reactor.adoptStreamPort(fileDescriptor, addressFamily,
                                                                 factory)
            return port
        return self._start(BoundedPort._fromListeningDescriptor(
            self._reactor, fileDescriptor, addressFamily, factory))


def bounded_accepts(reactor: Any, per_pass: int) -> Any:
    """``reactor`` for the endpoints / ``listenTCP`` with accepts capped at ``per_pass``
    (a reactor without Twisted's POSIX ports, such as a test's memory reactor, unchanged)."""
    if isinstance(reactor, PosixReactorBase):
        return _BoundedAccepts(reactor, per_pass)
    return reactor

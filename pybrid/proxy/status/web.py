"""The status page of ``twistd pybrid-proxy --status-port``: twisted.web on the proxy's reactor.

Design note
-----------
:class:`StatusService` is a child of the :class:`~pybrid.proxy.service.ProxyService`.  It binds
its TCP port in ``privilegedStartService`` (a port in use stops twistd at start-up, like the
client port) on ``--status-interface`` — ``127.0.0.1`` unless told otherwise, since the page
names peers and backends — and logs ``pybrid-proxy status page on http://HOST:PORT/``.  From
start to stop it also registers the :class:`~pybrid.proxy.status.events.RecentEvents` ring with
the global log publisher and samples the counters once a second for the rates.

Three read-only resources render one fresh :class:`~pybrid.proxy.status.model.ProxyStatus` each:

* ``/`` — an HTML page refreshing itself (no scripts, no external assets, everything escaped;
  a Content-Security-Policy forbids anything else);
* ``/status.json`` — the same snapshot as JSON;
* ``/metrics`` — Prometheus text format, through ``prometheus_client`` (the proxy's families
  plus ``process_*``/``python_*``; see :mod:`pybrid.proxy.status.metrics`);
* ``children`` given by the proxy: ``/live``, the live oscilloscope view and its WebSocket
  (:mod:`pybrid.live`).

With ``--auth`` every page needs the token (:mod:`pybrid.proxy.status.gate`: a login that
sets a cookie for people, ``Authorization: Bearer`` for scripts).  Requests are not written to
the log (the page refreshes every few seconds).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import generate_latest
from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, LogPublisher, globalLogPublisher
from twisted.web import http, pages, resource, server

from pybrid.proxy.clients.listen import listen_now
from pybrid.proxy.status import html as status_html
from pybrid.proxy.status import metrics as status_metrics
from pybrid.proxy.status.collect import StatusCollector, StatusProvider
from pybrid.proxy.status.events import RecentEvents
from pybrid.proxy.status.gate import Gate
from pybrid.proxy.status.model import ProxyStatus
from pybrid.startup import listen_failed
from pybrid.wire.interfaces import INetworkReactor, host_port

_SECURITY_HEADERS = {
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Content-Security-Policy": (b"default-src 'none'; style-src 'unsafe-inline'; "
                                 b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


class RenderedResource(resource.Resource):
    """A view rendered fresh on each GET by ``render() -> bytes``, served as ``content_type``;
    a rendering that fails is a 500 naming ``what`` (and logged), any subpath a 404."""

    isLeaf = True
    log = Logger()

    def __init__(self, render: Callable[[], bytes], content_type: str, what: str) -> None:
        super().__init__()
        self.render_body = render
        self.content_type = content_type
        self.what = what

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        try:
            body = self.render_body()
        except Exception:
            self.log.failure("status page: rendering {path} failed", path=request.path)
            request.setResponseCode(500)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return f"{self.what} could not be rendered; see the proxy log\n".encode()
        request.setHeader(b"Content-Type", self.content_type.encode("ascii"))
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return body


def snapshot_view(collector: StatusCollector, render: Callable[[ProxyStatus], str],
                  content_type: str) -> RenderedResource:
    """One view of a fresh snapshot: ``render(status) -> str``."""
    return RenderedResource(lambda: render(collector.snapshot()).encode("utf-8"), content_type,
                            "the status snapshot")


def _json(status: ProxyStatus) -> str:
    return json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n"


class _Root(resource.Resource):
    def getChild(self, path: bytes, request: server.Request) -> resource.IResource:
        return pages.notFound()


def status_resource(collector: StatusCollector, refresh: float = 2.0,
                    children: Mapping[bytes, resource.IResource] | None = None
                    ) -> resource.Resource:
    """``/``, ``/status.json``, ``/metrics`` and ``children`` (``/live``); else 404."""
    root = _Root()
    for name, child in (children or {}).items():
        root.putChild(name, child)
    page = snapshot_view(collector, lambda s: status_html.render(s, refresh),
                         status_html.CONTENT_TYPE)
    root.putChild(b"", page)
    root.putChild(b"index.html", page)
    root.putChild(b"status.json",
                  snapshot_view(collector, _json, "application/json; charset=utf-8"))
    registry = status_metrics.metrics_registry(collector.snapshot)
    root.putChild(b"metrics", RenderedResource(lambda: generate_latest(registry),
                                               status_metrics.CONTENT_TYPE, "the metrics"))
    return root


class QuietSite(server.Site):
    """A Site that writes no access log."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def url(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"http://[{host}]:{port}/" if is_v6 else f"http://{host}:{port}/"


class StatusService(service.Service):
    """Serves the status page of one proxy; see the module note."""

    log = Logger()

    def __init__(self, provider: StatusProvider, reactor: INetworkReactor, port: int,
                 interface: str = "127.0.0.1", refresh: float = 2.0,
                 publisher: LogPublisher | None = None,
                 events: RecentEvents | None = None,
                 children: Mapping[bytes, resource.IResource] | None = None,
                 token: str | None = None, listen: str | None = None) -> None:
        self.reactor = reactor
        #: A server endpoint string (``ssl:…``) to listen on instead of port and interface.
        self.listen = listen
        self.port_number = port
        self.interface = interface
        self.events = RecentEvents() if events is None else events
        self.publisher = globalLogPublisher if publisher is None else publisher
        self.collector = StatusCollector(provider, reactor, self.events)
        root = status_resource(self.collector, refresh, children)
        if token is not None:  # --auth: the token (bearer or login cookie) for every page
            root = Gate(root, token)
        self.site = QuietSite(root)
        self.port: IListeningPort | None = None
        self._observing = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.port is None:
            try:
                if self.listen is not None:  # an endpoint string, like the clients' --listen
                    self.port = listen_now(self.reactor, self.listen,
                                           self.site)  # type: ignore[arg-type]
                else:
                    self.port = self.reactor.listenTCP(self.port_number,
                                                       self.site,  # type: ignore[arg-type]
                                                       interface=self.interface)
            except CannotListenError as e:
                self.log.error("pybrid-proxy status page cannot listen: {error}", error=e)
                raise listen_failed("--status-port", e) from None
            self.log.info("pybrid-proxy status page on {url}", url=self.url)
        if not self._observing:
            self.publisher.addObserver(self.events)
            self._observing = True

    def startService(self) -> None:
        super().startService()
        self.privilegedStartService()
        self.collector.start()

    def stopService(self) -> Any:
        super().stopService()
        self.collector.stop()
        if self._observing:
            self.publisher.removeObserver(self.events)
            self._observing = False
        port, self.port = self.port, None
        return None if port is None else port.stopListening()

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("the status page is not listening")
        return host_port(self.port.getHost())

    @property
    def url(self) -> str:
        link = url(*self.address)
        return link.replace("http://", "https://", 1) if self.listen and \
            self.listen.lower().startswith("ssl:") else link

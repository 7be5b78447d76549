"""The proxy's service tree: backend lanes, run router, scheduler, dispatcher, front, listener.

Design note
-----------
:class:`ProxyService` is the composition root below ``makeService``: it builds every object
from a :class:`~pybrid.proxy.config.ProxyConfig` and the reactor, and is the lanes'
:class:`~pybrid.proxy.backend.LaneEvents`::

    client TCP ─ ClientProtocol ─ Front ─┬─ Scheduler (who is active; timeouts)
                                         ├─ cache (extract from the lanes' specifications)
                                         └─ Dispatcher ── BackendLane × N ── backend TCP
    backend UDP ─ DatagramIntake ─┐                 │ (run traffic on TCP, if UDP refused)
                                  └── RunRouter ────┘ ─ Session.deliver ─ ClientSender ─ client

The TCP port is bound in ``privilegedStartService`` (so a port already in use stops twistd at
start-up with a clear error) and its address logged as
``pybrid-proxy listening on HOST:PORT``; ``startService`` then starts the lanes, which connect
to their backends in the background — the proxy serves without waiting for them.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.auth import Authenticator
from pybrid.proxy.backend import BackendLane
from pybrid.proxy.cache import compose_extract
from pybrid.proxy.client import ClientFactory
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.dispatch import Dispatcher
from pybrid.proxy.front import Front
from pybrid.proxy.router import RunRouter
from pybrid.proxy.scheduler import Scheduler


class ProxyService(service.MultiService):
    """The whole proxy for one configuration; see the module note."""

    log = Logger()

    def __init__(self, config: ProxyConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        timing = config.timing
        self.router = RunRouter(debug=config.debug)
        self.lanes = [
            BackendLane(backend, reactor, self, timing, config.udp_rcvbuf, config.debug, index)
            for index, backend in enumerate(config.backends)
        ]
        self.dispatcher = Dispatcher(self.lanes, self.router, timing.stop_timeout, config.debug)
        self.scheduler = Scheduler(
            reactor, self.all_healthy, self.dispatcher.session_ended,
            config.max_sessions, config.session_timeout,
        )
        self.front = Front(
            reactor, self.scheduler, self.dispatcher.handle, self.extract,
            Authenticator(config.auth_token), timing.ping_window, config.debug,
            timing.nudge_delays,
        )
        self.factory = ClientFactory(self.front)
        self.port: Any = None
        self._health_waiters: list[defer.Deferred[None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.port is None:
            self.port = self.reactor.listenTCP(self.config.port, self.factory,
                                               interface=self.config.interface)
            address = self.port.getHost()
            self.log.info("pybrid-proxy listening on {host}:{port}", host=address.host,
                          port=address.port)

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self.privilegedStartService()
        names = ", ".join(lane.name for lane in self.lanes)
        self.log.info(
            "pybrid-proxy backends: {backends}; session timeout {timeout:g} s, "
            "at most {max} sessions, auth {auth}",
            backends=names, timeout=self.config.session_timeout, max=self.config.max_sessions,
            auth="on" if self.config.auth_token is not None else "off",
        )
        for lane in self.lanes:
            lane.start()

    def stopService(self) -> defer.Deferred[Any]:
        stops: list[defer.Deferred[Any]] = [defer.maybeDeferred(super().stopService)]
        port, self.port = self.port, None
        if port is not None:
            stops.append(defer.maybeDeferred(port.stopListening))
        for session in list(self.scheduler.sessions):
            self.scheduler.close(session, "pybrid-proxy is shutting down", "proxy stopping")
        stops.extend(lane.stop() for lane in self.lanes)
        return defer.gatherResults(stops)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port) of the client listener."""
        host = self.port.getHost()
        return str(host.host), int(host.port)

    # -- queries --------------------------------------------------------------------------

    def all_healthy(self) -> bool:
        return all(lane.healthy for lane in self.lanes)

    def when_healthy(self) -> defer.Deferred[None]:
        """Fires once every backend is ready (at once if they are)."""
        if self.all_healthy():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._health_waiters.append(d)
        return d

    def extract(self) -> pb.ExtractResponse:
        return compose_extract(self.lanes, self.config.wires)

    # -- LaneEvents -----------------------------------------------------------------------

    def lane_ready(self, lane: BackendLane) -> None:
        self.scheduler.promote()
        if self._health_waiters and self.all_healthy():
            waiters, self._health_waiters = self._health_waiters, []
            for d in waiters:
                d.callback(None)

    def lane_lost(self, lane: BackendLane, reason: str) -> None:
        self.scheduler.degrade(f"Cluster degraded: backend {lane.name} lost ({reason})")

    def lane_message(self, lane: BackendLane, env: pb.Envelope, payload: bytes) -> None:
        self.router.route(lane, env, payload)

    def lane_datagram(self, lane: BackendLane, data: bytes) -> None:
        self.router.route_datagram(lane, data)

"""The proxy's service tree: backend lanes, run router, scheduler, dispatcher, front, listener.

Design note
-----------
:class:`ProxyService` is the composition root below ``makeService``: it builds every object
from a :class:`~pybrid.proxy.config.ProxyConfig` and the reactor, and is the lanes'
:class:`~pybrid.proxy.backend.lane.LaneEvents`::

    client TCP ─ ClientProtocol ─ Front ─┬─ Scheduler (who is active; timeouts)
                                         ├─ cache (extract from the lanes' specifications)
                                         └─ Dispatcher ── BackendLane × N ── backend TCP
    backend UDP ─ DatagramIntake ─┐                 │ (run traffic on TCP, if UDP refused)
                                  └── RunRouter ────┘ ─ Session.deliver ─ ClientSender ─ client

Its parts that run are child services, started in this order and stopped together: the
lanes and the intake watch (:class:`~pybrid.wire.services.PartService`), the status page, the
client listener (:class:`~pybrid.proxy.clients.listen.ListeningService`, an endpoint service)
and the discovery advertiser (it needs the bound port).  The client port is bound in
``privilegedStartService`` (so a port already in use stops twistd at start-up with a clear
error) and its address logged as ``pybrid-proxy listening on HOST:PORT``; the lanes connect to
their backends in the background — the proxy serves without waiting for them.  Every object is
complete when built: the front and the dispatcher share one
:class:`~pybrid.proxy.clients.inflight.InFlight` count.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from pybrid.discovery.advertise import AdvertiseService
from pybrid.discovery.options import default_name
from pybrid.discovery.records import Advert
from pybrid.live.web import live_resource
from pybrid.live.ws import LiveHub
from pybrid.proto import pb
from pybrid.proxy.backend.cache import compose_extract
from pybrid.proxy.backend.health import ClusterHealth, degraded_text
from pybrid.proxy.backend.intake import IntakeWatch, intake_backlog
from pybrid.proxy.backend.lane import BackendLane
from pybrid.proxy.clients.auth import Authenticator
from pybrid.proxy.clients.front import Front
from pybrid.proxy.clients.inflight import InFlight
from pybrid.proxy.clients.listen import client_listener, scheme_of
from pybrid.proxy.clients.pending import PendingLimit
from pybrid.proxy.clients.protocol import ClientFactory
from pybrid.proxy.clients.scheduler import Scheduler
from pybrid.proxy.clients.session import Session
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.data.router import RunRouter
from pybrid.proxy.runs.dispatch import Dispatcher
from pybrid.proxy.status.model import ServiceStatus
from pybrid.proxy.status.web import StatusService
from pybrid.proxy.taps.base import fan
from pybrid.proxy.taps.common import lane_carriers
from pybrid.proxy.taps.live.child import LiveProcess
from pybrid.proxy.taps.live.tap import LiveTap
from pybrid.proxy.taps.multicast import MulticastTap, make_tap
from pybrid.proxy.taps.shm.options import make_shm_taps
from pybrid.startup import listen_failed
from pybrid.version import version
from pybrid.wire.interfaces import INetworkReactor, host_port
from pybrid.wire.observer import OneShotObserver
from pybrid.wire.services import PartService, Startable

#: Pending client connections the kernel queues for ``accept`` (Twisted's default is 50; the
#: kernel caps it at ``net.core.somaxconn``).  With 50, a burst of 1 000 clients overflows the
#: queue: connects are delayed by SYN retransmits and a few are reset by the kernel instead of
#: being told "Server overloaded" by the proxy (tests/integration/test_load_connections.py).
LISTEN_BACKLOG = 1024
#: What every session is told when the proxy stops (also the reason of its runs' ERRORs).
SHUTTING_DOWN = "pybrid-proxy is shutting down"


class ProxyService(service.MultiService):
    """The whole proxy for one configuration; see the module note."""

    log = Logger()

    def __init__(self, config: ProxyConfig, reactor: INetworkReactor) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        timing = config.timing
        #: The multicast monitor tap (``--monitor``), or None; the router feeds it.
        self.tap: MulticastTap | None = make_tap(reactor, config.monitor)
        #: ``--shm-tap`` shared-memory taps (pybrid.proxy.taps.shm), or None.
        self.shm = make_shm_taps(config, reactor, lambda: self.lanes,
                                 lambda: intake_backlog(self.lanes))
        #: ``--nats URL``: the JetStream export's bridge child and the feed of its link.
        self.nats: Any = None
        if config.nats is not None:
            from pybrid.proxy.taps.nats.child import NatsBridgeService
            from pybrid.proxy.taps.nats.feed import NatsFeed

            feed = NatsFeed(lambda: lane_carriers(self.lanes),
                            lambda: intake_backlog(self.lanes), config.shm_yield)
            self.nats = NatsBridgeService(config.nats, reactor, feed)
        #: The live view (``/live`` on the status page; pybrid.live), or None.
        self.live: LiveTap | None = None
        self.live_hub: LiveHub | None = None
        #: ``--live-process``: the child serving /live's viewers and its tap, or None.
        self.live_process: LiveProcess | None = None
        children = {}
        if config.status_port is not None:
            self.live = LiveTap(reactor)
            if config.live_process:
                self.live_process = LiveProcess(reactor, self.live)
            self.live_hub = LiveHub(self.live.store, reactor, tap=self.live,
                                    handoff=self.live_process)
            children[b"live"] = live_resource(self.live_hub)
        #: A run being registered releases the intakes' source latches
        #: (pybrid.proxy.backend.intake).  The router is the one way out to the taps.
        self.router = RunRouter(
            debug=config.debug, on_register=self._unlatch_intakes,
            tap=fan([None if self.shm is None else self.shm.feed,
                     None if self.nats is None else self.nats.feed, self.tap, self.live]))
        self.lanes = [
            BackendLane(backend, reactor, self, self.router, timing, config.udp_rcvbuf,
                        config.debug, index)
            for index, backend in enumerate(config.backends)
        ]
        #: Kernel drops on the intake sockets, polled every second (pybrid.proxy.backend.intake).
        self.intake_watch = IntakeWatch(reactor, self.lanes, self.router)
        self.health = ClusterHealth(self.lanes)
        self._healthy: OneShotObserver[None] = OneShotObserver()
        in_flight: InFlight[Session] = InFlight()
        self.dispatcher = Dispatcher(self.lanes, self.router, config.debug,
                                     clock=reactor, timing=timing, in_flight=in_flight)
        self.scheduler = Scheduler(
            reactor, self.all_healthy, self.dispatcher.session_ended,
            config.max_sessions, config.session_timeout, queued_grace=timing.queued_grace,
        )
        self.front = Front(
            reactor, self.scheduler, self.dispatcher.handle, self.extract,
            auth=Authenticator(config.auth_token), ping_window=timing.ping_window,
            debug=config.debug, nudge_delays=timing.nudge_delays,
            client_buffer=config.client_buffer, ping_linger=timing.ping_linger,
            fail_runs=self.dispatcher.fail_runs, overflow_close=timing.overflow_close,
            error_linger=timing.degrade_grace, pending=PendingLimit(config.max_pending),
            in_flight=in_flight,
        )
        self.factory = ClientFactory(self.front)
        if self.tap is not None:  # binds its socket: a TapSetupError stops start-up
            PartService(self.tap, privileged=True).setServiceParent(self)
        if self.shm is not None:  # the taps start before and stop after the lanes
            PartService(self.shm).setServiceParent(self)
        if self.live_process is not None:
            self.live_process.setServiceParent(self)
        parts: list[Startable] = [*self.lanes, self.intake_watch]
        for part in parts:
            PartService(part).setServiceParent(self)
        self.status_page: StatusService | None = None
        if self.nats is not None:
            self.nats.setServiceParent(self)
        if config.status_port is not None:  # --status-port (proxy.status.web)
            self.status_page = StatusService(self, reactor, config.status_port,
                                             config.status_interface,
                                             children=children, token=config.auth_token,
                                             listen=config.status_listen)
            self.status_page.setServiceParent(self)
        #: The client port (``--listen``, or ``--interface``/``--port``), bound at start-up.
        self.listener = client_listener(reactor, self.factory, config.listen, config.port,
                                        config.interface, LISTEN_BACKLOG,
                                        config.accepts_per_pass)
        self.listener.setServiceParent(self)
        if config.advertise is not None:  # --advertise (pybrid.discovery): after the listener
            AdvertiseService(reactor, self.advert, config.advertise.interfaces).setServiceParent(
                self)

    # -- lifecycle ------------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()  # binds the status page, then the client port
        except CannotListenError as e:
            self.log.error("pybrid-proxy cannot listen for clients: {error}", error=e)
            raise listen_failed("--listen/--port", e) from None
        host, port = self.address
        self.log.info("pybrid-proxy listening on {host}:{port}", host=host, port=port)
        listen = self.config.listen
        if listen is not None:
            self.log.info("client lane: {scheme} endpoint {listen}",
                          scheme=scheme_of(listen), listen=listen)

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()  # the lanes connect in the background
        names = ", ".join(lane.name for lane in self.lanes)
        self.log.info(
            "pybrid-proxy backends: {backends}; session timeout {timeout:g} s, "
            "at most {max} sessions, auth {auth}",
            backends=names, timeout=self.config.session_timeout, max=self.config.max_sessions,
            auth="on" if self.config.auth_token is not None else "off",
        )

    def stopService(self) -> defer.Deferred[Any]:
        """Stop listening; fail the active session's runs (ERROR per carrier), then tell
        every session and close it; wait (bounded) for those closes; then stop the lanes."""
        stopped = self.listener.stopService()  # no new clients (its second stop just waits)
        return defer.ensureDeferred(self._stop(stopped))

    async def _stop(self, listening: defer.Deferred[Any]) -> None:
        timing = self.config.timing
        active = self.scheduler.active
        if active is not None and self.dispatcher.fail_runs(active, SHUTTING_DOWN):
            # the reference client drops run states that arrive right before the close: give
            # it until it closes itself (at least degrade_grace, at most shutdown_grace)
            closed = active.sender.when_gone()
            await task.deferLater(self.reactor, timing.degrade_grace, lambda: None)
            await closed.addTimeout(max(0.0, timing.shutdown_grace - timing.degrade_grace),
                                    self.reactor).addErrback(lambda _f: None)
        sessions = list(self.scheduler.sessions)
        for session in sessions:
            self.scheduler.close(session, SHUTTING_DOWN, "proxy stopping")
        gone = defer.DeferredList([s.sender.when_gone() for s in sessions])
        await gone.addTimeout(timing.shutdown_flush, self.reactor).addErrback(lambda _f: None)
        if self.live_hub is not None:
            self.live_hub.stop()
        await defer.gatherResults([defer.maybeDeferred(super().stopService), listening])

    @property
    def port(self) -> IListeningPort | None:
        """The client port while listening."""
        return self.listener.port

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port) of the client listener."""
        if self.port is None:
            raise RuntimeError("the proxy is not listening")
        return host_port(self.port.getHost())

    # -- queries --------------------------------------------------------------------------

    def all_healthy(self) -> bool:
        """Every backend ready and their descriptions consistent (pybrid.proxy.backend.health)."""
        return self.health.ready()

    def when_healthy(self) -> defer.Deferred[None]:
        """Fires once every backend is ready (at once if they are)."""
        if self.all_healthy():
            return defer.succeed(None)
        return self._healthy.when_fired()

    def extract(self) -> pb.ExtractResponse:
        return compose_extract(self.lanes, self.config.wires)

    def status(self) -> ServiceStatus:
        """Every part's own status record, now (the status page's only source)."""
        listen = None
        if self.port is not None:
            host, port = host_port(self.port.getHost())
            listen = f"{host}:{port}"
        monitor = None
        if self.tap is not None:
            counters = self.tap.counters
            monitor = attrs.evolve(counters, groups=[attrs.evolve(g) for g in counters.groups])
        return ServiceStatus(
            listen=listen, auth=self.config.auth_token is not None,
            wires=tuple((f"{w.source.location}/{w.source.pin}",
                         f"{w.target.location}/{w.target.pin}") for w in self.config.wires),
            lanes=tuple(lane.status() for lane in self.lanes), router=self.router.status(),
            scheduler=self.scheduler.status(), front=self.front.status(),
            dispatch=self.dispatcher.status(), monitor=monitor,
            shm_taps=() if self.shm is None else self.shm.status(),
            nats=None if self.nats is None else self.nats.status(),
            live_process=None if self.live_process is None else self.live_process.status(),
            readiness=self.health.verdict(),
            recent_runs=self.dispatcher.coordinator.history.records(),
        )

    def advert(self) -> Advert:
        """What ``--advertise`` announces now (the carriers as the lanes learnt them)."""
        advertise = self.config.advertise
        port = self.address[1]
        macs = tuple(path.rsplit("/", 1)[-1] for lane in self.lanes for path in lane.carriers)
        return Advert(
            name=(advertise.name if advertise is not None and advertise.name
                  else default_name("proxy", port)),
            port=port, kind="proxy", version=version(), macs=macs,
            auth=self.config.auth_token is not None,
            tls=(self.config.listen or "").startswith(("ssl:", "tls:")),
        )

    def _unlatch_intakes(self) -> None:
        self.intake_watch.unlatch()

    # -- LaneEvents -----------------------------------------------------------------------

    def lane_ready(self, lane: BackendLane) -> None:
        self.health.check()
        self.scheduler.promote()
        if self._healthy.waiting and self.all_healthy():
            self._healthy.fire_waiting(None)  # healthy can end and come back

    def lane_lost(self, lane: BackendLane, reason: str) -> None:
        text = degraded_text(lane, reason)
        failed_runs = self.dispatcher.lane_lost(lane, text)  # its carriers fail the runs first
        self.scheduler.degrade(text, self.config.timing.degrade_grace if failed_runs else 0.0)

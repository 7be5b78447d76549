"""Backend lanes: the proxy's control connection to each device, its health and reconnects.

Design note
-----------
A :class:`BackendLane` owns everything about one backend device and is a small state machine,
the table :data:`~pybrid.proxy.backend.model.LANE`::

    STOPPED --start--> CONNECTING --connected--> HANDSHAKE --ready--> READY
                           ^   |                     |                  |
                           |   +--failed--+          +------lost-----+  +--lost--+
                           +--retry--- WAITING <-+-------------------+-----------+
    any --stop--> STOPPED     (the wait: backoff_delay(), 0.5 s, x1.5 per failure, at most 5 s)

The handshake (each connection, docs/protocol.md#reference-proxy): ``extract{recursive,
specification}`` — the reply is cached and serves every client's discovery —,
``reset{keep_calibration, overload_reset, sync}``, then ``udp_data_streaming_command`` naming
the lane's intake port; a refusal (316 or an error) means the device streams run traffic on the
control connection instead (``data_mode == "tcp"``).

Health: from the moment the connection is made, a generic ping goes out every
``ping_interval``; any frame from the backend counts as a sign of life.  After
``unhealthy_after`` seconds of silence the lane aborts the connection, which sends it to
WAITING and then reconnects.  Only READY lanes are healthy.  A backend that is down when
the proxy starts is just a lane in WAITING: the proxy starts anyway and serves once it is up.

A backend may itself be a proxy ("chaining", see docs/proxy.md): every carrier of every
``entity_specification`` item counts and its ``wiring_specification`` items are kept; a
``busy_response`` to the handshake's reset is asked again every ``busy_retry`` seconds (keeping
our place in its queue); its UDP refusal means TCP data; its unasked pongs ("nudges") are signs
of life; a lane in TCP data mode without a request for ``keepalive_interval`` seconds sends a
cached-extract request, so a proxy's idle timeout never closes it; an id-less
``error_message`` ("Cluster degraded …") is logged with its text.

Events go to a :class:`LaneEvents` (the service): ``lane_ready`` and ``lane_lost`` (a READY
lane went away).  Run traffic goes straight to a :class:`RunSink` (the router): datagrams from
the lane's intake socket, and run messages that arrive on the TCP lane.  Requests to the
backend get fresh ids
(:meth:`BackendLane.request`); replies are matched by a per-connection ``RequestTracker``.
Each connection has a generation number so that events of a stale connection are ignored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proto import pb
from pybrid.proxy.backend.cache import carrier_entities
from pybrid.proxy.backend.intake import DatagramIntake
from pybrid.proxy.backend.model import (
    LANE,
    BackendUnavailable,
    HandshakeError,
    LaneCounters,
    LaneState,
    LaneStatus,
    RequestTooLarge,
    RunSink,
    backoff_delay,
)
from pybrid.proxy.backend.protocol import BackendProtocol, LaneFactory
from pybrid.proxy.backendfile.model import Backend
from pybrid.proxy.config import Timing
from pybrid.wire import messages
from pybrid.wire.correlate import ConnectionGone, RequestTracker
from pybrid.wire.framing import MAX_FRAME_LENGTH
from pybrid.wire.interfaces import INetworkReactor, host_port
from pybrid.wire.paths import carrier_of
from pybrid.wire.periodic import Periodic


class LaneEvents(Protocol):
    """What the service is told of a lane: it became ready, or a ready lane went away."""

    def lane_ready(self, lane: BackendLane) -> None: ...

    def lane_lost(self, lane: BackendLane, reason: str) -> None: ...


def carrier_paths(items: list[pb.Item]) -> tuple[str, ...]:
    """Carrier entity paths (``/<MAC>``) in extract items, in order."""
    return tuple(carrier_of(entity.id) for entity in carrier_entities(items))


@attrs.define(eq=False)
class BackendLane:
    """One backend: connection, handshake, cached extract, health, reconnects, intake socket."""

    backend: Backend
    reactor: INetworkReactor
    events: LaneEvents
    router: RunSink
    timing: Timing = attrs.field(factory=Timing)
    rcvbuf: int = 4 << 20
    debug: bool = False
    index: int = 0
    state: LaneState = LaneState.STOPPED
    spec_items: list[pb.Item] = attrs.field(factory=list)
    #: ``wiring_specification`` items of the backend's own extract (a proxy's wires).
    wiring_items: list[pb.Item] = attrs.field(factory=list)
    carriers: tuple[str, ...] = ()
    data_mode: str | None = None
    intake: DatagramIntake | None = None
    counters: LaneCounters = attrs.field(factory=LaneCounters)
    _protocol: BackendProtocol | None = None
    _tracker: RequestTracker | None = None
    _generation: int = 0
    _last_heard: float = 0.0
    _last_request: float = 0.0
    _pinger: Periodic = attrs.field(init=False)
    _retry: IDelayedCall | None = None
    #: Failures since the lane was last READY (the backoff's attempt number).
    _failures: int = 0
    #: Random values in [0, 1) for the backoff's jitter (``Timing.reconnect_jitter``).
    jitter_source: Callable[[], float] = random.random

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._pinger = Periodic(self.reactor, self.timing.ping_interval, self._tick,
                                f"backend {self.name}: liveness tick")

    @property
    def name(self) -> str:
        return self.backend.address

    @property
    def healthy(self) -> bool:
        return self.state is LaneState.READY

    def status(self) -> LaneStatus:
        location = self.backend.location
        return LaneStatus(
            name=self.name, state=self.state.value, healthy=self.healthy,
            location=None if location is None else str(location), carriers=self.carriers,
            data_mode=self.data_mode, connects=self.counters.connects,
            intake=None if self.intake is None else self.intake.status(),
        )

    def _to(self, event: str) -> None:
        self.state = LANE.next(self.state, event)

    @property
    def has_spec(self) -> bool:
        return bool(self.spec_items)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.state is LaneState.STOPPED:
            self._failures = 0
            self._connect("start")

    def stop(self) -> defer.Deferred[None]:
        self._to("stop")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._stop_pinger()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.loseConnection()
        intake, self.intake = self.intake, None
        result = intake.stop() if intake is not None else None
        return defer.maybeDeferred(lambda: result)

    def _connect(self, event: str = "retry") -> None:
        self._retry = None
        self._generation += 1
        self._to(event)
        factory = LaneFactory(self, self._generation)
        self.reactor.connectTCP(
            self.backend.host, self.backend.port, factory, timeout=self.timing.connect_timeout
        )

    def connect_failed(self, generation: int, reason: Failure) -> None:
        if generation == self._generation and self.state is LaneState.CONNECTING:
            self._wait("failed", f"connect failed: {reason.getErrorMessage()}")

    def connection_made(self, proto: BackendProtocol) -> None:
        if proto.generation != self._generation or self.state is not LaneState.CONNECTING:
            proto.transport.loseConnection()
            return
        self._protocol = proto
        self.counters.connects += 1
        self._tracker = RequestTracker(self.reactor, self.timing.request_timeout, self.name)
        self._last_heard = self.reactor.seconds()
        self._to("connected")
        self._pinger.start()
        peer_host = proto.transport.getPeer().host
        local_host = proto.transport.getHost().host
        d = defer.ensureDeferred(self._handshake(proto, peer_host, local_host))
        d.addErrback(self._handshake_failed, proto)

    def connection_lost(self, proto: BackendProtocol, reason: Failure) -> None:
        if proto is not self._protocol:
            return
        self._protocol = None
        self._stop_pinger()
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.fail_all(ConnectionGone(f"connection to backend {self.name} lost"))
        was_ready = self.state is LaneState.READY
        if self.state is LaneState.STOPPED or proto.generation != self._generation:
            return  # stopped, or a connection from before a stop and start
        why = reason.getErrorMessage()
        self._wait("lost", f"connection lost: {why}")
        if was_ready:
            self.events.lane_lost(self, why)

    def _wait(self, event: str, why: str) -> None:
        self._to(event)
        self._failures += 1
        t = self.timing
        delay = backoff_delay(self._failures, t.reconnect_initial, t.reconnect_factor,
                              t.reconnect_max, t.reconnect_jitter,
                              self.jitter_source() if t.reconnect_jitter else 0.5)
        if self._failures == 1 or self.debug:
            self.log.warn("backend {backend}: {why}; reconnecting in {delay:.1f} s",
                          backend=self.name, why=why, delay=delay)
        elif self._failures % 20 == 0:
            self.log.info("backend {backend} still unavailable after {n} attempts ({why})",
                          backend=self.name, n=self._failures, why=why)
        self._retry = self.reactor.callLater(delay, self._connect)

    # -- handshake -----------------------------------------------------------------------

    async def _handshake(self, proto: BackendProtocol, peer_host: str, local_host: str) -> None:
        _, env = messages.request(
            "extract_command", pb.ExtractCommand(recursive=True, specification=True)
        )
        reply = await self.request(env)
        if messages.kind_of(reply) != "extract_response":
            raise HandshakeError(f"extract answered with {messages.describe(reply)}")
        module = reply.message_v1.extract_response.module
        items = [i for i in module.items if i.HasField("entity_specification")]
        if not items:
            raise HandshakeError("extract reply holds no entity specification")
        self.spec_items = items
        self.wiring_items = [i for i in module.items if i.HasField("wiring_specification")]
        self.carriers = carrier_paths(items)
        reply = await self._until_not_busy(proto, lambda: messages.request(
            "reset_command", pb.ResetCommand(keep_calibration=True, overload_reset=True, sync=True)
        )[1])
        if messages.kind_of(reply) != "reset_response":
            self.log.warn("backend {backend}: start-up reset answered with {reply}",
                          backend=self.name, reply=messages.describe(reply))
        self.data_mode = await self._negotiate_udp(peer_host, local_host)
        if proto is not self._protocol or self.state is not LaneState.HANDSHAKE:
            return
        self._last_request = self.reactor.seconds()
        self._to("ready")
        if self._failures > 1:
            self.log.info("backend {backend} is back after {n} attempts",
                          backend=self.name, n=self._failures)
        self._failures = 0
        self.log.info(
            "backend {backend} ready: carriers {carriers}, run data by {mode}",
            backend=self.name, carriers=", ".join(self.carriers) or "none", mode=self.data_mode,
        )
        self.events.lane_ready(self)

    async def _until_not_busy(self, proto: BackendProtocol, make: Any) -> pb.Envelope:
        """Send ``make()`` until the reply is not ``busy_response`` (module note)."""
        while True:
            reply = await self.request(make())
            if messages.kind_of(reply) != "busy_response":
                return reply
            self.counters.busy += 1
            if self.counters.busy == 1 or self.debug:
                self.log.info("backend {backend} is busy with another client; asking again "
                              "every {delay:g} s", backend=self.name, delay=self.timing.busy_retry)
            await task.deferLater(self.reactor, self.timing.busy_retry, lambda: None)
            if proto is not self._protocol:
                raise HandshakeError("connection closed while waiting for a busy backend")

    async def _negotiate_udp(self, peer_host: str, local_host: str) -> str:
        try:
            port = self._ensure_intake(local_host)
        except OSError as e:
            self.log.error("backend {backend}: cannot open a UDP intake on {host} ({error}); "
                           "run data will come by TCP", backend=self.name, host=local_host,
                           error=e)
            return "tcp"
        assert self.intake is not None
        self.intake.peer_host = peer_host
        _, env = messages.request("udp_data_streaming_command",
                                  pb.UdpDataStreamingCommand(port=port))
        reply = await self.request(env)
        if messages.kind_of(reply) == "success_message":
            return "udp"
        self.log.info("backend {backend} refused UDP streaming ({reply}); run data will come by "
                      "TCP", backend=self.name, reply=messages.describe(reply))
        return "tcp"

    def _ensure_intake(self, local_host: str) -> int:
        intake = self.intake
        if intake is not None and intake.interface == local_host and intake.port is not None:
            return host_port(intake.port.getHost())[1]
        if intake is not None:
            intake.stop()
        intake = DatagramIntake(self.name, self, self.router)
        self.intake = intake
        return intake.listen(self.reactor, local_host, self.rcvbuf)

    def _handshake_failed(self, failure: Failure, proto: BackendProtocol) -> None:
        if proto is not self._protocol:
            return None  # the connection went away; connection_lost handled it
        self.log.warn("backend {backend}: handshake failed: {error}",
                      backend=self.name, error=failure.getErrorMessage())
        proto.transport.abortConnection()
        return None

    # -- traffic -------------------------------------------------------------------------

    def request(self, env: pb.Envelope, timeout: float | None = None) -> defer.Deferred:
        """Send ``env`` (which the caller gives up) with a fresh id; fires with the reply."""
        proto, tracker = self._protocol, self._tracker
        if proto is None or tracker is None:
            return defer.fail(BackendUnavailable(f"backend {self.name} is not connected"))
        rid = messages.new_id()
        env.message_v1.id = rid
        payload = env.SerializeToString()
        if len(payload) > MAX_FRAME_LENGTH:  # the device would close the connection
            return defer.fail(RequestTooLarge(
                f"request too large: {len(payload)} bytes with the proxy's request id "
                f"(at most {MAX_FRAME_LENGTH})"))
        self._last_request = self.reactor.seconds()
        d = tracker.expect(rid, messages.kind_of(env), timeout)
        if self.debug:
            self.log.debug("to backend {backend}: {kind} (id {id})", backend=self.name,
                           kind=messages.kind_of(env), id=rid)
        proto.sendPayload(payload)
        return d

    def frame_received(self, proto: BackendProtocol, env: pb.Envelope, payload: bytes) -> None:
        if proto is not self._protocol:
            return
        self._last_heard = self.reactor.seconds()
        top = env.WhichOneof("kind")
        if top == "generic":
            which = env.generic.WhichOneof("kind")
            if which == "ping_response":
                self.counters.pongs += 1
            elif which == "ping_command":
                proto.sendEnvelope(messages.generic_pong())
            return
        assert self._tracker is not None
        if self._tracker.resolve(env):
            return
        kind = env.message_v1.WhichOneof("kind")
        if kind in messages.RUN_KINDS:
            self.router.route_message(self, env, payload)  # monitor tap, then route
            return
        self.counters.unsolicited += 1
        if kind == "error_message":
            self.log.warn("backend {backend} says: {error}", backend=self.name,
                          error=env.message_v1.error_message.description)
            return
        self.log.info("backend {backend}: unsolicited {kind} (id {id}) dropped",
                      backend=self.name, kind=kind, id=messages.request_id(env))

    def _tick(self) -> None:
        """Every ``ping_interval`` while connected (the pinger logs and survives errors)."""
        proto = self._protocol
        if proto is None:
            return
        silent = self.reactor.seconds() - self._last_heard
        if silent > self.timing.unhealthy_after:
            self.log.warn("backend {backend} unhealthy: silent for {silent:.1f} s; "
                          "dropping the connection", backend=self.name, silent=silent)
            proto.transport.abortConnection()
            return
        self.counters.pings += 1
        proto.sendEnvelope(messages.generic_ping())
        self._keepalive()

    def _keepalive(self) -> None:
        interval = self.timing.keepalive_interval
        if (interval <= 0 or self.state is not LaneState.READY or self.data_mode != "tcp"
                or self.reactor.seconds() - self._last_request < interval):
            return
        self.counters.keepalives += 1
        _, env = messages.request(
            "extract_command", pb.ExtractCommand(recursive=True, specification=True)
        )
        self.request(env).addErrback(lambda f: self.log.debug(
            "backend {backend}: keepalive unanswered ({error})", backend=self.name,
            error=f.getErrorMessage()))

    def _stop_pinger(self) -> None:
        self._pinger.stop()


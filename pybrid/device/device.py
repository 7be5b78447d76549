"""The simulated LUCIDAC/REDAC device: device-wide state and its in-process API.

Usage (tests, benchmarks)::

    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2, faults=Faults(drop=0.1)))
    port = dev.listen(0, interface="127.0.0.1")      # IListeningPort; dev.port is the TCP port
    ... dev.carrier_paths, dev.counters ...
    await dev.stop()

Device-wide state: the configuration items kept from ``config_command`` (AdcConfig channels per
carrier), the calibration flag, and the single active run (a device runs one computation at a
time; a second ``start_run_command`` meanwhile is refused).  Sessions (one per connection)
call in here; the run itself is a :class:`~pybrid.device.run.RunDriver`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from pybrid.device.config import DeviceConfig
from pybrid.device.counters import DeviceCounters
from pybrid.device.entities import Carrier, entity_tree
from pybrid.device.lanes import DatagramSender, UdpLane, open_udp
from pybrid.device.plan import KeptChannel, RunRejected, plan_run
from pybrid.device.protocol import DeviceFactory
from pybrid.device.run import RunDriver
from pybrid.device.session import CommandError, DeviceSession
from pybrid.proto import pb
from pybrid.wire.interfaces import INetworkReactor, host_port

log = Logger()

#: Opens a connected datagram socket: ``(local_host, peer_host, peer_port) -> sender``.
UdpOpener = Callable[[str, str, int], DatagramSender]


@attrs.define(eq=False)
class SimulatedDevice:
    """A simulated device: answers the device protocol on TCP and streams deterministic runs.

    ``reactor`` must provide time (``callLater``/``seconds``), and TCP/UDP for :meth:`listen`
    and the default ``udp_opener``.  Unit tests pass a ``task.Clock`` and their own
    ``udp_opener`` and feed protocols from :meth:`factory` through ``StringTransport``.
    """

    reactor: INetworkReactor
    config: DeviceConfig = attrs.field(factory=DeviceConfig)
    udp_opener: UdpOpener | None = None
    counters: DeviceCounters = attrs.field(factory=DeviceCounters)
    carriers: tuple[Carrier, ...] = attrs.field(init=False)
    calibrated: bool = attrs.field(init=False, default=False)
    run: RunDriver | None = attrs.field(init=False, default=None)
    _run_session: DeviceSession | None = attrs.field(init=False, default=None)
    _items: dict[tuple[str, str], pb.Item] = attrs.field(init=False, factory=dict)
    _kept: dict[int, tuple[KeptChannel, ...]] = attrs.field(init=False, factory=dict)
    _sessions: set[DeviceSession] = attrs.field(init=False, factory=set)
    _listening: IListeningPort | None = attrs.field(init=False, default=None)
    _started: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self.carriers = tuple(Carrier(i, mac) for i, mac in enumerate(self.config.macs()))
        self._started = self.reactor.seconds()

    # -- in-process API -------------------------------------------------------------------

    def factory(self) -> DeviceFactory:
        return DeviceFactory(self)

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> IListeningPort:
        """Listen for clients on TCP; returns the IListeningPort (``self.port`` is its number)."""
        if self._listening is not None:
            raise RuntimeError("the device is already listening")
        self._listening = self.reactor.listenTCP(port, self.factory(), interface=interface)
        log.info("simulated device listening on {host}:{port} with carriers {carriers}",
                 host=interface, port=self.port, carriers=list(self.carrier_paths))
        return self._listening

    @property
    def port(self) -> int:
        if self._listening is None:
            raise RuntimeError("the device is not listening")
        return host_port(self._listening.getHost())[1]

    @property
    def carrier_paths(self) -> tuple[str, ...]:
        return tuple(c.path for c in self.carriers)

    @property
    def sessions(self) -> frozenset[DeviceSession]:
        return frozenset(self._sessions)

    def adc_channels(self, carrier: int) -> tuple[KeptChannel, ...]:
        """The AdcConfig channels kept for carrier ``carrier`` (index)."""
        return self._kept.get(carrier, ())

    def stop(self, timeout: float = 5.0) -> defer.Deferred:
        """Stop listening, end the active run and close every connection; fires once all
        connections are closed (or after ``timeout`` seconds)."""
        if self.run is not None:
            self.run.abort("device stopping")
        waits = []
        for s in list(self._sessions):
            waits.append(s.closed)
            s.abort_connection()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            waits.append(defer.maybeDeferred(listening.stopListening))
        d = defer.gatherResults(waits, consumeErrors=True)
        d.addTimeout(timeout, self.reactor)
        return d.addCallback(lambda _: None)

    def uptime_micros(self) -> int:
        return max(0, int((self.reactor.seconds() - self._started) * 1e6))

    # -- called by sessions ---------------------------------------------------------------

    def session_started(self, session: DeviceSession) -> None:
        self._sessions.add(session)
        self.counters.connections += 1
        log.info("client {peer} connected", peer=session.peer_host, session=session.name)

    def session_gone(self, session: DeviceSession) -> None:
        self._sessions.discard(session)
        if self.run is not None and self._run_session is session:
            self.run.abort("client connection closed")
        log.info("client {peer} disconnected", peer=session.peer_host, session=session.name)

    def lane_paused(self, session: DeviceSession, paused: bool) -> None:
        run = self.run
        if run is None or self._run_session is not session or run.lane.kind != "tcp":
            return
        if paused:
            run.pause()
        else:
            run.resume()

    def open_udp_lane(self, local_host: str, peer_host: str, port: int) -> UdpLane:
        if self.udp_opener is not None:
            sender = self.udp_opener(local_host, peer_host, port)
        else:
            sender = open_udp(self.reactor, local_host, peer_host, port,
                              self.config.udp_send_buffer)
        return UdpLane(sender, self.counters, self.reactor, target=f"{peer_host}:{port}")

    def extract(self, cmd: pb.ExtractCommand) -> pb.ExtractResponse:
        resp = pb.ExtractResponse()
        items = resp.module.items
        if cmd.specification:
            items.add().entity_specification.entity.CopyFrom(entity_tree(self.carriers))
        if cmd.configuration:
            prefix = cmd.entity.path if cmd.HasField("entity") else ""
            if prefix and not prefix.startswith("/"):
                prefix = "/" + prefix
            for item in self._items.values():
                if item.entity.path.startswith(prefix):
                    items.add().CopyFrom(item)
        return resp

    def reset(self, cmd: pb.ResetCommand) -> None:
        self._items.clear()
        self._kept.clear()
        if not cmd.keep_calibration:
            self.calibrated = False

    def configure(self, cmd: pb.ConfigCommand) -> None:
        """Keep the items; AdcConfig channels go to the carrier owning the item's path.
        Checked completely before anything changes."""
        kept: dict[int, tuple[KeptChannel, ...]] = {}
        for item in cmd.module.items:
            if item.WhichOneof("kind") != "adc_config":
                continue
            path = item.entity.path
            owner = next((c for c in self.carriers if c.owns(path)), None)
            if owner is None:
                raise CommandError(f"adc_config for unknown entity path {path!r} "
                                   f"(carriers: {', '.join(self.carrier_paths)})")
            kept[owner.index] = tuple(
                KeptChannel(idx=ch.idx, gain=ch.gain, offset=ch.offset, probe=ch.probe)
                for ch in item.adc_config.channels
            )
        if cmd.reset_before:
            self._items.clear()
            self._kept.clear()
        for item in cmd.module.items:
            self._items[(item.entity.path, item.WhichOneof("kind") or "")] = item
        self._kept.update(kept)

    def prepare_run(self, session: DeviceSession, cmd: pb.StartRunCommand) -> RunDriver:
        if self.run is not None:
            raise CommandError(f"device busy: run {self.run.plan.run_id} is in progress")
        lane = session.data_lane
        cfg = self.config
        try:
            plan = plan_run(cmd, self.carriers, self._kept, dtype=cfg.dtype,
                            per_chunk=cfg.samples_per_chunk, stamp_entity=cfg.stamp_state_entity,
                            lane_limit=lane.limit)
        except RunRejected as e:
            raise CommandError(str(e)) from e
        driver = RunDriver(
            clock=self.reactor, plan=plan, lane=lane, counters=self.counters,
            on_end=self._run_ended, disconnect=session.close_connection, faults=cfg.faults,
            tick=cfg.tick, max_chunks_per_tick=cfg.max_chunks_per_tick, session=session.name,
        )
        if session.paused and lane.kind == "tcp":
            driver.pause()
        self.run = driver
        self._run_session = session
        return driver

    def stop_run(self) -> None:
        if self.run is not None:
            self.run.stop()

    def _run_ended(self, driver: RunDriver, outcome: str) -> None:
        if self.run is driver:
            self.run = None
            self._run_session = None


__all__ = ["SimulatedDevice", "UdpOpener"]

"""One client connection to the simulated device: request dispatch and the data lane.

:class:`DeviceSession` receives parsed requests from
:class:`~pybrid.device.protocol.DeviceProtocol` and answers them; the device-wide state
(kept configuration, the active run) lives in :class:`~pybrid.device.device.SimulatedDevice`.
The whole request table is :attr:`DeviceSession.HANDLERS`.  Replies carry the request's id;
a request without an id is executed but not answered (as the reference mock does).  Unknown
``*_command``/``*_request`` kinds get an ``error_message`` naming the kind; anything else a
client sends (responses, notifications) is logged and ignored.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import attrs
from google.protobuf.message import Message
from twisted.internet import defer
from twisted.logger import Logger

from pybrid.device.config import DeviceConfig
from pybrid.device.counters import DeviceCounters
from pybrid.device.lanes import DataLane, TcpLane, UdpLane
from pybrid.device.run import RunDriver
from pybrid.proto import pb
from pybrid.wire import messages

log = Logger()
_ids = itertools.count(1)


class CommandError(Exception):
    """A request the device refuses; the message becomes the ``error_message`` description."""


#: A handler's answer: reply kind, reply body (None = empty) and an action to run after the
#: reply has been written (a run starts only after its start_run_response).
Reply = tuple[str, Message | None, Callable[[], None] | None]


class DeviceCalls(Protocol):
    """What a session needs of its device (:class:`~pybrid.device.device.SimulatedDevice`):
    the device-wide state and the operations on it."""

    counters: DeviceCounters
    config: DeviceConfig
    calibrated: bool

    def uptime_micros(self) -> int: ...

    def session_started(self, session: DeviceSession) -> None: ...

    def session_gone(self, session: DeviceSession) -> None: ...

    def lane_paused(self, session: DeviceSession, paused: bool) -> None: ...

    def extract(self, cmd: pb.ExtractCommand) -> pb.ExtractResponse: ...

    def reset(self, cmd: pb.ResetCommand) -> None: ...

    def configure(self, cmd: pb.ConfigCommand) -> None: ...

    def open_udp_lane(self, local_host: str, peer_host: str, port: int) -> UdpLane: ...

    def prepare_run(self, session: DeviceSession, cmd: pb.StartRunCommand) -> RunDriver: ...

    def stop_run(self) -> None: ...


class Connection(Protocol):
    """What a session needs of its connection (:class:`~pybrid.device.protocol.DeviceProtocol`):
    a way to send Envelopes, and the transport for the TCP data lane and closing."""

    transport: Any

    def sendEnvelope(self, envelope: pb.Envelope) -> None: ...


@attrs.define(eq=False)
class DeviceSession:
    """Answers one client's requests and owns its data lane (TCP frames or UDP datagrams)."""

    device: DeviceCalls
    protocol: Connection
    peer_host: str
    local_host: str
    name: str = attrs.field(factory=lambda: f"dev-session-{next(_ids)}")
    udp_lane: UdpLane | None = None
    paused: bool = False
    closed: defer.Deferred = attrs.field(factory=defer.Deferred)
    _tcp_lane: TcpLane | None = None

    HANDLERS: ClassVar[dict[str, Callable[[DeviceSession, Any], Reply]]] = {}  # filled below

    # -- entry points from the protocol ---------------------------------------------------

    def request(self, kind: str, request_id: str | None, body: Any) -> None:
        counters = self.device.counters
        counters.requests += 1
        if self.device.config.debug:
            log.debug("request {kind} id={id} from {peer}: {body}", kind=kind, id=request_id,
                      peer=self.peer_host, body=str(body)[:500], session=self.name)
        handler = self.HANDLERS.get(kind)
        if handler is None:
            if kind.endswith(("_command", "_request")) or kind == "unknown":
                counters.unknown_requests += 1
                log.warn("unsupported request {kind} from {peer}", kind=kind,
                         peer=self.peer_host, session=self.name)
                self._reply(request_id, messages.error(
                    f"unsupported command: {kind}" if kind != "unknown" else
                    "message_v1 carries no known kind", id=request_id))
            else:
                log.debug("ignoring {kind} from {peer}", kind=kind, peer=self.peer_host,
                          session=self.name)
            return
        after = None
        try:
            reply_kind, reply_body, after = handler(self, body)
            env = messages.v1(reply_kind, reply_body, id=request_id)
        except CommandError as e:
            log.info("refused {kind}: {error}", kind=kind, error=str(e), session=self.name)
            env = messages.error(str(e), id=request_id)
        self._reply(request_id, env)
        if after is not None:
            after()

    def generic_ping(self) -> None:
        self.protocol.sendEnvelope(messages.generic_pong(self.device.uptime_micros()))

    def connection_lost(self) -> None:
        self.device.session_gone(self)
        if self.udp_lane is not None:
            self.udp_lane.close()
            self.udp_lane = None
        if not self.closed.called:
            self.closed.callback(None)

    def pause(self) -> None:
        self.paused = True
        self.device.lane_paused(self, True)

    def resume(self) -> None:
        self.paused = False
        self.device.lane_paused(self, False)

    # -- lanes ----------------------------------------------------------------------------

    @property
    def data_lane(self) -> DataLane:
        """UDP once negotiated, else frames on this connection."""
        if self.udp_lane is not None:
            return self.udp_lane
        if self._tcp_lane is None:
            self._tcp_lane = TcpLane(self.protocol.transport, self.device.counters)  # type: ignore[arg-type]
        return self._tcp_lane

    def close_connection(self) -> None:
        """Close after everything already written has been sent (the disconnect fault)."""
        transport: Any = self.protocol.transport
        if transport is not None:
            transport.loseConnection()

    def abort_connection(self) -> None:
        transport: Any = self.protocol.transport
        if transport is not None:
            transport.abortConnection()

    def _reply(self, request_id: str | None, env: pb.Envelope) -> None:
        if request_id is None:
            log.debug("request without id: no reply sent", session=self.name)
            return
        if self.device.config.debug:
            log.debug("reply id={id}: {reply}", id=request_id, reply=str(env)[:500],
                      session=self.name)
        self.protocol.sendEnvelope(env)

    # -- handlers -------------------------------------------------------------------------

    def _extract(self, cmd: pb.ExtractCommand) -> Reply:
        return "extract_response", self.device.extract(cmd), None

    def _reset(self, cmd: pb.ResetCommand) -> Reply:
        self.device.reset(cmd)
        resp = pb.ResetResponse()
        if cmd.HasField("entity"):
            resp.entity.CopyFrom(cmd.entity)
        return "reset_response", resp, None

    def _config(self, cmd: pb.ConfigCommand) -> Reply:
        self.device.configure(cmd)
        return "config_response", pb.ConfigResponse(), None

    def _calibration(self, cmd: pb.CalibrationCommand) -> Reply:
        self.device.calibrated = True
        return "calibration_response", None, None

    def _overload(self, cmd: Any) -> Reply:
        return "get_overload_status_response", pb.GetOverloadStatusResponse(
            status=pb.OverloadStatus(global_overload=False)), None

    def _ping(self, cmd: Any) -> Reply:
        return "success_message", None, None

    def _auth(self, cmd: Any) -> Reply:
        log.info("auth_request accepted: the simulated device has no authentication",
                 session=self.name)
        return "success_message", None, None

    def _udp(self, cmd: pb.UdpDataStreamingCommand) -> Reply:
        dev = self.device
        if dev.config.refuse_udp:
            dev.counters.udp_refused += 1
            return "udp_data_streaming_refused_response", pb.UdpDataStreamingRefusedResponse(
                reason="UDP data streaming is disabled on this simulated device (--refuse-udp)"
            ), None
        port = cmd.port
        if not 1 <= port <= 65535:
            raise CommandError(f"invalid UDP port {port}")
        try:
            lane = dev.open_udp_lane(self.local_host, self.peer_host, port)
        except Exception as e:
            raise CommandError(f"cannot open a UDP socket to {self.peer_host}:{port}: {e}") from e
        if self.udp_lane is not None:
            self.udp_lane.close()
        self.udp_lane = lane
        log.info("UDP data streaming to {target}", target=lane.target, session=self.name)
        return "success_message", None, None

    def _start_run(self, cmd: pb.StartRunCommand) -> Reply:
        driver = self.device.prepare_run(self, cmd)
        return "start_run_response", None, driver.start

    def _stop_run(self, cmd: Any) -> Reply:
        return "success_message", None, self.device.stop_run


DeviceSession.HANDLERS = {
    "extract_command": DeviceSession._extract,
    "reset_command": DeviceSession._reset,
    "config_command": DeviceSession._config,
    "calibration_command": DeviceSession._calibration,
    "get_overload_status_command": DeviceSession._overload,
    "ping_command": DeviceSession._ping,
    "auth_request": DeviceSession._auth,
    "udp_data_streaming_command": DeviceSession._udp,
    "start_run_command": DeviceSession._start_run,
    "stop_run_command": DeviceSession._stop_run,
}

__all__ = ["CommandError", "Connection", "DeviceCalls", "DeviceSession"]

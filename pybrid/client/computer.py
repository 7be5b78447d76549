"""A connected LUCIDAC/REDAC (directly or through a proxy) and its operations.

Design note
-----------
:class:`Computer` is what :func:`pybrid.client.connect` returns.  Every operation returns a
Deferred and goes through the connection's :class:`~pybrid.client.control.ControlChannel`, which
hides ``busy_response`` (retry every ``busy_retry`` s until ``busy_timeout``) and turns error
replies and silence into typed errors.

The data lane is negotiated once, lazily, before the first run (:meth:`negotiate_data_lane`):
a UDP port is bound on the local address of the TCP connection and announced with
``udp_data_streaming_command``; a ``udp_data_streaming_refused_response`` (316) or an
``error_message`` makes the computer fall back to TCP, where run notifications arrive as
ordinary frames.  Negotiating lazily keeps :func:`connect` quick when a proxy has queued the
session (a queued session may extract and ping, but gets ``busy_response`` for everything else).

Run notifications from both lanes meet in :meth:`_notification`, which routes them by
``Run.id`` to the :class:`~pybrid.client.run.RunCollector` of that run; notifications of runs
nobody waits for (a cancelled run, a previous session's data leaking through a proxy) are
counted in ``stale_notifications`` and dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.client.apb import config_items, load_apb
from pybrid.client.control import ControlChannel, reply_body
from pybrid.client.datalane import UdpDataLane, listen_data_lane
from pybrid.client.errors import ConnectionLost, DeviceBusyError, RequestFailed
from pybrid.client.fastdata import FastData
from pybrid.client.results import IC_TIME, Chunk, RunResult, RunSpec
from pybrid.client.run import DEFAULT_SETTLE, RunCollector
from pybrid.client.topology import Carrier
from pybrid.proto import pb
from pybrid.recording.sinks import MemorySink, Sink
from pybrid.wire import messages
from pybrid.wire.observer import OneShotObserver

log = Logger()

#: Seconds allowed for a calibration reply (the reference allows 10 s).
CALIBRATION_TIMEOUT = 10.0


@attrs.define(eq=False)
class Computer:
    """One connection to a device or proxy: topology, operations, runs; see the module note."""

    reactor: Any
    control: ControlChannel
    target: str
    carriers: tuple[Carrier, ...]
    specification: pb.Module
    peer_host: str | None
    local_host: str | None
    data_lane_mode: str = "auto"
    data_lane: str | None = None
    udp_refusal: str | None = None
    udp_lane: UdpDataLane | None = None
    stale_notifications: int = 0
    _udp_port: Any = None
    _negotiating: defer.Deferred[str] | None = None
    _negotiation: OneShotObserver[str] = attrs.field(factory=OneShotObserver)
    _runs: dict[str, RunCollector] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.control.on_notification = self._notification
        self.control.on_fast_data = self._fast_data
        self.control.on_fatal = self._fatal
        self.control.on_lost = self._lost

    # -- topology ------------------------------------------------------------------------------

    @property
    def topology(self) -> str:
        """``"direct"`` for one carrier, ``"proxy"`` for more (as the reference decides)."""
        return "direct" if len(self.carriers) == 1 else "proxy"

    @property
    def wiring(self) -> tuple[pb.WiringSpecification, ...]:
        return tuple(
            item.wiring_specification
            for item in self.specification.items
            if item.WhichOneof("kind") == "wiring_specification"
        )

    def carrier(self, mac: str) -> Carrier:
        for c in self.carriers:
            if c.mac == mac:
                return c
        raise KeyError(mac)

    @property
    def sync_master(self) -> str | None:
        """The carrier that leads synchronisation: the first by location (as the reference)."""
        if not self.carriers:
            return None
        return min(self.carriers, key=lambda c: c.sort_key).mac

    # -- plain requests -----------------------------------------------------------------------

    def _call(
        self, kind: str, body: Any, reply_kinds: tuple[str, ...], timeout: float | None = None
    ) -> defer.Deferred[Any]:
        def check(env: pb.Envelope) -> Any:
            got = messages.kind_of(env)
            if got not in reply_kinds:
                raise RequestFailed(kind, f"unexpected reply {got}", self.target)
            return reply_body(env)

        return self.control.request(kind, body, timeout=timeout).addCallback(check)

    def extract(
        self,
        entity: str | None = None,
        *,
        recursive: bool = True,
        specification: bool = True,
        configuration: bool = False,
        calibration: bool = False,
    ) -> defer.Deferred[pb.Module]:
        """The device's ``Module`` (specification and/or configuration items)."""
        cmd = pb.ExtractCommand(
            recursive=recursive,
            specification=specification,
            configuration=configuration,
            calibration=calibration,
        )
        if entity is not None:
            cmd.entity.path = entity
        d = self._call("extract_command", cmd, ("extract_response",))
        return d.addCallback(lambda r: r.module)

    def reset(
        self,
        *,
        keep_calibration: bool = True,
        overload_reset: bool = False,
        circuit_reset: bool = False,
        sync: bool = True,
        entity: str | None = None,
    ) -> defer.Deferred[Any]:
        """Reset the circuit configuration; fires with the ``ResetResponse``."""
        cmd = pb.ResetCommand(
            keep_calibration=keep_calibration,
            overload_reset=overload_reset,
            circuit_reset=circuit_reset,
            sync=sync,
        )
        if entity is not None:
            cmd.entity.path = entity
        return self._call("reset_command", cmd, ("reset_response", "success_message"))

    def configure(
        self,
        module: pb.Module | str | os.PathLike[str],
        *,
        reset_before: bool = False,
        sh_kludge: bool = False,
    ) -> defer.Deferred[Any]:
        """Send a circuit configuration: a ``Module``, or the path of an ``.apb`` file."""
        try:
            mod = module if isinstance(module, pb.Module) else load_apb(module)
        except Exception as e:
            return defer.fail(e)
        cmd = pb.ConfigCommand(reset_before=reset_before, sh_kludge=sh_kludge)
        cmd.module.CopyFrom(config_items(mod))
        return self._call("config_command", cmd, ("config_response", "success_message"))

    def calibrate(
        self,
        *,
        leader: str | None = None,
        math: bool = False,
        gain: bool = True,
        offset: bool = True,
        timeout: float = CALIBRATION_TIMEOUT,
    ) -> defer.Deferred[None]:
        """Run the device's calibration (gain and offset by default)."""
        on, off = pb.CalibrationConfig.Enabled, pb.CalibrationConfig.Disabled
        cfg = pb.CalibrationConfig(
            math=on if math else off, gain=on if gain else off, offset=on if offset else off
        )
        if leader is not None:
            cfg.leader.path = leader
        cmd = pb.CalibrationCommand(config=cfg)
        d = self._call(
            "calibration_command", cmd, ("calibration_response", "success_message"), timeout
        )
        return d.addCallback(lambda _r: None)

    def overload_status(self) -> defer.Deferred[pb.OverloadStatus]:
        """Which elements overloaded in the last run."""
        d = self._call(
            "get_overload_status_command", None, ("get_overload_status_response",)
        )
        return d.addCallback(lambda r: r.status)

    def ping(self, kind: str = "generic", timeout: float | None = None) -> defer.Deferred[float]:
        """Round-trip time in seconds: a generic ping, or ``kind="v1"`` for ``ping_command``."""
        return self.control.ping(kind, timeout)

    # -- data lane -----------------------------------------------------------------------------

    def negotiate_data_lane(self) -> defer.Deferred[str]:
        """Set up the data lane once; fires with ``"udp"`` or ``"tcp"``."""
        if self.data_lane is not None:
            return defer.succeed(self.data_lane)
        out = self._negotiation.when_fired()
        if self._negotiating is None:
            self._negotiating = defer.ensureDeferred(self._negotiate())
            self._negotiating.addBoth(self._negotiated)
        return out

    def _negotiated(self, result: Any) -> None:
        self._negotiating = None
        self._negotiation.fire_waiting(result)  # a failed negotiation may be tried again

    async def _negotiate(self) -> str:
        if self.data_lane_mode == "tcp" or self.peer_host is None or self.local_host is None:
            self.data_lane = "tcp"
            return "tcp"
        port, lane = listen_data_lane(
            self.reactor, self.local_host, self.peer_host, self._notification
        )
        try:
            number = port.getHost().port
            try:
                env = await self.control.request(
                    "udp_data_streaming_command", pb.UdpDataStreamingCommand(port=number)
                )
            except RequestFailed as e:
                refusal = e.description or "error_message"
            else:
                kind = messages.kind_of(env)
                if kind == "success_message":
                    self._udp_port, self.udp_lane, self.data_lane = port, lane, "udp"
                    log.info(
                        "{target}: run data by UDP on {host}:{port}",
                        target=self.target, host=self.local_host, port=number,
                    )
                    return "udp"
                refusal = (
                    env.message_v1.udp_data_streaming_refused_response.reason or "refused (316)"
                    if kind == "udp_data_streaming_refused_response"
                    else f"unexpected reply {kind}"
                )
        except BaseException:
            port.stopListening()
            raise
        port.stopListening()
        if self.data_lane_mode == "udp":
            raise RequestFailed("udp_data_streaming_command", refusal, self.target)
        self.udp_refusal = refusal
        self.data_lane = "tcp"
        log.info("{target}: UDP refused ({reason}); run data by TCP", target=self.target,
                 reason=refusal)
        return "tcp"

    # -- runs ----------------------------------------------------------------------------------

    def run(
        self,
        op_time: float,
        *,
        ic_time: float = IC_TIME,
        channels: int = 8,
        sample_rate: int = 10_000,
        sample_op: bool = True,
        sample_op_end: bool = True,
        halt_on_overload: bool = False,
        timeout: float | None = None,
        settle: float = DEFAULT_SETTLE,
        on_chunk: Callable[[Chunk], Any] | None = None,
        fetch_overload: bool = True,
        sink: Sink | None = None,
    ) -> defer.Deferred[RunResult]:
        """Start a run of ``op_time`` seconds and collect its samples; see ``docs/client.md``.

        ``sink`` receives the samples instead of RAM (e.g. an
        :class:`~pybrid.recording.hdf5.H5Recorder`); the result's ``samples`` are then empty.

        Cancelling the Deferred sends ``stop_run_command`` and stops collecting.
        """
        try:
            spec = RunSpec(
                op_time=op_time, ic_time=ic_time, channels=channels, sample_rate=sample_rate,
                sample_op=sample_op, sample_op_end=sample_op_end,
                halt_on_overload=halt_on_overload,
            )
        except ValueError as e:
            return defer.fail(e)
        seconds = spec.default_timeout if timeout is None else timeout
        return defer.ensureDeferred(
            self._run(spec, seconds, settle, on_chunk, fetch_overload, sink)
        )

    async def _run(
        self,
        spec: RunSpec,
        timeout: float,
        settle: float,
        on_chunk: Callable[[Chunk], Any] | None,
        fetch_overload: bool,
        sink: Sink | None = None,
    ) -> RunResult:
        lane = await self.negotiate_data_lane()
        run_id = messages.new_id()
        collector = RunCollector(
            self.reactor, run_id, spec, [c.mac for c in self.carriers], timeout, settle, on_chunk,
            sink=sink if sink is not None else MemorySink(),
        )
        self._runs[run_id] = collector
        stop = True
        try:
            try:
                await self.control.request(
                    "start_run_command", spec.command(run_id, self.sync_master), timeout=timeout
                )
            except (RequestFailed, DeviceBusyError):
                stop = False  # refused: nothing runs that needs stopping
                raise
            collector.accepted()
            await collector.done
            stop = False
            overload = await self._overload_after_run() if fetch_overload else None
            return collector.result(overload, lane)
        finally:
            collector.cancel()
            collector.done.addErrback(lambda _f: None)  # a failure nobody awaited any more
            self._runs.pop(run_id, None)
            if stop and self.control.connected:
                log.info("{target}: stopping run {run_id}", target=self.target, run_id=run_id)
                self.control.notify("stop_run_command", pb.StopRunCommand())

    async def _overload_after_run(self) -> pb.OverloadStatus | None:
        try:
            return await self.overload_status()
        except (RequestFailed, defer.TimeoutError) as e:
            log.warn("{target}: no overload status after the run: {error}",
                     target=self.target, error=e)
            return None

    def _notification(self, env: pb.Envelope) -> None:
        msg = env.message_v1
        body = getattr(msg, msg.WhichOneof("kind"))
        collector = self._runs.get(body.run.id)
        if collector is None:
            self.stale_notifications += 1
            return
        collector.envelope(env)

    def _fast_data(self, data: FastData) -> bool:
        """A data frame read by the fast path: to its run's collector.  False for a run nobody
        waits for, so the full path counts it as stale exactly as before."""
        collector = self._runs.get(data.run_id)
        if collector is None:
            return False
        collector.fast_data(data)
        return True

    # -- end of the connection -----------------------------------------------------------------

    def _fatal(self, description: str) -> None:
        for c in list(self._runs.values()):
            c.fail(ConnectionLost(f"{self.target}: {description}"))

    def _lost(self, reason: Failure) -> None:
        for c in list(self._runs.values()):
            c.fail(ConnectionLost(f"connection to {self.target} closed"))
        self._stop_udp()

    def _stop_udp(self) -> None:
        if self._udp_port is not None:
            port, self._udp_port = self._udp_port, None
            port.stopListening()

    def close(self) -> defer.Deferred[None]:
        """Close the connection (ends the session on a proxy) and release the UDP port."""
        self._stop_udp()
        return self.control.close()

    @property
    def connected(self) -> bool:
        return self.control.connected

"""``twistd -n pybrid-device``: the simulated device as a Twisted application.

All options are validated and converted here (``UsageError`` with a clear message); the
device only ever sees a :class:`~pybrid.device.config.DeviceConfig`.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from pybrid.commandline import TwistdOptions
from pybrid.device.config import DeviceConfig, Faults
from pybrid.device.signals import SAMPLE_DTYPES
from pybrid.discovery.advertise import AdvertiseService
from pybrid.discovery.options import AdvertiseConfig, AdvertiseOptionsMixin, default_name
from pybrid.discovery.records import Advert
from pybrid.logs import tag_syslog_priorities
from pybrid.startup import listen_failed
from pybrid.version import version
from pybrid.wire.framing import DEFAULT_PORT

log = Logger()


def _count(name: str) -> Any:
    def convert(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise usage.UsageError(f"--{name} must be an integer, not {value!r}") from None
        if n < 0:
            raise usage.UsageError(f"--{name} must not be negative")
        return n

    convert.__name__ = "int"
    return convert


def _float(name: str) -> Any:
    def convert(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise usage.UsageError(f"--{name} must be a number, not {value!r}") from None

    convert.__name__ = "float"
    return convert


class Options(AdvertiseOptionsMixin, TwistdOptions):
    """Command-line options of ``twistd pybrid-device``."""

    program = "pybrid-device"
    synopsis = "[options]"
    longdesc = (
        "A simulated LUCIDAC (1 carrier) or REDAC (N carriers) that answers the device protocol "
        "and streams deterministic samples (see docs/simulator.md) over UDP or TCP, optionally "
        "injecting faults."
    )

    optFlags = [
        ["refuse-udp", None, "Refuse UDP data streaming (reply 316); data then goes over TCP."],
        ["unstamped-states", None,
         "Send one state stream without 'entity' (like the reference mock) instead of one per "
         "carrier stamped with its path."],
        ["debug", None, "Log every request and reply."],
    ]

    optParameters = [
        ["port", "p", DEFAULT_PORT, "TCP port to listen on (0: any free port).", _count("port")],
        ["interface", "i", "127.0.0.1", "Address to listen on."],
        ["carriers", "c", 1, "Number of carriers (1: LUCIDAC-like; more: REDAC-like).",
         _count("carriers")],
        ["mac", None, "00-00-00-00-00-01", "MAC of carrier 0 (carrier i gets this + i)."],
        ["dtype", None, "f32", f"Sample type on the wire: {', '.join(SAMPLE_DTYPES)}."],
        ["samples-per-chunk", None, 100, "Samples per data message.", _count("samples-per-chunk")],
        ["tick", None, 0.002, "Shortest interval between emission timers (s).", _float("tick")],
        ["drop", None, 0.0, "Fraction of data chunks to withhold (fault).", _float("drop")],
        ["reorder", None, 0.0, "Fraction of data chunks sent after their successor (fault).",
         _float("reorder")],
        ["stall-after-chunks", None, None, "Pause emission after K chunks per carrier (fault).",
         _count("stall-after-chunks")],
        ["stall-seconds", None, 0.0, "Length of that pause (s).", _float("stall-seconds")],
        ["disconnect-after-chunks", None, None,
         "Close the client's connection after K chunks per carrier (fault).",
         _count("disconnect-after-chunks")],
        ["error-after-chunks", None, None,
         "Go OP -> ERROR after K chunks per carrier (fault).", _count("error-after-chunks")],
        ["seed", None, 0, "Seed of the fault RNG.", _count("seed")],
    ]

    def postOptions(self) -> None:
        if self["port"] > 65535:
            raise usage.UsageError("--port must be at most 65535")
        if self["carriers"] < 1:
            raise usage.UsageError("--carriers must be at least 1")
        self["advertise-config"] = self.advertise_config(self["interface"])
        try:
            faults = Faults(
                drop=self["drop"],
                reorder=self["reorder"],
                stall_after_chunks=self["stall-after-chunks"],
                stall_seconds=self["stall-seconds"],
                disconnect_after_chunks=self["disconnect-after-chunks"],
                error_after_chunks=self["error-after-chunks"],
                seed=self["seed"],
            )
            self["config"] = DeviceConfig(
                carriers=self["carriers"],
                first_mac=self["mac"],
                refuse_udp=bool(self["refuse-udp"]),
                faults=faults,
                dtype=self["dtype"],
                stamp_state_entity=not self["unstamped-states"],
                samples_per_chunk=self["samples-per-chunk"],
                tick=self["tick"],
                debug=bool(self["debug"]),
            )
        except ValueError as e:
            raise usage.UsageError(_option_names(str(e))) from None


def _option_names(message: str) -> str:
    """Name command-line options instead of config fields in validation messages."""
    for field, option in (
        ("stall_after_chunks", "--stall-after-chunks"),
        ("stall_seconds", "--stall-seconds"),
        ("samples_per_chunk", "--samples-per-chunk"),
        ("first_mac", "--mac"),
        ("drop", "--drop"),
        ("reorder", "--reorder"),
        ("carriers", "--carriers"),
        ("dtype", "--dtype"),
        ("tick", "--tick"),
    ):
        message = message.replace(field, option)
    return message


class DeviceService(service.MultiService):
    """Listens with one :class:`~pybrid.device.device.SimulatedDevice` while running; with
    ``advertise`` it is announced by mDNS too (a child started once the device listens)."""

    def __init__(self, config: DeviceConfig, port: int, interface: str,
                 reactor: Any = None, advertise: AdvertiseConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.advertise = advertise
        self.port_number = port
        self.interface = interface
        self._reactor = reactor
        self.device: Any = None

    def startService(self) -> None:
        from pybrid.device.device import SimulatedDevice

        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.device = SimulatedDevice(reactor=reactor, config=self.config)
        try:
            self.device.listen(self.port_number, interface=self.interface)
        except CannotListenError as e:
            Logger().error("pybrid-device cannot listen: {error}", error=e)
            raise listen_failed("--interface/--port", e) from None
        if self.advertise is not None and not self.services:
            AdvertiseService(reactor, self.advert, self.advertise.interfaces).setServiceParent(
                self)
        super().startService()

    def advert(self) -> Advert:
        port = self.device.port
        name = self.advertise.name if self.advertise is not None else None
        return Advert(name=name or default_name("device", port), port=port, kind="device",
                      version=version(), macs=self.config.macs())

    def stopService(self) -> Any:
        stopped = super().stopService()
        if self.device is not None:
            return defer.gatherResults([stopped, self.device.stop()])
        return stopped


def makeService(options: Options) -> DeviceService:
    tag_syslog_priorities()
    log.info("pybrid-device {version} (pybrid-twisted) starting", version=version())
    return DeviceService(options["config"], options["port"], options["interface"],
                         advertise=options.get("advertise-config"))


__all__ = ["DeviceService", "Options", "makeService"]

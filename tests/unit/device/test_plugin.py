"""``twistd pybrid-device`` options: validation and conversion into a DeviceConfig."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from pybrid.device.config import DeviceConfig, Faults
from pybrid.device.plugin import DeviceService, Options, makeService


def _parse(*argv: str) -> Options:
    o = Options()
    o.parseOptions(list(argv))
    return o


def test_defaults() -> None:
    o = _parse()
    assert (o["port"], o["interface"]) == (5732, "127.0.0.1")
    assert o["config"] == DeviceConfig()


def test_all_options_convert() -> None:
    o = _parse("--port", "0", "--interface", "127.0.0.2", "--carriers", "2", "--refuse-udp",
               "--drop", "0.25", "--reorder", "0.1", "--stall-after-chunks", "5",
               "--stall-seconds", "1.5", "--disconnect-after-chunks", "50",
               "--error-after-chunks", "40", "--seed", "9", "--debug", "--dtype", "i16",
               "--mac", "aa-bb-cc-dd-ee-00", "--unstamped-states", "--samples-per-chunk", "50",
               "--tick", "0.001")
    cfg = o["config"]
    assert cfg.carriers == 2 and cfg.refuse_udp and cfg.debug
    assert cfg.faults == Faults(drop=0.25, reorder=0.1, stall_after_chunks=5, stall_seconds=1.5,
                                disconnect_after_chunks=50, error_after_chunks=40, seed=9)
    assert cfg.dtype == "i16" and not cfg.stamp_state_entity
    assert cfg.macs() == ("AA-BB-CC-DD-EE-00", "AA-BB-CC-DD-EE-01")
    assert (cfg.samples_per_chunk, cfg.tick) == (50, 0.001)
    assert o["interface"] == "127.0.0.2"


@pytest.mark.parametrize("argv,message", [
    (["--drop", "2"], "--drop must be a fraction"),
    (["--drop", "x"], "--drop must be a number"),
    (["--carriers", "0"], "--carriers must be at least 1"),
    (["--carriers", "-1"], "--carriers must not be negative"),
    (["--port", "70000"], "--port must be at most 65535"),
    (["--stall-after-chunks", "3"], "needs a positive --stall-seconds"),
    (["--stall-seconds", "3"], "--stall-seconds needs --stall-after-chunks"),
    (["--mac", "00:11"], "--mac must look like"),
    (["--dtype", "f16"], "--dtype must be one of"),
    (["--error-after-chunks", "soon"], "--error-after-chunks must be an integer"),
])
def test_bad_options_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        _parse(*argv)


def test_service_listens_and_stops() -> None:
    reactor = MemoryReactorClock()
    o = _parse("--port", "4321", "--carriers", "2")
    assert isinstance(makeService(o), DeviceService)
    svc = DeviceService(o["config"], o["port"], o["interface"], reactor=reactor)
    svc.startService()
    port, _factory, _backlog, interface = reactor.tcpServers[0]
    assert (port, interface) == (4321, "127.0.0.1")
    assert svc.device.carrier_paths == ("/00-00-00-00-00-01", "/00-00-00-00-00-02")
    svc.stopService()
    assert not svc.running

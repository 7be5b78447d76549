"""Scenarios: ``pybrid-ping``, ``pybrid-extract`` and ``pybrid-reset`` against the reference mock
device (``.ref``, a subprocess): the commands a reference user reaches for work on its device."""

from __future__ import annotations

import pathlib
import sys

import pytest_twisted
from support.reference import spawn, start_ref_mock

from pybrid.client import load_apb
from pybrid.client.topology import find_carriers

BIN = pathlib.Path(sys.executable).parent
T = 60.0


async def command(reactor, name, *args):
    proc = spawn(reactor, name, [str(BIN / name), *map(str, args)])
    proc.ready.addErrback(lambda _f: None)
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    return proc.exit_code, proc.stdout.decode(), proc.stderr.decode()


@pytest_twisted.ensureDeferred
async def test_commands_against_the_reference_mock(reactor, ref_python, tmp_path):
    mock = await start_ref_mock(reactor, carriers=1)
    target = f"127.0.0.1:{mock.port}"
    apb = tmp_path / "mock.apb"
    try:
        ping = await command(reactor, "pybrid-ping", target, "-c", 2, "-i", 0.05)
        v1 = await command(reactor, "pybrid-ping", target, "-c", 1, "-W", 0.3, "--kind", "v1")
        extract = await command(reactor, "pybrid-extract", target, "-o", apb)
        reset = await command(reactor, "pybrid-reset", target)
    finally:
        await mock.stop()
    assert ping[0] == 0, ping
    assert "2 sent, 2 answered, 0 lost" in ping[1]
    # the reference mock does not answer v1 pings: a timeout, exit 5
    assert v1[0] == 5 and "no answer to v1 ping" in v1[2], v1
    assert "1 sent, 0 answered, 1 lost" in v1[1]
    assert extract[0] == 0, extract
    macs = [c.mac for c in find_carriers(load_apb(apb))]
    assert len(macs) == 1 and f"  {macs[0]}  " in extract[1]
    assert "CARRIER" in extract[1] and "M_BLOCK" in extract[1]
    assert reset[0] == 0, reset
    assert reset[1] == f"reset {target} ({macs[0]}; calibration kept)\n"

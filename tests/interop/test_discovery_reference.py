"""The unmodified reference client finds our advertised proxy by mDNS: its
``pybrid.redac.detect.detect_in_network`` lists it, ``pybrid lucidac`` without ``-h``
connects through it (``display`` and a ``run``), and so does lucipy's ``LUCIDAC()``.

The reference browses on every interface; to keep the tests on loopback, the subprocess
narrows python-zeroconf's ``AsyncZeroconf`` to ``interfaces=["127.0.0.1"]`` before importing
the reference (zeroconf's default argument, not the reference's code, is what changes).
"""

from __future__ import annotations

import json
import pathlib
import sys
import uuid

import pytest
import pytest_twisted
from support.optional import require
from support.reference import spawn

from pybrid.device import DeviceConfig, SimulatedDevice

require("zeroconf", "discovery")
pytestmark = pytest.mark.interop

TWISTD = str(pathlib.Path(sys.executable).with_name("twistd"))
LOOPBACK_ONLY = """
import zeroconf.asyncio as _za
_init = _za.AsyncZeroconf.__init__
def _on_loopback(self, *args, **kwargs):
    kwargs.setdefault("interfaces", ["127.0.0.1"])
    _init(self, *args, **kwargs)
_za.AsyncZeroconf.__init__ = _on_loopback
"""
DETECT = LOOPBACK_ONLY + """
import asyncio, json
from ipaddress import ip_network
from pybrid.redac.detect import detect_in_network
print("FOUND " + json.dumps(asyncio.run(detect_in_network(ip_network("127.0.0.0/8")))))
"""
LUCIPY = LOOPBACK_ONLY + """
import os
os.environ.pop("LUCIDAC_ENDPOINT", None)
from pybrid.lucipy import LUCIDAC
luci = LUCIDAC()  # no endpoint, no LUCIDAC_ENDPOINT: mDNS
print("ENDPOINTS", luci._endpoints)
luci.create_circuit()  # connects
print("CIRCUIT OK")
"""
CLI = LOOPBACK_ONLY + """
import sys
from pybrid.cli.base import entrypoint
sys.argv = ["pybrid", *sys.argv[1:]]
sys.exit(entrypoint())
"""


async def finished(reactor, name, argv):
    proc = spawn(reactor, name, argv)
    await proc.ended.addTimeout(90, reactor)
    return proc


@pytest_twisted.ensureDeferred
async def test_reference_detect_and_cli_find_and_use_our_proxy(reactor, ref_python, tmp_path):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    device.listen(0, interface="127.0.0.1")  # not advertised: the proxy is the only target
    name = f"test-proxy-{uuid.uuid4().hex[:8]}"
    proxy = spawn(reactor, "twistd-proxy",
                  [TWISTD, "-n", "--pidfile=", "pybrid-proxy", "-b", f"127.0.0.1:{device.port}",
                   "--listen", "127.0.0.1", "--port", "0", "--advertise",
                   "--advertise-name", name],
                  ready_pattern=rb"pybrid-proxy listening on [^\s:]+:(\d+)")
    try:
        await proxy.ready.addTimeout(30, reactor)
        await proxy.wait_for_output(b"zeroconf: advertising", 30)
        await proxy.wait_for_output(b"run data by udp", 15)

        detect = await finished(reactor, "ref-detect", [str(ref_python), "-c", DETECT])
        assert detect.exit_code == 0, detect.tail()
        line = next(x for x in detect.stdout.decode().splitlines() if x.startswith("FOUND "))
        found = json.loads(line.removeprefix("FOUND "))
        assert ["127.0.0.1", proxy.port, f"{name}._lucijsonl._tcp.local."] in found

        display = await finished(reactor, "ref-display",
                                 [str(ref_python), "-c", CLI, "lucidac", "display"])
        assert display.exit_code == 0, display.tail()
        mac = device.carrier_paths[0].strip("/")
        assert f"Carrier @ {mac}" in display.stdout.decode(), display.tail()
        assert f"'127.0.0.1', {proxy.port}" in display.stderr.decode() + display.stdout.decode()

        lucipy = await finished(reactor, "ref-lucipy", [str(ref_python), "-c", LUCIPY])
        assert lucipy.exit_code == 0, lucipy.tail()
        assert f"ENDPOINTS [('127.0.0.1', {proxy.port})]" in lucipy.stdout.decode()
        assert "CIRCUIT OK" in lucipy.stdout.decode(), lucipy.tail()

        out = tmp_path / "run.txt"
        run = await finished(reactor, "ref-run",
                             [str(ref_python), "-c", CLI, "lucidac", "run", "--op-time", "0.001",
                              "--sample-rate", "10000", "-o", str(out)])
        assert run.exit_code == 0, run.tail()
        assert "# Run result" in out.read_text()
        assert b"externally_halted = No" in out.read_bytes()
    finally:
        await proxy.stop()
        await device.stop()

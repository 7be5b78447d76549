"""The wheel (built from the sdist) installed in a fresh venv outside the source tree: the
generated code imports from the venv, twistd lists and runs both plugins, every command
prints our version, and the reference client completes a run through the installed proxy in
front of the installed simulated device."""

from __future__ import annotations

import re

import numpy as np
import pytest
import pytest_twisted
from support.packaging import clean_env, run
from support.reference import ChildProcess, start_ref_client

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]
T = 30.0


def test_the_generated_code_imports_from_the_installed_venv(installed, package_base, dists):
    site = installed.site_packages(package_base)
    done = run([installed.python, "-c",
                "import pybrid.proto.pybrid_pb2 as pb, pybrid.proxy.plugin as tap, pybrid, "
                "pybrid.version as v; print(pb.__file__); print(tap.__file__); "
                "print(list(pybrid.__path__)); print(v.version())"], cwd=package_base)
    pb_file, tap_file, paths, version = done.stdout.splitlines()
    assert pb_file == str(site / "pybrid" / "proto" / "pybrid_pb2.py")
    assert tap_file == str(site / "pybrid" / "proxy" / "plugin.py")
    assert paths == repr([str(site / "pybrid")])  # a namespace package, one portion here
    assert version == dists.version


def test_twistd_lists_both_plugins_and_prints_their_help(installed, package_base):
    listing = run([installed.bin("twistd"), "--help"], cwd=package_base)
    assert re.search(r"^\s+pybrid-proxy\s", listing.stdout, re.M), listing.stdout
    assert re.search(r"^\s+pybrid-device\s", listing.stdout, re.M), listing.stdout
    proxy = run([installed.bin("twistd"), "pybrid-proxy", "--help"], cwd=package_base)
    assert "--backend" in proxy.stdout and "--version" in proxy.stdout
    device = run([installed.bin("twistd"), "pybrid-device", "--help"], cwd=package_base)
    assert "--carriers" in device.stdout


@pytest.mark.parametrize("command", [
    ["twistd", "pybrid-proxy", "--version"],
    ["twistd", "pybrid-device", "--version"],
    ["pybrid-run", "--version"],
    ["pybrid-monitor", "--version"],
    ["pybrid-ping", "--version"],
    ["pybrid-extract", "--version"],
    ["pybrid-reset", "--version"],
], ids=lambda c: "-".join(c[:2]))
def test_every_command_prints_our_version(installed, package_base, dists, command):
    done = run([installed.bin(command[0]), *command[1:]], cwd=package_base)
    program = command[1] if command[0] == "twistd" else command[0]
    assert done.stdout.strip() == f"{program} (pybrid-twisted) {dists.version}"


def spawn_installed(reactor, venv, cwd, name, args, ready):
    proc = ChildProcess(reactor, name, re.compile(ready))
    argv = [str(venv.bin("twistd")), "-n", "--pidfile=", "--logfile=-", *args]
    env = clean_env({"PYTHONUNBUFFERED": "1"})
    reactor.spawnProcess(proc, argv[0], argv, env=env, path=str(cwd))
    return proc


def first_line(proc: ChildProcess) -> str:
    return bytes(proc.stdout).decode().splitlines()[0]


@pytest_twisted.ensureDeferred
async def test_the_reference_client_runs_through_the_installed_proxy_and_device(
        reactor, installed, package_base, dists, ref_python):
    device = spawn_installed(reactor, installed, package_base, "installed-device",
                             ["pybrid-device", "--interface", "127.0.0.1", "--port", "0",
                              "--carriers", "2"],
                             rb"listening on 127\.0\.0\.1:(\d+)")
    proxy = None
    try:
        await device.ready.addTimeout(T, reactor)
        proxy = spawn_installed(reactor, installed, package_base, "installed-proxy",
                                ["pybrid-proxy", "-b", f"127.0.0.1:{device.port}",
                                 "--listen", "127.0.0.1", "--port", "0"],
                                rb"pybrid-proxy listening on 127\.0\.0\.1:(\d+)")
        await proxy.ready.addTimeout(T, reactor)
        await proxy.wait_for_output(b"run data by", T)  # the backend is ready
        result = await start_ref_client(reactor, proxy.port, channels=4, sample_rate=100_000,
                                        op_time_ns=10_000_000).result()
        assert result.ok, result.describe()
        samples = result.carrier_samples()
        assert len(samples) == 2, result.describe()
        assert all(s.shape == (1000, 4) and np.isfinite(s).all() for s in samples.values())
    finally:
        codes = []
        for proc in (proxy, device):
            if proc is not None:
                codes.append(await proc.stop())
    assert f"pybrid-device {dists.version} (pybrid-twisted) starting" in first_line(device)
    assert f"pybrid-proxy {dists.version} (pybrid-twisted) starting" in first_line(proxy)
    assert all(code in (0, -15) for code in codes), (proxy.tail(), device.tail())
    assert b"Traceback" not in proxy.stdout + proxy.stderr, proxy.tail()

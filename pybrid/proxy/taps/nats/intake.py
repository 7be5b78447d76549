"""What the NATS bridge reads: the proxy's link (``--nats``) or a ``--shm-tap`` ring.

Both hand each message to the :class:`~.bridge.Bridge` (``take_link``, ``take``; typed
``Any`` here: the bridge imports this module) and keep its ``stats`` (``fed``: the intake is
ready) current.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from twisted.logger import Logger

from pybrid.proxy.taps.link import LinkError, split

_log = Logger()


async def read_link(bridge: Any, fd: int) -> None:
    """The proxy's link until it closes (the proxy is gone); then what is queued is
    published (for up to ``give_up`` seconds) and the bridge stops."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()
            self.transport: asyncio.BaseTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            try:
                for kind, head, body in split(self.buffer):
                    bridge.take_link(kind, head, body)
            except LinkError as e:  # not our proxy: stop (the proxy restarts the bridge)
                bridge.fail(f"the link: {e}")
                if self.transport is not None:
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if not closed.done():
                closed.set_result(None)

    try:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        await loop.connect_accepted_socket(Reader, sock=sock)
    except (OSError, ValueError) as e:  # not a stream socket: nothing to export from
        bridge.fail(f"--link-fd {fd} is not the proxy's link: {e}")
        return
    bridge.stats.fed = True
    bridge.emit_status()
    await closed
    bridge.stats.fed = False
    deadline = loop.time() + bridge.options.give_up
    while not bridge.settled() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    bridge.stop()


async def read_shm(bridge: Any) -> None:
    """Every frame of the ``--shm-tap`` ring this process creates (non-blocking reads, a short
    sleep when it is empty); a writer that died: wait for the next one."""
    from pybrid.monitor.shm import ShmReader

    o = bridge.options
    assert o.shm is not None
    while not bridge.stopping:
        try:
            reader = ShmReader(o.shm, payload_size=o.shm_size)
        except Exception as e:  # e.g. a killed bridge's segment the proxy has not removed
            bridge.stats.last_error = f"shm: {type(e).__name__}: {e}"
            _log.warn("nats bridge: cannot create {name}: {error}", name=o.shm, error=str(e))
            await asyncio.sleep(o.backoff)
            continue
        bridge.stats.shm_ready = bridge.stats.fed = True
        bridge.emit_status()
        try:
            while not bridge.stopping:
                got = 0
                while got < 4096:
                    frame = reader.read_frame(0)
                    if frame is None:
                        break
                    bridge.take(frame)
                    got += 1
                await asyncio.sleep(0 if got else 0.002)
        except Exception as e:  # WriterDead: the proxy died; wait for the next one
            bridge.stats.last_error = f"shm: {type(e).__name__}: {e}"
            _log.warn("nats bridge: shm reader stopped: {error}", error=str(e))
            await asyncio.sleep(o.backoff)
        finally:
            bridge.stats.shm_ready = bridge.stats.fed = False
            reader.close()

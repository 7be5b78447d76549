"""Intake sockets accept only their device (issue 15, point 2), on real loopback sockets.

Once the device's source is latched the intake socket is connected to it: forged datagrams
from other local ports never reach the router, and a garbage flood on the intake port costs
the real stream nothing.  Floods are bounded in count and time.
"""

from __future__ import annotations

import socket
import time

import pytest_twisted
from support.waiting import until

from pybrid.proxy.backend.intake import DatagramIntake

DEVICE_DATA = b"device:"
FLOOD = 20_000


class Sink:
    """The router's part: the device's datagrams are 'run traffic', the rest is not."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.offered = 0

    def route_datagram(self, source, data):
        self.offered += 1
        if data.startswith(DEVICE_DATA):
            self.got.append(data)
            return True
        return False


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest_twisted.ensureDeferred
async def test_forged_datagrams_from_other_local_ports_never_reach_the_router(reactor):
    sink = Sink()
    intake = DatagramIntake("b", None, sink)
    port = intake.listen(reactor, "127.0.0.1", 1 << 20)
    intake.peer_host = "127.0.0.1"
    device, forger = udp_socket(), udp_socket()
    try:
        device.sendto(DEVICE_DATA + b"0", ("127.0.0.1", port))
        await until(reactor, lambda: intake.latched is not None, "the latch", seconds=10)
        assert intake.latched == device.getsockname()
        assert intake.counters.connects == 1
        offered = sink.offered
        for i in range(100):
            forger.sendto(DEVICE_DATA + b"forged %d" % i, ("127.0.0.1", port))
        device.sendto(DEVICE_DATA + b"1", ("127.0.0.1", port))
        await until(reactor, lambda: len(sink.got) == 2, "the device's second datagram",
                    seconds=10)
        assert sink.got == [DEVICE_DATA + b"0", DEVICE_DATA + b"1"]
        assert sink.offered == offered + 1  # the kernel kept the forged ones out
        assert intake.counters.foreign == 0
        # released (a new run or negotiation): another source may latch again
        intake.unlatch()
        forger.sendto(DEVICE_DATA + b"new source", ("127.0.0.1", port))
        await until(reactor, lambda: intake.latched == forger.getsockname(), "the new latch",
                    seconds=10)
        assert intake.counters.connects == 2
    finally:
        device.close()
        forger.close()
        await intake.stop()


@pytest_twisted.ensureDeferred
async def test_a_garbage_flood_on_the_intake_port_costs_the_real_stream_nothing(reactor):
    sink = Sink()
    intake = DatagramIntake("b", None, sink)
    port = intake.listen(reactor, "127.0.0.1", 1 << 20)
    intake.peer_host = "127.0.0.1"
    device, flooder = udp_socket(), udp_socket()
    flooder.setblocking(False)
    stream = 2000
    try:
        device.sendto(DEVICE_DATA + b"first", ("127.0.0.1", port))
        await until(reactor, lambda: intake.latched is not None, "the latch", seconds=10)
        garbage = b"\xff" * 1400
        deadline = time.monotonic() + 5.0
        sent = 0
        for i in range(stream):  # the real stream, interleaved with a bounded flood
            device.sendto(DEVICE_DATA + b"%06d" % i + b"\x00" * 1400, ("127.0.0.1", port))
            for _ in range(FLOOD // stream):
                try:
                    flooder.sendto(garbage, ("127.0.0.1", port))
                    sent += 1
                except BlockingIOError:
                    break
            if i % 50 == 49:  # let the reactor read (the device does not outrun the kernel)
                await until(reactor, lambda i=i: len(sink.got) >= i - 100, "the stream",
                            seconds=10, step=0.001)
            if time.monotonic() > deadline:
                break
        await until(reactor, lambda: len(sink.got) == stream + 1, "the whole real stream",
                    seconds=10)
        assert sent > 0
        assert sink.offered == stream + 1  # no garbage datagram reached the process
        assert intake.counters.foreign == 0
        drops = intake.poll_drops()
        assert drops == 0
    finally:
        device.close()
        flooder.close()
        await intake.stop()

"""Client faults on real sockets (issue 8, part 2), and the real-socket garbage test (part 1).

* A client killed (SIGKILL, a ``pybrid-run`` child process) in the middle of a run: the proxy
  stops the run on the device, and the next client sees only its own run — exact samples, no
  stale notifications.
* Garbage then a real run: several connections send hostile bytes (random frames, huge and
  truncated lengths, over-long varints, requests grown past the device's frame limit) to a real
  proxy; then the client API runs through it and gets every sample.
* A client that stops reading is covered by ``tests/integration/test_proxy_slow_client.py``
  (the proxy's bounded per-client queue, ``--client-buffer``).
"""

from __future__ import annotations

import gc
import pathlib
import random
import sys

import numpy as np
import pytest_twisted
from support.fuzz_inputs import max_size_envelope, random_piece
from support.fuzz_proxy import LogCapture
from support.load_peers import InProcessProxy
from support.reference import spawn
from support.waiting import until
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice, expected_decoded
from pybrid.wire.framing import frame

T = 30.0
PYBRID_RUN = str(pathlib.Path(sys.executable).with_name("pybrid-run"))


def check_exact(result, channels, count):
    [mac] = list(result.carriers)
    got = result[mac]
    np.testing.assert_array_equal(got.samples, expected_decoded(0, channels, 0, count))
    assert got.complete and got.chunk_gaps == 0 and got.duplicate_chunks == 0


@pytest_twisted.ensureDeferred
async def test_a_killed_client_leaves_nothing_for_the_next_one(reactor, tmp_path):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-31"))
    device.listen(0, interface="127.0.0.1")
    victim = None
    log = LogCapture().__enter__()
    try:
        async with InProcessProxy(reactor, [device.port]) as service:
            port = service.address[1]
            victim = spawn(reactor, "pybrid-run", [
                PYBRID_RUN, "127.0.0.1", "-p", str(port), "-t", "5", "-n", "4", "-r", "20000",
                "-o", str(tmp_path / "victim.npz"), "--no-progress", "-q"])
            await until(reactor, lambda: device.counters.chunks_sent >= 50, "the victim's run")
            victim.signal("KILL")
            await victim.ended.addTimeout(T, reactor)
            await until(reactor, lambda: service.scheduler.active is None, "the session's end")
            await until(reactor, lambda: device.counters.runs_stopped
                        + device.counters.runs_aborted >= 1, "the victim's run to stop")
            computer = await connect("127.0.0.1", port, reactor=reactor)
            try:
                result = await computer.run(0.05, channels=3, sample_rate=20_000).addTimeout(
                    T, reactor)
                check_exact(result, 3, 1000)
                assert computer.stale_notifications == 0
                assert result.malformed == 0
            finally:
                await computer.close()
            assert service.dispatcher.counters.stop_runs >= 1
        gc.collect()
        assert not log.failures, log.describe()
    finally:
        log.__exit__()
        if victim is not None:
            await victim.stop()
        await device.stop()


class _Garbage(protocol.Protocol):
    def __init__(self) -> None:
        self.closed: defer.Deferred = defer.Deferred()

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_garbage_from_clients_then_a_real_client_runs(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-32"))
    device.listen(0, interface="127.0.0.1")
    rnd = random.Random(2024)
    sent = 0
    try:
        with LogCapture() as log:
            async with InProcessProxy(reactor, [device.port], max_sessions=64) as service:
                port = service.address[1]
                endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
                for _round in range(40):
                    conn = await endpoint.connect(protocol.Factory.forProtocol(_Garbage))
                    stream = b"".join(random_piece(rnd).data for _ in range(30))
                    if _round % 10 == 0:  # grows past the device's limit with the proxy's id
                        stream = frame(max_size_envelope(rnd).SerializeToString()) + stream
                    sent += len(stream)
                    for a in range(0, len(stream), 1400):
                        conn.transport.write(stream[a:a + 1400])
                    await task.deferLater(reactor, 0.01, lambda: None)
                    conn.transport.loseConnection()
                    await conn.closed.addTimeout(T, reactor)
                # every garbage connection is gone, the device connection survived
                await until(reactor, lambda: service.scheduler.count == 0, "sessions to end")
                assert service.lanes[0].healthy and service.lanes[0].counters.connects == 1
                computer = await connect("127.0.0.1", port, reactor=reactor)
                try:
                    result = await computer.run(0.05, channels=2, sample_rate=20_000).addTimeout(
                        T, reactor)
                    check_exact(result, 2, 1000)
                finally:
                    await computer.close()
            gc.collect()
        assert not log.failures, log.describe()
        assert sent > 100_000
    finally:
        await device.stop()

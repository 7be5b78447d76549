"""The simulated device on real loopback sockets, driven by a minimal client of our own
(``support.device_client``), and as ``twistd -n pybrid-device`` in a child process."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest_twisted
from support.device_client import MiniClient
from support.reference import spawn

from pybrid.device import DeviceConfig, Faults, SimulatedDevice, expected
from pybrid.proto import pb
from pybrid.wire import messages

T = 30.0  # a bound for a busy host, not a speed
C1, C2 = "/00-00-00-00-00-01", "/00-00-00-00-00-02"
TWISTD = pathlib.Path(sys.executable).parent / "twistd"


def _run(channels: int, rate: int, op_ns: int) -> pb.StartRunCommand:
    return pb.StartRunCommand(
        run=pb.Run(id=messages.new_id()),
        run_config=pb.RunConfig(op_time=pb.Time(value=op_ns, prefix=pb.NANO),
                                ic_time=pb.Time(value=100_000, prefix=pb.NANO)),
        daq_config=pb.DaqConfig(num_channels=channels, sample_rate=rate, sample_op=True,
                                sample_op_end=True),
    )


async def _start(reactor, **config) -> SimulatedDevice:
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(**config))
    dev.listen(0, interface="127.0.0.1")
    return dev


@pytest_twisted.ensureDeferred
async def test_two_carriers_over_udp(reactor) -> None:
    dev = await _start(reactor, carriers=2)
    client = None
    try:
        client = await MiniClient.connect(reactor, dev.port)
        client.expect_carriers = 2
        ext = await client.request("extract_command", pb.ExtractCommand(
            recursive=True, specification=True)).addTimeout(T, reactor)
        root = ext.message_v1.extract_response.module.items[0].entity_specification.entity
        assert [c.id for c in root.children] == [C1, C2]
        udp_port = await client.open_udp()
        reply = await client.request("udp_data_streaming_command",
                                     pb.UdpDataStreamingCommand(port=udp_port))
        assert messages.kind_of(reply) == "success_message"
        reply = await client.request("start_run_command", _run(8, 50_000, 100_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await client.finished.addTimeout(T, reactor)
        assert client.of_kind("run_data_message", "tcp") == []
        for i, path in enumerate((C1, C2)):
            assert [m.run.chunk for m in sorted(client.chunks(path),
                                                key=lambda m: m.run.chunk)] == list(range(50))
            np.testing.assert_array_equal(client.values(path), expected(i, 8, 0, 5000))
        assert sorted(s for s in client.states() if s[2] == C2) == sorted([
            ("NEW", "TAKE_OFF", C2), ("TAKE_OFF", "IC", C2), ("IC", "OP", C2),
            ("OP", "OP_END", C2), ("OP_END", "DONE", C2)])
        assert len(client.of_kind("run_data_end_message", "udp")) == 2
        assert dev.counters.datagrams_sent == client.udp_datagrams == 2 * (50 + 5 + 1)
        # overload status after DONE, as the reference client asks
        reply = await client.request("get_overload_status_command")
        assert not reply.message_v1.get_overload_status_response.status.global_overload
    finally:
        if client is not None:
            await client.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_refused_udp_falls_back_to_tcp(reactor) -> None:
    dev = await _start(reactor, refuse_udp=True)
    client = None
    try:
        client = await MiniClient.connect(reactor, dev.port)
        udp_port = await client.open_udp()
        reply = await client.request("udp_data_streaming_command",
                                     pb.UdpDataStreamingCommand(port=udp_port))
        assert reply.message_v1.HasField("udp_data_streaming_refused_response")
        await client.request("start_run_command", _run(3, 20_000, 50_000_000))
        await client.finished.addTimeout(T, reactor)
        assert client.udp_datagrams == 0
        assert len(client.of_kind("run_data_message", "tcp")) == 10
        np.testing.assert_array_equal(client.values(C1), expected(0, 3, 0, 1000))
        assert client.states()[-1] == ("OP_END", "DONE", C1)
    finally:
        if client is not None:
            await client.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_disconnect_fault_closes_the_connection(reactor) -> None:
    dev = await _start(reactor, faults=Faults(disconnect_after_chunks=3))
    client = None
    try:
        client = await MiniClient.connect(reactor, dev.port)
        await client.request("start_run_command", _run(2, 10_000, 1_000_000_000))
        await client.lost.addTimeout(T, reactor)
        assert [m.run.chunk for m in client.chunks(C1)] == [0, 1, 2]
        assert dev.run is None and dev.counters.disconnects == 1
    finally:
        if client is not None:
            await client.close()
        await dev.stop()


@pytest_twisted.ensureDeferred
async def test_twistd_plugin_serves_runs(reactor) -> None:
    proc = spawn(reactor, "twistd-pybrid-device",
                 [str(TWISTD), "--pidfile=", "-n", "pybrid-device", "--port", "0",
                  "--carriers", "2", "--error-after-chunks", "2"],
                 ready_pattern=rb"listening on 127\.0\.0\.1:(\d+)")
    client = None
    try:
        await proc.ready.addTimeout(T, reactor)
        client = await MiniClient.connect(reactor, proc.port)
        client.expect_carriers = 2
        udp_port = await client.open_udp()
        await client.request("udp_data_streaming_command",
                             pb.UdpDataStreamingCommand(port=udp_port))
        await client.request("start_run_command", _run(4, 10_000, 100_000_000))
        await client.finished.addTimeout(T, reactor)
        errors = [s for s in client.states() if s[1] == "ERROR"]
        assert sorted(e[2] for e in errors) == [C1, C2]
        assert len(client.chunks(C2)) == 2
    finally:
        if client is not None:
            await client.close()
        code = await proc.stop()
    # twistd re-raises SIGTERM after a clean shutdown
    assert code in (0, -15) and "Server Shut Down" in proc.tail(), proc.tail()

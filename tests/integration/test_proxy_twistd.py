"""Smoke test: ``twistd -n pybrid-proxy`` as a child process, a client run through it."""

from __future__ import annotations

import pathlib
import sys

import pytest_twisted
from support.proxy_client import connect, kind_is
from support.reference import spawn

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.wire import messages

TWISTD = str(pathlib.Path(sys.executable).with_name("twistd"))


def twistd(reactor, *args, env=None):
    argv = [TWISTD, "-n", "--pidfile=", "pybrid-proxy", *args]
    return spawn(reactor, "twistd-proxy", argv, env=env,
                 ready_pattern=rb"pybrid-proxy listening on [^\s:]+:(\d+)")


@pytest_twisted.ensureDeferred
async def test_twistd_proxy_serves_a_run(reactor):
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    proc = twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                  "--port", "0", "--session-timeout", "5")
    try:
        await proc.ready.addTimeout(30, reactor)
        assert proc.port > 0
        await proc.wait_for_output(b"run data by udp", 15)
        client = await connect(reactor, proc.port)
        extract = await client.request(
            "extract_command", pb.ExtractCommand(recursive=True, specification=True)
        )
        assert messages.kind_of(extract) == "extract_response"
        command = pb.StartRunCommand()
        command.run.id = "smoke"
        command.run_config.op_time.value = 10_000_000
        command.run_config.op_time.prefix = pb.NANO
        command.daq_config.num_channels = 2
        command.daq_config.sample_rate = 10_000
        command.daq_config.sample_op = True
        reply = await client.request("start_run_command", command)
        assert messages.kind_of(reply) == "start_run_response"
        for path in device.carrier_paths:
            await client.expect(
                lambda e, p=path: kind_is("run_state_change_message")(e)
                and e.message_v1.run_state_change_message.entity.path == p
                and e.message_v1.run_state_change_message.new_ == pb.DONE,
                timeout=30,
            )
        data = [f for f in client.frames if messages.kind_of(f) == "run_data_message"]
        assert len(data) == 2  # 100 samples per carrier, one chunk each
        await client.close()
    finally:
        code = await proc.stop()
        await device.stop()
    # twistd re-raises the signal that stopped it, after a clean shutdown
    assert code in (0, -15), proc.tail()
    assert b"Main loop terminated" in proc.stdout, proc.tail()


@pytest_twisted.ensureDeferred
async def test_twistd_refuses_auth_without_the_token(reactor):
    proc = spawn(reactor, "twistd-proxy",
                 [TWISTD, "-n", "--pidfile=", "pybrid-proxy", "-b", "127.0.0.1:1", "--auth"],
                 env={"PYBRID_AUTHENTICATION": ""})
    proc.ready.addErrback(lambda _: None)  # no readiness here: it must refuse to start
    code = await proc.ended.addTimeout(30, reactor)
    assert code != 0
    assert b"PYBRID_AUTHENTICATION" in proc.stdout + proc.stderr

"""Every ``pybrid-monitor`` mode ends on SIGINT/SIGTERM with exit 0, the summary and the record.

Multicast listener and ``--shm`` reader, console only and ``--record`` ``.npz``/``.h5``: the
signal arrives while the monitor runs (idle after a run, or while a run streams), never after a
sleep: each test waits for the monitor's own output first.
"""

from __future__ import annotations

import pathlib
import re
import sys
import uuid
from typing import Any

import numpy as np
import pytest
import pytest_twisted
from support.proxy_client import connect
from support.reference import spawn
from support.shm import require_shm
from test_monitor_cli import (
    IFACE,
    START_TIMEOUT,
    TIMEOUT,
    check_record,
    emit_run,
    finish,
    group_and_port,
    run_tool,
)

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.wire import messages

MONITOR = str(pathlib.Path(sys.executable).with_name("pybrid-monitor"))
SUMMARY = re.compile(rb"summary: (\d+) frames, (\d+) chunks, (\d+) samples")
RECORDED = re.compile(rb"recorded (\d+) samples from (\d+) runs? to (\S+)")


def recorded_rows(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Per carrier, the samples of a monitor's record (``.npz`` or ``.h5``)."""
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as f:
            return {name: g["samples"][()] for name, g in f.items()
                    if isinstance(g, h5py.Group) and "samples" in g}
    with np.load(path) as npz:
        return {k.split("/")[0]: npz[k] for k in npz.files if k.endswith("/samples")}


def check_h5(path: pathlib.Path, chunks: int) -> None:
    from support import monitor_sim as sim

    rows = recorded_rows(path)
    assert sorted(rows) == ["00-00-00-00-00-0a", "00-00-00-00-00-0b"]
    for n, mac in enumerate(sorted(rows)):
        np.testing.assert_array_equal(rows[mac], sim.expected_samples(n, chunks))


@pytest.mark.parametrize(("sig", "suffix"), [("INT", ".npz"), ("TERM", ".h5"), ("INT", "")])
@pytest_twisted.ensureDeferred
async def test_multicast_monitor_ends_cleanly_on_a_signal(reactor: Any, tmp_path: pathlib.Path,
                                                          sig: str, suffix: str) -> None:
    if suffix == ".h5":
        pytest.importorskip("h5py")
    group, port = group_and_port()
    target = tmp_path / f"rec{suffix}"
    record = ["--record", str(target)] if suffix else []
    tool, process = await run_tool(reactor, [
        "--group", group, "--port", str(port), "--interface", IFACE, *record])
    tap = None
    try:
        await tool.wait_for(reactor, "listening on", START_TIMEOUT)
        tap = emit_run(reactor, group, port, f"run-{sig}", 7)
        await tool.wait_for(reactor, "OP_END -> DONE", TIMEOUT, count=2)
        process.signalProcess(sig)
        code = await tool.ended.addTimeout(TIMEOUT, reactor)
    finally:
        if tap is not None:
            await tap.stop()
        await finish(reactor, tool, process)
    assert code == 0, tool.err
    assert "Traceback" not in tool.err
    summary = [line for line in tool.lines if line.startswith("summary: ")]
    assert summary and "14 chunks, 1400 samples" in summary[0], tool.out
    if suffix == ".npz":
        check_record(target, f"run-{sig}", 7)
    elif suffix == ".h5":
        check_h5(target, 7)
    if suffix:
        assert tool.lines[-1] == f"recorded 1400 samples from 1 run to {target}"


def shm_proxy(reactor: Any, device: Any, name: str) -> Any:
    from test_proxy_twistd import twistd

    return twistd(reactor, "-b", f"127.0.0.1:{device.port}", "--listen", "127.0.0.1",
                  "--port", "0", "--shm-tap", name)


@pytest.mark.parametrize(("sig", "suffix", "streaming"),
                         [("INT", ".npz", True), ("TERM", ".h5", False), ("TERM", "", True),
                          ("INT", ".h5", True)])
@pytest_twisted.ensureDeferred
async def test_shm_monitor_ends_cleanly_on_a_signal(reactor: Any, tmp_path: pathlib.Path,
                                                    sig: str, suffix: str,
                                                    streaming: bool) -> None:
    """``streaming``: the signal comes while a 20 s run streams; else after a 0.2 s run ended
    (the reader then waits on its semaphore, which the signal interrupts)."""
    require_shm()
    if suffix == ".h5":
        pytest.importorskip("h5py")
    from test_shm_tap_loopback import start_run, until

    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    target = tmp_path / f"rec{suffix}"
    record = ["--record", str(target)] if suffix else []
    monitor = spawn(reactor, "monitor", [MONITOR, "--shm", name, "--shm-size", "16",
                                         "--interval", "0.2", *record],
                    ready_pattern=rb"waiting for a proxy")
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    client = proc = None
    try:
        await monitor.ready.addTimeout(START_TIMEOUT, reactor)
        proc = shm_proxy(reactor, device, name)
        await proc.ready.addTimeout(START_TIMEOUT, reactor)
        await proc.wait_for_output(b"attached to the reader", TIMEOUT)
        await proc.wait_for_output(b"run data by udp", TIMEOUT)
        client = await connect(reactor, proc.port)
        op_ns = 20_000_000_000 if streaming else 200_000_000
        reply = await client.request("start_run_command", start_run(str(uuid.uuid4()), op_ns))
        assert messages.kind_of(reply) == "start_run_response"
        if streaming:  # a status line that counted chunks of the run: it is streaming now
            await until(reactor, lambda: re.search(rb"samples/s, chunks [1-9]", monitor.stdout)
                        is not None, timeout=30)
        else:
            await until(reactor, lambda: monitor.stdout.count(b": DONE") >= 2, timeout=30)
        monitor.signal(sig)
        code = await monitor.ended.addTimeout(TIMEOUT, reactor)
    finally:
        monitor.signal("KILL")
        if client is not None:
            await client.close()
        if proc is not None:
            await proc.stop()
        await device.stop()
    assert code == 0, monitor.tail()
    assert b"Traceback" not in monitor.stderr and b"SignalError" not in monitor.stderr
    summary = SUMMARY.search(monitor.stdout)
    assert summary is not None, monitor.tail()
    samples = int(summary.group(3))
    assert samples > 0
    if not streaming:
        assert samples == 2 * 200 * 100
    if not suffix:
        return
    recorded = RECORDED.search(monitor.stdout)
    assert recorded is not None, monitor.tail()
    assert int(recorded.group(1)) == samples
    assert recorded.group(3).decode() == str(target)
    rows = recorded_rows(target)
    assert len(rows) == 2
    got = sum(int(np.count_nonzero(~np.isnan(r).all(axis=1))) for r in rows.values())
    assert got == samples

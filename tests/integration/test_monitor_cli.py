"""``pybrid-monitor`` as a subprocess: status lines, --record, --duration, SIGTERM, errors."""

from __future__ import annotations

import json
import os
import pathlib
import random
import sys
from typing import Any

import numpy as np
import pytest_twisted
from support import monitor_sim as sim
from twisted.internet import defer, error, protocol

from pybrid.proxy.taps.multicast import MulticastTap

TOOL = pathlib.Path(sys.executable).parent / "pybrid-monitor"
IFACE = "127.0.0.1"
START_TIMEOUT = 30.0  # interpreter start-up on a busy 2-core machine
TIMEOUT = 30.0  # a bound for a busy host, not a speed
PATHS = ("/00-00-00-00-00-0a", "/00-00-00-00-00-0b")


class Tool(protocol.ProcessProtocol):
    """Collects a child's output; ``wait_for(text)`` fires when stdout contains ``text``."""

    def __init__(self) -> None:
        self.out = ""
        self.err = ""
        self.ended: defer.Deferred[int] = defer.Deferred()
        self.watchers: list[tuple[str, int, defer.Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data.decode()
        for watcher in list(self.watchers):
            text, count, d = watcher
            if self.out.count(text) >= count:
                self.watchers.remove(watcher)
                d.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data.decode()

    def processEnded(self, reason: Any) -> None:
        for _, _, d in self.watchers:
            d.errback(AssertionError(f"tool ended early\nstdout:\n{self.out}\nstderr:\n{self.err}"))
        self.watchers = []
        code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        self.ended.callback(code)

    def wait_for(self, reactor: Any, text: str, timeout: float, count: int = 1) -> Any:
        if self.out.count(text) >= count:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self.watchers.append((text, count, d))
        return d.addTimeout(timeout, reactor)

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


async def run_tool(reactor: Any, args: list[str]) -> tuple[Tool, Any]:
    tool = Tool()
    process = reactor.spawnProcess(tool, str(TOOL), [str(TOOL), *args], env=os.environ.copy())
    return tool, process


async def finish(reactor: Any, tool: Tool, process: Any) -> None:
    """Kill the child if a test left it running and wait for it."""
    if not tool.ended.called:
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass
        await tool.ended.addTimeout(TIMEOUT, reactor)


def group_and_port() -> tuple[str, int]:
    return f"239.255.{random.randrange(1, 255)}.{random.randrange(1, 255)}", sim.free_udp_port()


def emit_run(reactor: Any, group: str, port: int, run_id: str, chunks: int) -> MulticastTap:
    tap = MulticastTap(reactor, [(group, port)], ttl=0, interface=IFACE)
    tap.start()
    runs = [sim.simulated_run(run_id, path, n, chunks) for n, path in enumerate(PATHS)]
    for pair in zip(*runs, strict=True):
        for carrier, envelope in enumerate(pair):
            tap.emit(envelope, carrier)
    return tap


def check_record(target: pathlib.Path, run_id: str, chunks: int) -> None:
    with np.load(target) as npz:
        meta = json.loads(str(npz["meta"]))
        macs = [p.strip("/") for p in PATHS]
        assert meta["run_id"] == run_id and sorted(meta["carriers"]) == macs
        for n, mac in enumerate(macs):
            np.testing.assert_array_equal(npz[f"{mac}/samples"], sim.expected_samples(n, chunks))
            assert npz[f"{mac}/final"].shape == (2,)
            assert npz[f"{mac}/missing_chunks"].tolist() == []


@pytest_twisted.ensureDeferred
async def test_duration_run_prints_rates_and_records(reactor: Any, tmp_path: pathlib.Path) -> None:
    group, port = group_and_port()
    target = tmp_path / "out.npz"
    chunks = 20
    tool, process = await run_tool(reactor, [
        "--group", group, "--port", str(port), "--interface", IFACE, "--record", str(target),
        "--duration", "3", "--interval", "0.5",
    ])
    tap = None
    try:
        await tool.wait_for(reactor, "listening on", START_TIMEOUT)
        tap = emit_run(reactor, group, port, "run-cli", chunks)
        await tool.wait_for(reactor, "OP_END -> DONE", TIMEOUT, count=2)
        code = await tool.ended.addTimeout(TIMEOUT, reactor)
    finally:
        if tap is not None:
            await tap.stop()
        await finish(reactor, tool, process)
    assert code == 0, tool.err
    assert tool.err == ""
    assert tool.lines[0] == f"listening on {group}:{port} via {IFACE}, recording to {target}"
    status = [line for line in tool.lines if " chunks/s, " in line]
    assert any(f"lane 1 {PATHS[1]}: " in line for line in status)
    assert any(line.endswith(f"chunks {chunks}, gaps 0, run run-cli, state DONE")
               for line in status)
    total = 2 * (chunks + 6)
    assert tool.lines[-2] == (
        f"summary: {total} datagrams, {2 * chunks} chunks, {2 * chunks * 100} samples "
        "(+ 2 final values), tap gaps 0, chunk gaps 0, malformed 0"
    )
    assert tool.lines[-1] == f"recorded {2 * chunks * 100} samples from 1 run to {target}"
    check_record(target, "run-cli", chunks)


@pytest_twisted.ensureDeferred
async def test_sigterm_stops_cleanly_and_records(reactor: Any, tmp_path: pathlib.Path) -> None:
    group, port = group_and_port()
    target = tmp_path / "term.npz"
    tool, process = await run_tool(reactor, [
        "--group", group, "--port", str(port), "--interface", IFACE, "--record", str(target),
    ])
    tap = None
    try:
        await tool.wait_for(reactor, "listening on", START_TIMEOUT)
        tap = emit_run(reactor, group, port, "run-term", 5)
        await tool.wait_for(reactor, "OP_END -> DONE", TIMEOUT, count=2)
        process.signalProcess("TERM")
        code = await tool.ended.addTimeout(TIMEOUT, reactor)
    finally:
        if tap is not None:
            await tap.stop()
        await finish(reactor, tool, process)
    assert code == 0, tool.err
    assert tool.lines[-2].startswith("summary: 22 datagrams, 10 chunks,")
    check_record(target, "run-term", 5)


@pytest_twisted.ensureDeferred
async def test_join_failure_exits_1(reactor: Any) -> None:
    group, port = group_and_port()
    tool, process = await run_tool(reactor, [
        "--group", group, "--port", str(port), "--interface", "198.51.100.7",
    ])
    try:
        code = await tool.ended.addTimeout(START_TIMEOUT, reactor)
    finally:
        await finish(reactor, tool, process)
    assert code == 1
    assert tool.err.startswith(f"pybrid-monitor: error: cannot join {group} on interface "
                               "198.51.100.7")
    assert "summary" not in tool.out


@pytest_twisted.ensureDeferred
async def test_usage_error_exits_2(reactor: Any) -> None:
    tool, process = await run_tool(reactor, ["--group", "10.1.2.3", "--port", "5007"])
    try:
        code = await tool.ended.addTimeout(START_TIMEOUT, reactor)
    finally:
        await finish(reactor, tool, process)
    assert code == 2
    assert "pybrid-monitor: error: monitor group 10.1.2.3 is not a multicast address" in tool.err


@pytest_twisted.ensureDeferred
async def test_web_serves_the_live_view_page_and_its_socket(reactor: Any) -> None:
    import re

    from support.live_ws import view
    from support.ops_http import fetch

    group, port = group_and_port()
    tool, process = await run_tool(reactor, [
        "--group", group, "--port", str(port), "--interface", IFACE, "--web", "0",
        "--duration", "20",
    ])
    try:
        await tool.wait_for(reactor, "live view on http://", START_TIMEOUT)
        url = re.search(r"live view on (http://\S+)", tool.out).group(1)
        code, _h, body = await fetch(reactor, url)
        assert code == 200 and b"<canvas" in body
        viewer = await view(reactor, url.replace("http://", "ws://") + "/ws", window=0)
        frame = await viewer.wait(lambda f: True, TIMEOUT)
        assert frame.meta["run"] is None  # nothing received yet
        viewer.transport.loseConnection()
        await viewer.closed
        process.signalProcess("TERM")
        assert await tool.ended.addTimeout(TIMEOUT, reactor) == 0
    finally:
        await finish(reactor, tool, process)


def test_web_with_nats_is_refused() -> None:
    import subprocess

    run = subprocess.run([str(TOOL), "--nats", "nats://127.0.0.1:1", "--web", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--nats not yet" in run.stderr

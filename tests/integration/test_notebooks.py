"""Scenarios: every notebook in ``examples/notebooks/`` runs headless twice in one kernel, alone
(its embedded simulated device) and against our proxy (``PYBRID_TARGET``); interrupting a kernel
or a script during a blocking run stops the run on the device and leaves the connection usable.

Kernels and scripts are child processes; the device and the proxy run in the test's reactor.
Without nbclient/ipykernel/crochet (installed by ``scripts/setup.sh``) the tests skip locally and
fail under CI.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import textwrap

import pytest
import pytest_twisted
from support.reference import spawn
from twisted.internet import defer, task

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
DRIVER = ROOT / "tests" / "support" / "notebooks.py"
T = 240.0


def _need(*modules: str) -> None:
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)")
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture
def notebook_deps() -> None:
    _need("nbclient", "nbformat", "ipykernel", "crochet", "matplotlib")


def _env(target: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYBRID_TARGET"}
    if target is not None:
        env["PYBRID_TARGET"] = target
    env["MPLBACKEND"] = "agg"
    return env


async def until(reactor, predicate, timeout: float = 30.0, what: str = "condition"):
    """Wait (polling every 20 ms, at most ``timeout`` s) until ``predicate()`` is true."""
    d: defer.Deferred = defer.Deferred()

    def check() -> None:
        if predicate() and not d.called:
            d.callback(None)

    loop = task.LoopingCall(check)
    loop.clock = reactor
    loop.start(0.02)
    try:
        await d.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    finally:
        loop.stop()


async def _stack(reactor, carriers: int = 2):
    dev = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=carriers))
    dev.listen(0, interface="127.0.0.1")
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", dev.port),),
                                       interface="127.0.0.1", port=0), reactor)
    service.startService()
    await service.when_healthy().addTimeout(30, reactor)
    return dev, service


async def _run_notebook(reactor, path: pathlib.Path, workdir: pathlib.Path, target: str | None):
    proc = spawn(reactor, "notebook", [sys.executable, str(DRIVER), "run", str(path),
                                       "--workdir", str(workdir), "--times", "2"],
                 env=_env(target))
    proc.ready.addErrback(lambda _f: None)
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    out = proc.stdout.decode()
    assert proc.exit_code == 0, proc.tail()
    assert "PASSED 1" in out and "PASSED 2" in out, proc.tail()


def test_there_is_a_notebook() -> None:
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest_twisted.ensureDeferred
async def test_notebook_twice_alone_with_embedded_device(reactor, notebook_deps, tmp_path, path):
    await _run_notebook(reactor, path, tmp_path, None)
    assert (tmp_path / "quickstart-run.npz").exists() or path.stem != "quickstart"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest_twisted.ensureDeferred
async def test_notebook_twice_through_our_proxy(reactor, notebook_deps, tmp_path, path):
    dev, service = await _stack(reactor)
    try:
        await _run_notebook(reactor, path, tmp_path, f"127.0.0.1:{service.address[1]}")
        started, done = dev.counters.runs_started, dev.counters.runs_done
    finally:
        await service.stopService()
        await dev.stop()
    if path.stem == "quickstart":
        assert (started, done) == (4, 4)  # two runs per pass, both passes through the proxy


@pytest_twisted.ensureDeferred
async def test_kernel_interrupt_stops_the_run_and_keeps_the_connection(
    reactor, notebook_deps, tmp_path
):
    dev, service = await _stack(reactor)
    proc = spawn(reactor, "kernel", [sys.executable, str(DRIVER), "interrupt",
                                     "--workdir", str(tmp_path)],
                 ready_pattern=b"RUNNING", env=_env(f"127.0.0.1:{service.address[1]}"))
    try:
        await proc.ready.addTimeout(T, reactor)
        await until(reactor, lambda: dev.run is not None, what="the run on the device")
        proc.transport.write(b"interrupt\n")
        await proc.ended.addTimeout(T, reactor)
        counters = dev.counters
    finally:
        await proc.stop()
        await service.stopService()
        await dev.stop()
    assert proc.exit_code == 0, proc.tail()
    report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert report["interrupted"] == "KeyboardInterrupt", report
    assert report["second"] == "ok", report
    assert report["shape"] == "[[100, 2], [100, 2]]", report
    # a stopped run ends DONE with what it acquired, so both runs count as done
    assert (counters.runs_started, counters.runs_stopped, counters.runs_done) == (2, 1, 2), counters


SCRIPT = textwrap.dedent("""\
    import json, os, sys
    from pybrid.client import blocking
    c = blocking.connect(os.environ["PYBRID_TARGET"])
    print("CONNECTED", flush=True)
    try:
        c.run(60, channels=1, sample_rate=1000)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    r = c.run(0.01, channels=3, sample_rate=10_000)
    print(json.dumps([list(x.samples.shape) for x in r.carriers.values()]), flush=True)
    c.close()
""")


@pytest_twisted.ensureDeferred
async def test_script_ctrl_c_stops_the_run_and_keeps_the_connection(reactor, tmp_path):
    _need("crochet")
    dev = SimulatedDevice(reactor=reactor)
    dev.listen(0, interface="127.0.0.1")
    proc = spawn(reactor, "script", [sys.executable, "-c", SCRIPT], ready_pattern=b"CONNECTED",
                 env=_env(f"127.0.0.1:{dev.port}"))
    try:
        await proc.ready.addTimeout(T, reactor)
        await until(reactor, lambda: dev.run is not None, what="the run on the device")
        proc.signal("INT")
        await proc.ended.addTimeout(T, reactor)
        counters = dev.counters
    finally:
        await proc.stop()
        await dev.stop()
    assert proc.exit_code == 0, proc.tail()
    lines = proc.stdout.decode().splitlines()
    assert lines[1:] == ["INTERRUPTED", "[[100, 3]]"], proc.tail()
    # a stopped run ends DONE with what it acquired, so both runs count as done
    assert (counters.runs_started, counters.runs_stopped, counters.runs_done) == (2, 1, 2), counters


RECONNECT = textwrap.dedent("""\
    import os
    from pybrid.client import blocking
    from pybrid.client.errors import ConnectionLost
    target = os.environ["PYBRID_TARGET"]
    first = blocking.connect(target, busy_timeout=5)
    second = blocking.connect(target, busy_timeout=5)   # a re-run connect cell
    print("first connected:", first.connected)
    print("shape:", second.run(0.01, channels=1).samples.shape)
    second.close()
    second.close()                                      # a re-run close cell
    try:
        second.run(0.01)                                # a re-run run cell after close
    except ConnectionLost as e:
        print("after close:", e)
""")


@pytest_twisted.ensureDeferred
async def test_rerun_connect_cell_replaces_the_session_on_our_proxy(reactor):
    _need("crochet")
    dev, service = await _stack(reactor, carriers=1)
    port = service.address[1]
    proc = spawn(reactor, "script", [sys.executable, "-c", RECONNECT],
                 env=_env(f"127.0.0.1:{port}"))
    proc.ready.addErrback(lambda _f: None)
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
        await service.stopService()
        await dev.stop()
    assert proc.exit_code == 0, proc.tail()
    assert proc.stdout.decode().splitlines() == [
        "first connected: False",
        "shape: (100, 1)",
        f"after close: the connection to 127.0.0.1:{port} is closed; connect again",
    ], proc.tail()


BOUNDED = textwrap.dedent("""\
    from twisted.internet import defer
    from pybrid.client import blocking
    cancelled = []
    def never(reactor):
        return defer.Deferred(lambda d: cancelled.append(True))
    try:
        blocking.call(never, timeout=0.2)
    except blocking.OperationTimeout as e:
        print("timeout:", e)
    print("cancelled:", cancelled)
    def boom(reactor):
        raise ValueError("the real error")
    try:
        blocking.call(boom)
    except ValueError as e:
        print("error:", e)
    print("value:", blocking.call(lambda reactor, x: defer.succeed(x * 2), 21))
""")


@pytest_twisted.ensureDeferred
async def test_blocking_call_bounds_cancels_and_raises_the_real_error(reactor):
    _need("crochet")
    proc = spawn(reactor, "script", [sys.executable, "-c", BOUNDED], env=_env(None))
    proc.ready.addErrback(lambda _f: None)
    try:
        await proc.ended.addTimeout(T, reactor)
    finally:
        await proc.stop()
    assert proc.exit_code == 0, proc.tail()
    assert proc.stdout.decode().splitlines() == [
        "timeout: never did not finish within 0.2 s; cancelled",
        "cancelled: [True]",
        "error: the real error",
        "value: 42",
    ], proc.tail()

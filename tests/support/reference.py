"""Run the reference pybrid-computing 0.12.10 (from ``.ref/``) as real peers of our code.

Everything here is Twisted-side plumbing for the integration and interop suites: child
processes started with ``reactor.spawnProcess``, readiness read from their output, bounded
waits (every Deferred gets a timeout) and clean teardown (SIGTERM, then SIGKILL).

* :func:`start_ref_mock` — the reference mock device (``DummyDAC``), 1 or 2 carriers,
  UDP accepted or refused.
* :func:`start_ref_proxy` — the reference C++ proxy (``pybrid proxy``).
* :func:`start_ref_client` — the unmodified reference client running computations; its
  result carries per-carrier and per-probe numpy arrays (see ``ref_scripts/ref_client.py``).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import tempfile
from typing import Any

import attrs
import numpy as np
from twisted.internet import defer, error, protocol

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = pathlib.Path(__file__).resolve().parent / "ref_scripts"
REF_BIN = ROOT / ".ref" / "bin"


@attrs.define(eq=False)
class ChildProcess(protocol.ProcessProtocol):
    """A child process whose output is collected and whose readiness is a regex on stdout."""

    reactor: Any
    name: str
    ready_pattern: re.Pattern[bytes] | None = None
    stdout: bytearray = attrs.field(factory=bytearray)
    stderr: bytearray = attrs.field(factory=bytearray)
    ready: defer.Deferred = attrs.field(factory=defer.Deferred)
    ended: defer.Deferred = attrs.field(factory=defer.Deferred)
    line_waiters: list[tuple[bytes, defer.Deferred]] = attrs.field(factory=list)
    exit_code: int | None = None
    port: int = 0
    _done: bool = False

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        if self.ready_pattern is not None and not self.ready.called:
            m = self.ready_pattern.search(self.stdout)
            if m:
                self.port = int(m.group(1)) if m.groups() else 0
                self.ready.callback(self)
        for marker, d in list(self.line_waiters):
            if marker in self.stdout and not d.called:
                self.line_waiters.remove((marker, d))
                d.callback(self)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        if len(self.stderr) > 4_000_000:  # keep memory bounded for chatty peers
            del self.stderr[:2_000_000]

    def processEnded(self, reason: Any) -> None:
        self._done = True
        value = reason.value
        self.exit_code = getattr(value, "exitCode", None)
        if self.exit_code is None and getattr(value, "signal", None) is not None:
            self.exit_code = -int(value.signal)
        failure_text = f"{self.name} exited ({self.exit_code}) before it was ready:\n" + self.tail()
        if not self.ready.called:
            if self.ready_pattern is None:  # nothing waits on readiness: no error to report
                self.ready.callback(self)
            else:
                self.ready.errback(RuntimeError(failure_text))
        for _marker, d in self.line_waiters:
            if not d.called:
                d.errback(RuntimeError(f"{self.name} exited ({self.exit_code}):\n" + self.tail()))
        self.line_waiters.clear()
        self.ended.callback(self.exit_code)

    def wait_for_output(self, marker: bytes, timeout: float) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        if marker in self.stdout:
            d.callback(self)
        elif self._done:
            d.errback(RuntimeError(f"{self.name} already exited:\n" + self.tail()))
        else:
            self.line_waiters.append((marker, d))
        return d.addTimeout(timeout, self.reactor)

    def tail(self, n: int = 3000) -> str:
        out = self.stdout[-n:].decode(errors="replace")
        err = self.stderr[-n:].decode(errors="replace")
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    @property
    def running(self) -> bool:
        return not self._done

    def signal(self, name: str) -> None:
        if self._done:
            return
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if not self._done:
            self.signal("TERM")
            killer = self.reactor.callLater(timeout, self.signal, "KILL")
            try:
                await self.ended
            finally:
                if killer.active():
                    killer.cancel()
        return self.exit_code


def spawn(
    reactor: Any,
    name: str,
    argv: list[str],
    *,
    ready_pattern: bytes | None = None,
    env: dict[str, str] | None = None,
) -> ChildProcess:
    proc = ChildProcess(reactor, name, re.compile(ready_pattern) if ready_pattern else None)
    child_env = dict(os.environ)
    child_env.pop("PYTHONPATH", None)
    child_env["PYTHONUNBUFFERED"] = "1"
    if env:
        child_env.update(env)
    reactor.spawnProcess(proc, argv[0], argv, env=child_env, path=str(ROOT))
    return proc


async def _started(proc: ChildProcess, reactor: Any, timeout: float) -> ChildProcess:
    try:
        await proc.ready.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        await proc.stop()
        raise RuntimeError(f"{proc.name} not ready within {timeout} s:\n{proc.tail()}") from None
    return proc


async def start_ref_mock(
    reactor: Any,
    *,
    carriers: int = 2,
    refuse_udp: bool = False,
    simulate_op_time: bool = False,
    timeout: float = 30.0,
) -> ChildProcess:
    """The reference mock device on 127.0.0.1 and a free port (``proc.port``)."""
    argv = [str(REF_BIN / "python"), str(SCRIPTS / "ref_mock.py"), "--port", "0",
            "--carriers", str(carriers), "--watch-stdin"]
    if refuse_udp:
        argv.append("--refuse-udp")
    if simulate_op_time:
        argv.append("--simulate-op-time")
    proc = spawn(reactor, f"ref-mock({carriers})", argv, ready_pattern=rb"READY (\d+)")
    return await _started(proc, reactor, timeout)


async def start_ref_proxy(
    reactor: Any,
    backends: list[str],
    *,
    debug: bool = False,
    extra: list[str] | None = None,
    timeout: float = 30.0,
) -> ChildProcess:
    """The reference C++ proxy listening on 127.0.0.1 and a free port (``proc.port``)."""
    argv = [str(REF_BIN / "pybrid"), "proxy", "-l", "127.0.0.1", "-p", "0"]
    for b in backends:
        argv += ["-b", b]
    if debug:
        argv.append("--debug")
    argv += extra or []
    proc = spawn(reactor, "ref-proxy", argv, ready_pattern=rb"listening on [^\s:]+:(\d+)")
    return await _started(proc, reactor, timeout)


@attrs.define
class RefClientResult:
    """What one reference-client process reported."""

    exit_code: int | None
    report: dict[str, Any]
    arrays: dict[str, np.ndarray]
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and all(r.get("state") == "DONE" for r in self.report["runs"])

    def carrier_samples(self, run: int = 0) -> dict[str, np.ndarray]:
        """Per carrier path: ``(samples, channels)`` as the client's SampleListener saw them."""
        prefix = f"run{run}/carrier"
        columns: dict[str, dict[int, np.ndarray]] = {}
        for key, values in self.arrays.items():
            if key.startswith(prefix):
                path, _, adc = key[len(prefix):].rpartition("/ADC")
                columns.setdefault(path, {})[int(adc)] = values
        return {
            path: np.stack([cols[i] for i in sorted(cols)], axis=1)
            for path, cols in columns.items()
        }

    def probe(self, p: int, run: int = 0) -> np.ndarray:
        """``run.data[p]`` as assembled by the reference client."""
        return self.arrays[f"run{run}/probe{p}"]

    def describe(self) -> str:
        tail = self.stderr[-3000:]
        return f"exit {self.exit_code}, report {self.report}\n--- stderr tail ---\n{tail}"


@attrs.define(eq=False)
class RefClient:
    """A running reference-client process; ``connected`` fires once add_device returned."""

    proc: ChildProcess
    out: pathlib.Path
    reactor: Any
    timeout: float

    @property
    def connected(self) -> defer.Deferred:
        return self.proc.wait_for_output(b"CONNECTED", self.timeout)

    async def result(self) -> RefClientResult:
        killer = self.reactor.callLater(self.timeout, self.proc.signal, "KILL")
        try:
            code = await self.proc.ended
        finally:
            if killer.active():
                killer.cancel()
        report: dict[str, Any] = {"runs": []}
        for line in self.proc.stdout.decode(errors="replace").splitlines():
            if line.startswith("{"):
                report = json.loads(line)
        arrays: dict[str, np.ndarray] = {}
        if self.out.exists():
            with np.load(self.out) as npz:
                arrays = {k: npz[k] for k in npz.files}
        return RefClientResult(
            code, report, arrays, self.proc.stdout.decode(errors="replace"),
            self.proc.stderr.decode(errors="replace"),
        )

    def kill(self) -> None:
        self.proc.signal("KILL")


def start_ref_client(
    reactor: Any,
    port: int,
    *,
    host: str = "127.0.0.1",
    channels: int = 8,
    sample_rate: int = 100_000,
    op_time_ns: int = 10_000_000,
    runs: int = 1,
    hold: float = 0.0,
    timeout: float = 90.0,
    log_level: str = "WARNING",
) -> RefClient:
    """Start the reference client; ``await client.result()`` for its :class:`RefClientResult`."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="refclient-")) / "result.npz"
    argv = [str(REF_BIN / "python"), str(SCRIPTS / "ref_client.py"), "--host", host,
            "--port", str(port), "--channels", str(channels), "--sample-rate", str(sample_rate),
            "--op-time-ns", str(op_time_ns), "--runs", str(runs), "--hold", str(hold),
            "--out", str(out), "--log-level", log_level]
    proc = spawn(reactor, "ref-client", argv)
    return RefClient(proc, out, reactor, timeout)


async def run_ref_client(reactor: Any, port: int, **kwargs: Any) -> RefClientResult:
    """Start the reference client and wait for its result."""
    return await start_ref_client(reactor, port, **kwargs).result()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for peers that cannot report port 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = [
    "ChildProcess",
    "RefClient",
    "RefClientResult",
    "free_port",
    "run_ref_client",
    "signal",
    "spawn",
    "start_ref_client",
    "start_ref_mock",
    "start_ref_proxy",
]

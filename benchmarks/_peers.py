"""Child processes of ``benchmarks/compare.py``: device, proxies, counting client, reference client.

Every peer is a separate process (the load generator, the proxy under test and the counting
client never share an interpreter).  :class:`Child` wraps ``subprocess.Popen``: a reader thread
drains its output (so a chatty peer never blocks on a full pipe), keeps the last lines and
hands JSON lines to a queue; readiness is a regex on that output, waited for with a timeout.
Children get ``PR_SET_PDEATHSIG`` = SIGKILL (they die with the benchmark, even if it is
killed) and are registered for :func:`stop_all` (SIGTERM, then SIGKILL).

It also reads the kernel's per-process figures: CPU seconds (``/proc/<pid>/stat`` utime +
stime), ``VmRSS``/``VmHWM`` and the drops counter of every UDP socket the process holds
(inodes from ``/proc/<pid>/fd``, drops from ``/proc/net/udp``).
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from pybrid.netstats import drops_for_inode

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
REF_BIN = ROOT / ".ref" / "bin"
REF_CLIENT = ROOT / "tests" / "support" / "ref_scripts" / "ref_client.py"
COUNTING_CLIENT = pathlib.Path(__file__).resolve().parent / "_counting_client.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_children: list[Child] = []


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One child process, its drained output and its kernel figures."""

    def __init__(self, name: str, argv: list[str], ready: str | None = None,
                 stdin: bool = False, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.json: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready_re = re.compile(ready) if ready else None
        self._ready = threading.Event()
        self.ready_match: re.Match[str] | None = None
        child_env = dict(os.environ)
        child_env.pop("PYTHONPATH", None)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            argv, cwd=cwd or str(ROOT), env=child_env, text=True, bufsize=1,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        _children.append(self)
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("{"):
                try:
                    self.json.put(json.loads(line))
                except ValueError:
                    pass
            if self._ready_re is not None and not self._ready.is_set():
                m = self._ready_re.search(line)
                if m:
                    self.ready_match = m
                    self._ready.set()
        self._ready.set()  # EOF: wake a waiter, which then sees the exit

    def wait_ready(self, timeout: float) -> re.Match[str]:
        """The readiness match, or RuntimeError (timeout or exit) with the output's tail."""
        self._ready.wait(timeout)
        if self.ready_match is None:
            state = "exited" if self.proc.poll() is not None else f"not ready in {timeout:g} s"
            self.stop()
            raise RuntimeError(f"{self.name} {state}:\n{self.tail()}")
        return self.ready_match

    def wait_line(self, pattern: str, timeout: float) -> bool:
        """Whether an output line matching ``pattern`` appears within ``timeout`` seconds."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(rx.search(line) for line in list(self.lines)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def next_json(self, timeout: float) -> dict[str, Any]:
        try:
            return self.json.get(timeout=timeout)
        except queue.Empty:
            alive = self.proc.poll() is None
            return {"event": "error",
                    "error": f"{self.name}: no result within {timeout:g} s "
                             f"({'still running' if alive else 'exited'})"}

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def tail(self, n: int = 25) -> str:
        return "\n".join(list(self.lines)[-n:])

    # -- kernel figures -------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS``, ``VmHWM`` (peak), ``RssAnon`` (heap) and ``RssShmem`` (shared memory, the
        shm taps' rings) in KiB."""
        out: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssShmem:")):
                    out[line.split(":")[0]] = int(line.split()[1])
        return out

    def udp_drops(self) -> int:
        """Sum of the kernel drop counters of every UDP socket this process holds."""
        total = 0
        for inode in self._socket_inodes():
            drops = drops_for_inode(inode)
            if drops is not None:
                total += drops
        return total

    def udp_rcvbufs(self) -> list[int]:
        """``SO_RCVBUF`` of each UDP socket this process holds (from ``ss``; [] without it)."""
        inodes = {str(i) for i in self._socket_inodes()}
        try:
            out = subprocess.run(["ss", "-uanme"], capture_output=True, text=True,
                                 timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        sizes = []
        owner = False
        for line in out.splitlines():
            m = re.search(r"ino:(\d+)", line)
            if m:
                owner = m.group(1) in inodes
            m = re.search(r"skmem:\(.*?rb(\d+)", line)
            if m and owner:
                sizes.append(int(m.group(1)))
                owner = False
        return sizes

    def _socket_inodes(self) -> list[int]:
        inodes = []
        fd_dir = f"/proc/{self.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return []
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.append(int(target[8:-1]))
        return inodes

    # -- ending ---------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.send_line("quit")
            try:
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self in _children:
            _children.remove(self)
        return self.proc.returncode


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host so far, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def host_busy(since: tuple[int, int]) -> float:
    """Fraction of all cores busy since ``since`` (a :func:`host_cpu` reading)."""
    busy, total = host_cpu()
    return (busy - since[0]) / max(1, total - since[1])


def stop_all() -> None:
    for child in list(_children):
        try:
            child.stop(3.0)
        except Exception:  # best effort at exit
            child.proc.kill()


def start_device(extra: list[str] | None = None) -> tuple[Child, int]:
    """``twistd -n pybrid-device`` on 127.0.0.1 and a free port."""
    argv = [TWISTD, "-n", "--pidfile=", "pybrid-device", "--port", "0",
            "--interface", "127.0.0.1", *(extra or [])]
    child = Child("pybrid-device", argv, ready=r"listening on 127\.0\.0\.1:(\d+)")
    return child, int(child.wait_ready(30).group(1))


def start_our_proxy(device_port: int, max_sessions: int,
                    extra: tuple[str, ...] = ()) -> tuple[Child, int]:
    """``twistd -n pybrid-proxy`` in front of the device, once its backend is ready."""
    argv = [TWISTD, "-n", "--pidfile=", "pybrid-proxy", "-b", f"127.0.0.1:{device_port}",
            "--listen", "127.0.0.1", "--port", "0", "--max-sessions", str(max_sessions),
            *extra]
    child = Child("pybrid-proxy", argv, ready=r"pybrid-proxy listening on [^\s:]+:(\d+)")
    port = int(child.wait_ready(30).group(1))
    if not child.wait_line(r"ready: carriers", 20):
        tail = child.tail()
        child.stop()
        raise RuntimeError(f"pybrid-proxy: backend not ready in 20 s:\n{tail}")
    return child, port


def start_ref_proxy(device_port: int) -> tuple[Child, int]:
    """The reference C++ proxy (``.ref/bin/pybrid proxy``) in front of the device."""
    argv = [str(REF_BIN / "pybrid"), "proxy", "-b", f"127.0.0.1:{device_port}",
            "-l", "127.0.0.1", "-p", "0"]
    child = Child("reference proxy", argv, ready=r"Proxy server listening on [^\s:]+:(\d+)")
    return child, int(child.wait_ready(60).group(1))


def start_counting_client(port: int) -> Child:
    argv = [sys.executable, str(COUNTING_CLIENT), "--port", str(port)]
    return Child("counting client", argv, stdin=True)


def reference_installed() -> bool:
    return (REF_BIN / "python").exists() and (REF_BIN / "pybrid").exists()


def ref_client_connect(port: int, timeout: float = 60.0) -> float:
    """One unmodified reference client (``add_device`` + a tiny run); its connect seconds."""
    argv = [str(REF_BIN / "python"), str(REF_CLIENT), "--port", str(port), "--channels", "1",
            "--sample-rate", "1000", "--op-time-ns", "1000000"]
    child = Child("reference client", argv)
    try:
        child.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        child.stop()
        raise RuntimeError(f"reference client did not finish in {timeout:g} s") from None
    child._reader.join(5)
    child.stop()
    while not child.json.empty():
        report = child.json.get()
        if "connect_seconds" in report:
            return float(report["connect_seconds"])
        if "error" in report:
            raise RuntimeError(f"reference client: {report['error']}")
    raise RuntimeError(f"reference client gave no report:\n{child.tail()}")

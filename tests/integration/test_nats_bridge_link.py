"""The NATS bridge's link end as the proxy starts it (``--link-fd``): bytes that are not the
proxy's link, or no link at all, stop it with status 1 and say why (no server needed)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

import pytest

pytest.importorskip("nats")


def bridge(*extra: str) -> list[str]:
    return [sys.executable, "-m", "pybrid.proxy.taps.nats", "--nats", "nats://127.0.0.1:9",
            "--proxy-name", "t", *extra]


@pytest.fixture
def procs():
    """Bridges a test started: killed if still running at its end (a failed test)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(procs: list, fd: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(bridge("--link-fd", str(fd)), pass_fds=(fd,),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    return proc


def test_garbage_on_the_link_stops_the_bridge_with_a_clear_error(procs):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        proc = start(procs, theirs.fileno())
        theirs.close()
        ours.sendall(struct.pack("!IBI", 1 << 30, 3, 2) + b"{}")
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"the link: a malformed message" in err


def test_a_link_fd_that_is_no_socket_is_refused():
    proc = subprocess.run(bridge("--link-fd", "97"), capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"--link-fd 97 is not the proxy's link" in proc.stderr


def test_the_bridge_ends_when_the_proxy_closes_its_link(procs):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        proc = start(procs, theirs.fileno())
    ours.close()  # the proxy is gone: nothing queued, the bridge stops at once
    proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_sigterm_while_it_connects_stops_the_bridge(procs):
    import signal
    import time

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        proc = start(procs, theirs.fileno())
        assert proc.stdout is not None
        proc.stdout.readline()  # its first status line: the loop runs, nats-py connects
        for _ in range(3):  # whichever await of the connect the signal finds
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    # it ended (a later signal may find its loop gone already: the default action)
    assert proc.returncode in (0, -signal.SIGTERM)

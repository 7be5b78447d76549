"""The NATS bridge's link end as the proxy starts it (``--link-fd``): bytes that are not the
proxy's link, or no link at all, stop it with status 1 and say why (no server needed)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

import pytest

pytest.importorskip("nats")


def bridge(*extra: str, fds: tuple[int, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "pybrid.proxy.taps.nats", "--nats", "nats://127.0.0.1:9",
            "--proxy-name", "t", *extra]


def test_garbage_on_the_link_stops_the_bridge_with_a_clear_error():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        proc = subprocess.Popen(bridge("--link-fd", str(theirs.fileno())),
                                pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        theirs.close()
        ours.sendall(struct.pack("!IBI", 1 << 30, 3, 2) + b"{}")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"the link: a malformed message" in err


def test_a_link_fd_that_is_no_socket_is_refused():
    proc = subprocess.run(bridge("--link-fd", "97"), capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"--link-fd 97 is not the proxy's link" in proc.stderr


def test_the_bridge_ends_when_the_proxy_closes_its_link():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        proc = subprocess.Popen(bridge("--link-fd", str(theirs.fileno())),
                                pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    ours.close()  # the proxy is gone: nothing queued, the bridge stops at once
    proc.communicate(timeout=60)
    assert proc.returncode == 0

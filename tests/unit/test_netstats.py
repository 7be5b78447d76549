"""Receive-buffer tuning and per-socket kernel drop counters."""

from __future__ import annotations

import pathlib
import socket
import sys

import pytest

from pybrid import netstats

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net")


def test_raise_rcvbuf_reports_what_the_kernel_granted() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        granted = netstats.raise_rcvbuf(s, 4 << 20)
        assert granted == s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= before


@linux
def test_socket_drops_counts_overflow_of_a_small_buffer() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rx.bind(("127.0.0.1", 0))
        assert netstats.socket_drops(rx) == 0
        for _ in range(200):  # far more than a 4 KiB buffer holds; nobody reads
            tx.sendto(b"x" * 1000, rx.getsockname())
        drops = netstats.socket_drops(rx)
        assert drops is not None and drops > 0
    finally:
        rx.close()
        tx.close()


def test_drops_for_unknown_inode_and_missing_proc(tmp_path: pathlib.Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "udp").write_text(
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode ref pointer drops\n"
        " 7493: 0100007F:BE90 0100007F:270F 01 00000000:00000000 00:00000000 00000000"
        "     0        0 10458 2 0000000058f99eb0 17\n"
    )
    assert netstats.drops_for_inode(10458, str(tmp_path)) == 17
    assert netstats.drops_for_inode(1, str(tmp_path)) is None
    assert netstats.drops_for_inode(1, str(tmp_path / "nowhere")) is None


def test_host_udp_errors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "snmp").write_text(
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 1 2 3 4 5\n"
    )
    assert netstats.host_udp_errors(str(tmp_path))["RcvbufErrors"] == 5
    assert netstats.host_udp_errors(str(tmp_path / "nowhere")) == {}


@linux
def test_receive_backlog_is_what_waits_unread_against_the_limit() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        queued, limit = netstats.receive_backlog(rx) or (-1, -1)
        assert queued == 0 and limit == rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        for _ in range(5):  # loopback delivers before sendto returns
            tx.sendto(b"x" * 1000, rx.getsockname())
        queued, _ = netstats.receive_backlog(rx) or (-1, -1)
        assert queued >= 5 * 1000  # the kernel accounts a datagram's buffers, not only data
        rx.setblocking(False)
        for _ in range(5):
            rx.recv(2000)
        assert netstats.receive_backlog(rx) == (0, limit)
    finally:
        rx.close()
        tx.close()


def test_receive_backlog_of_a_closed_socket_is_not_known() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.close()
    assert netstats.receive_backlog(s) is None

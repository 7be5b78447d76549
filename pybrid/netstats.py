"""Socket tuning and kernel counters for the UDP data lane (Linux; degrade gracefully elsewhere).

* :func:`raise_rcvbuf` asks for a large receive buffer (``SO_RCVBUFFORCE`` when privileged,
  else ``SO_RCVBUF``, which the kernel caps at ``net.core.rmem_max`` and doubles) and returns
  what the kernel granted, so callers can log it.
* :func:`socket_drops` reads the per-socket ``drops`` column of ``/proc/net/udp`` (and
  ``udp6``) by the socket's inode: datagrams the kernel discarded because this socket's buffer
  was full.  This is exact per socket, unlike the host-wide ``RcvbufErrors`` of
  ``/proc/net/snmp`` (:func:`host_udp_errors`), which other programs also move.
* :func:`receive_backlog` asks the kernel (``SO_MEMINFO``, one system call) how much of the
  socket's receive buffer is taken by datagrams waiting to be read, and its limit.
"""

from __future__ import annotations

import os
import socket
import struct

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: Linux's ``SO_MEMINFO`` (not in Python's socket module): nine u32, the first two
#: ``SK_MEMINFO_RMEM_ALLOC`` (bytes queued, as the kernel accounts them) and ``RCVBUF``.
_SO_MEMINFO = 55
_TWO_U32 = struct.Struct("=II")


def _raise_buffer(sock: socket.socket, forced: int, plain: int, wanted: int) -> int:
    """Ask for ``wanted`` bytes past the limit (``forced``, needs CAP_NET_ADMIN), else within
    it (``plain``); return the size the kernel granted."""
    for option in (forced, plain):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, wanted)
            break
        except OSError:
            continue
    return int(sock.getsockopt(socket.SOL_SOCKET, plain))


def raise_rcvbuf(sock: socket.socket, wanted: int) -> int:
    """Request a receive buffer of ``wanted`` bytes; return the size the kernel granted."""
    return _raise_buffer(sock, _SO_RCVBUFFORCE, socket.SO_RCVBUF, wanted)


def raise_sndbuf(sock: socket.socket, wanted: int) -> int:
    """Request a send buffer of ``wanted`` bytes; return the size the kernel granted."""
    return _raise_buffer(sock, getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF, wanted)


def receive_backlog(sock: socket.socket) -> tuple[int, int] | None:
    """``(queued, limit)``: bytes the kernel holds for ``sock``'s unread datagrams and the
    receive buffer's size (it drops datagrams beyond it); None where the platform cannot say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 8)
    except OSError:
        return None
    queued, limit = _TWO_U32.unpack_from(raw)
    return queued, limit


def socket_drops(sock: socket.socket, proc_root: str = "/proc") -> int | None:
    """Datagrams the kernel dropped on ``sock`` (its receive buffer was full), or None if the
    platform does not say."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    return drops_for_inode(inode, proc_root)


def drops_for_inode(inode: int, proc_root: str = "/proc") -> int | None:
    wanted = str(inode)
    for name in ("udp", "udp6"):
        try:
            with open(os.path.join(proc_root, "net", name)) as f:
                header = f.readline().split()
                try:
                    inode_col = header.index("inode") - 2  # "tx_queue rx_queue" and
                    drops_col = header.index("drops") - 2  # "tr tm->when" are one column each
                except ValueError:
                    return None
                for line in f:
                    fields = line.split()
                    if len(fields) > drops_col and fields[inode_col] == wanted:
                        return int(fields[drops_col])
        except OSError:
            continue
    return None


def host_udp_errors(proc_root: str = "/proc") -> dict[str, int]:
    """The host-wide ``Udp:`` counters of ``/proc/net/snmp`` (InErrors, RcvbufErrors …)."""
    try:
        with open(os.path.join(proc_root, "net", "snmp")) as f:
            lines = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names, values = lines[0][1:], lines[1][1:]
    return {n: int(v) for n, v in zip(names, values, strict=False)}

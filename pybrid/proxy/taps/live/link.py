"""The live tap's link to the ``--live-process`` child: run events and sample blocks.

Design note
-----------
The proxy's :class:`~.tap.LiveTap` keeps each watched chunk's datagram as it came and groups
consecutive chunks into blocks; without a child it decodes them into its own store.  For the
child it sends each block as it is — the datagrams, where their samples lie and their format,
every ``FLUSH_EVERY`` (10 ms) — with one ``sendmsg`` of the datagrams' own buffers over a
Unix socket pair, and the child cuts out the samples, decodes and stores them
(:class:`LinkReader`).  Per datagram the proxy pays an append and its share of one system
call: no slice, no frame per chunk, no semaphore, no join, no envelope.  (A shared-memory
ring the proxy copied the samples into cost it more per datagram than the kernel's copy:
the ring's cold lines against the socket's reused buffers, docs/performance.md.)  What the
socket does not take at once is written when it is writable (:class:`LiveLink` is its own
write descriptor); until then blocks are not sent but counted (``not_sent``) — the child's
view shows them as gaps — so the proxy holds at most one message for a child that is
behind.

A message: ``!IB`` (bytes after this field, kind), ``!I`` JSON length, the JSON header, the
datagrams (or float64 rows of a chunk the proxy decoded itself).  Kinds: :data:`START`,
:data:`BLOCK`, :data:`END`.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import numpy as np
from twisted.internet import protocol
from twisted.internet.interfaces import IWriteDescriptor
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pybrid.proxy.taps.live.tap import sample_rows

START, BLOCK, END = 1, 2, 3
_HEAD = struct.Struct("!IBI")
#: A message longer than this is not ours (a block of 4 096 chunks of 64 KiB is 256 MiB).
MAX_MESSAGE = 1 << 29
#: Chunks a block sends as separate buffers at most (``sendmsg``'s IOV_MAX is 1 024).
MAX_PARTS = 1000
_log = Logger()


def message(kind: int, header: dict[str, Any], data: list[bytes] | None = None) -> list[bytes]:
    """One message as the parts to write (``sendmsg``)."""
    body = json.dumps(header, separators=(",", ":")).encode()
    data = data or []
    size = 1 + 4 + len(body) + sum(map(len, data))
    return [_HEAD.pack(size, kind, len(body)), body, *data]


@implementer(IWriteDescriptor)
class LiveLink:
    """The proxy's end: the store calls of :class:`~.tap.LiveTap` as messages, written with
    one ``sendmsg`` of the chunks' own bytes (no join); what the socket does not take now is
    written when it is writable, and blocks are not sent (counted) until then."""

    def __init__(self, sock: socket.socket, reactor: Any) -> None:
        self.sock = sock
        self.reactor = reactor
        self.sent = 0
        self.not_sent = 0  # chunks not sent while the child was behind
        self.closed = False
        self._rest: memoryview | None = None

    @property
    def behind(self) -> bool:
        return self._rest is not None

    # the store's calls
    def start(self, run_id: str, number: int, sample_rate: int, now: float) -> None:
        self._send(message(START, {"run": run_id, "number": number, "rate": sample_rate,
                                   "at": now}))

    def block(self, run_id: str, path: str, first: int, parts: list[bytes], fmt: Any,
              cut: tuple[int, int, int], at: float) -> None:
        """The consecutive chunks from ``first`` whose datagrams are ``parts``, their samples
        (in ``fmt``) where ``cut`` says (:func:`~.tap.sample_rows`); not sent while the child
        is behind (counted)."""
        if self._rest is not None or self.closed:
            self.not_sent += len(parts)
            return
        header = {"run": run_id, "path": path, "first": first, "chunks": len(parts), "at": at,
                  "dtype": fmt.dtype.str, "stride": fmt.stride, "cut": list(cut)}
        if not fmt.identity:
            header.update(gain=fmt.gain.tolist(), offset=fmt.offset.tolist())
        if len(parts) > MAX_PARTS:
            parts = [b"".join(parts)]
        self._send(message(BLOCK, header, parts))
        self.sent += header["chunks"]

    def values(self, run_id: str, path: str, first: int, values: np.ndarray, at: float,
               chunks: int = 1) -> None:
        """Decoded values (a chunk the fast path could not take), as float64 rows."""
        if self._rest is not None or self.closed:
            self.not_sent += chunks
            return
        rows = np.ascontiguousarray(values, "<f8")
        header = {"run": run_id, "path": path, "first": first, "chunks": chunks, "at": at,
                  "dtype": "<f8", "stride": rows.shape[1]}
        self._send(message(BLOCK, header, [rows.tobytes()]))
        self.sent += chunks

    def end(self, run_id: str, result: str, chunks: int, missing: int, now: float) -> None:
        self._send(message(END, {"run": run_id, "result": result, "chunks": chunks,
                                 "missing": missing, "at": now}))

    def _send(self, parts: list[bytes]) -> None:
        if self.closed:
            return
        if self._rest is not None:  # behind a partial message: queue it whole
            self._rest = memoryview(bytes(self._rest) + b"".join(parts))
            return
        try:
            n = self.sock.sendmsg(parts)
        except BlockingIOError:
            n = 0
        except OSError:
            self.close()
            return
        if n < sum(map(len, parts)):
            self._rest = memoryview(b"".join(parts))[n:]
            self.reactor.addWriter(self)

    # IWriteDescriptor: the rest of a message, when the socket is writable
    def doWrite(self) -> None:
        try:
            n = self.sock.send(self._rest) if self._rest is not None else 0
        except BlockingIOError:
            return None
        except OSError:
            self.close()
            return None
        if self._rest is not None:
            self._rest = self._rest[n:] if n < len(self._rest) else None
        if self._rest is None:
            self.reactor.removeWriter(self)
        return None

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()

    def logPrefix(self) -> str:
        return "LiveLink"

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        if self._rest is not None:
            self.reactor.removeWriter(self)
            self._rest = None
        self.closed = True
        self.sock.close()


class LinkReader(protocol.Protocol):
    """The child's end: messages into ``live`` (a :class:`~pybrid.monitor.web.MonitorLive`:
    ``store``, ``block``).  A malformed message closes the link (the proxy restarts us)."""

    def __init__(self, live: Any, lost: Any = None) -> None:
        self.live = live
        self.lost = lost
        self.buffer = bytearray()
        self.blocks = 0

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        at = 0
        while len(buf) - at >= _HEAD.size:
            size, kind, jlen = _HEAD.unpack_from(buf, at)
            if size > MAX_MESSAGE or jlen > size - 5:
                _log.error("live link: a malformed message ({size} bytes); closing", size=size)
                if self.transport is not None:
                    self.transport.loseConnection()
                return
            end = at + 4 + size
            if len(buf) < end:
                break
            start = at + _HEAD.size
            try:  # copies: the decoded rows must not pin the buffer
                self.message(kind, json.loads(bytes(buf[start:start + jlen])),
                             buf[start + jlen:end])
            except Exception:
                _log.failure("live link: a message could not be stored")
            at = end
        if at:
            del buf[:at]

    def message(self, kind: int, head: dict[str, Any], data: bytearray) -> None:
        store = self.live.store
        if kind == START:
            store.start(head["run"], int(head["number"]), int(head["rate"]), head["at"])
        elif kind == END:
            store.end(head["run"], head["result"], int(head["chunks"]), int(head["missing"]),
                      head["at"])
        elif kind == BLOCK:
            self.blocks += 1
            dtype, stride = np.dtype(head["dtype"]), int(head["stride"])
            if "cut" in head:  # datagrams as they came
                at, end, length = (int(x) for x in head["cut"])
                values = sample_rows(data, (at, end, length), dtype, stride)
            else:
                values = np.frombuffer(data, dtype).reshape(-1, stride)
            if "gain" in head:
                values = values * np.asarray(head["gain"]) + np.asarray(head["offset"])
            self.live.block(head["run"], head["path"], int(head["first"]), values, head["at"],
                            int(head["chunks"]))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.lost is not None:
            self.lost()


class LinkReaderFactory(protocol.Factory):
    def __init__(self, reader: LinkReader) -> None:
        self.reader = reader

    def buildProtocol(self, addr: Any) -> LinkReader:
        return self.reader

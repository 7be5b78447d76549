"""The live tap's link to the ``--live-process`` child: run events and sample blocks.

Design note
-----------
The proxy's :class:`~.tap.LiveTap` keeps each watched chunk's datagram as it came and groups
consecutive chunks into blocks; without a child it decodes them into its own store.  For the
child it sends each block as it is — the datagrams, where their samples lie and their format,
every ``FLUSH_EVERY`` (10 ms) — as one message of a :mod:`~pybrid.proxy.taps.link` (one
``sendmsg`` of the datagrams' own buffers over a Unix socket pair), and the child cuts out
the samples, decodes and stores them (:class:`LinkReader`).  Per datagram the proxy pays an
append and its share of one system call: no slice, no frame per chunk, no semaphore, no
join, no envelope.  (A shared-memory ring the proxy copied the samples into cost it more per
datagram than the kernel's copy: the ring's cold lines against the socket's reused buffers,
docs/performance.md.)  While the child is behind, blocks are not sent but counted
(``not_sent``) — the child's view shows them as gaps.  Kinds: :data:`START`, :data:`BLOCK`,
:data:`END`; a block's data is the datagrams (or float64 rows of a chunk the proxy decoded
itself).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import numpy as np
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.logger import Logger
from zope.interface import implementer

from pybrid.proxy.taps.link import Inbox, LinkError, LinkWriter, encoded, message
from pybrid.proxy.taps.live.tap import sample_rows

START, BLOCK, END = 1, 2, 3
#: Block headers kept encoded (a run's carriers and formats) before all are forgotten.
MAX_FIXED = 256
#: Reads of the link per reactor wake-up at most (each up to the Inbox's free room).
READS_PER_WAKE = 8
_log = Logger()


class LiveLink(LinkWriter):
    """The proxy's end: the store calls of :class:`~.tap.LiveTap` as messages; blocks are not
    sent (counted) while the child is behind."""

    def __init__(self, sock: Any, reactor: Any) -> None:
        super().__init__(sock, reactor)
        self._fixed: dict[tuple[Any, ...], bytes] = {}
        self.sent = 0
        self.not_sent = 0  # chunks not sent while the child was behind

    # the store's calls
    def start(self, run_id: str, number: int, sample_rate: int, now: float) -> None:
        self.event(message(START, {"run": run_id, "number": number, "rate": sample_rate,
                                   "at": now}))

    def block(self, run_id: str, path: str, first: int, parts: list[bytes], fmt: Any,
              cut: tuple[int, int, int], at: float) -> None:
        """The consecutive chunks from ``first`` whose datagrams are ``parts``, their samples
        (in ``fmt``) where ``cut`` says (:func:`~.tap.sample_rows`); not sent while the child
        is behind (counted)."""
        if self.behind or self.closed:
            self.not_sent += len(parts)
            return
        key = (run_id, path, fmt, cut)
        fixed = self._fixed.get(key)
        if fixed is None:  # the header's part that stays while the run goes on: JSON once
            if len(self._fixed) >= MAX_FIXED:
                self._fixed.clear()
            head = {"run": run_id, "path": path, "dtype": fmt.dtype.str, "stride": fmt.stride,
                    "cut": list(cut)}
            if not fmt.identity:
                head.update(gain=fmt.gain.tolist(), offset=fmt.offset.tolist())
            fixed = self._fixed[key] = json.dumps(head, separators=(",", ":"))[:-1].encode()
        body = b'%s,"first":%d,"chunks":%d,"at":%r}' % (fixed, first, len(parts), at)
        self.data(encoded(BLOCK, body, parts, len(parts) * cut[2]))  # one layout: one length
        self.sent += len(parts)

    def values(self, run_id: str, path: str, first: int, values: np.ndarray, at: float,
               chunks: int = 1) -> None:
        """Decoded values (a chunk the fast path could not take), as float64 rows."""
        if self.behind or self.closed:
            self.not_sent += chunks
            return
        rows = np.ascontiguousarray(values, "<f8")
        header = {"run": run_id, "path": path, "first": first, "chunks": chunks, "at": at,
                  "dtype": "<f8", "stride": rows.shape[1]}
        self.data(message(BLOCK, header, [rows.tobytes()]))
        self.sent += chunks

    def end(self, run_id: str, result: str, chunks: int, missing: int, now: float) -> None:
        self.event(message(END, {"run": run_id, "result": result, "chunks": chunks,
                                 "missing": missing, "at": now}))


@implementer(IReadDescriptor)
class LinkReader:
    """The child's end: messages into ``live`` (a :class:`~pybrid.monitor.web.MonitorLive`:
    ``store``, ``block``), read into an :class:`~pybrid.proxy.taps.link.Inbox` — the samples
    are cut out of its buffer, no copy before.  A malformed message closes the link (the proxy
    restarts us); ``lost`` is called when the link is gone."""

    def __init__(self, live: Any, sock: socket.socket | None = None, reactor: Any = None,
                 lost: Any = None) -> None:
        self.live = live
        self.sock = sock
        self.reactor = reactor
        self.lost = lost
        self.inbox = Inbox()
        self.blocks = 0
        self.closed = False

    def start(self) -> None:
        assert self.sock is not None and self.reactor is not None
        self.sock.setblocking(False)
        self.reactor.addReader(self)

    # IReadDescriptor
    def doRead(self) -> Any:
        assert self.sock is not None
        for _ in range(READS_PER_WAKE):  # then the reactor's other work: frames, viewers
            try:
                n = self.inbox.recv(self.sock)
            except BlockingIOError:
                break
            except OSError:
                return CONNECTION_LOST
            if not n:
                return CONNECTION_DONE
            self._take()
            if self.closed:
                return CONNECTION_DONE
        return None

    def dataReceived(self, data: bytes) -> None:
        """Bytes from elsewhere than the socket (tests): as if read."""
        self.inbox.feed(data)
        self._take()

    def _take(self) -> None:
        try:
            for kind, head, body in self.inbox.messages():
                try:
                    self.message(kind, head, body)
                except Exception:
                    _log.failure("live link: a message could not be stored")
        except LinkError as e:
            _log.error("live link: {error}; closing", error=str(e))
            self.closed = True

    def message(self, kind: int, head: dict[str, Any], data: memoryview) -> None:
        store = self.live.store
        if kind == START:
            store.start(head["run"], int(head["number"]), int(head["rate"]), head["at"])
        elif kind == END:
            store.end(head["run"], head["result"], int(head["chunks"]), int(head["missing"]),
                      head["at"])
        elif kind == BLOCK:
            self.blocks += 1
            dtype, stride = np.dtype(head["dtype"]), int(head["stride"])
            if "cut" in head:  # datagrams as they came: the samples cut out (a copy)
                at, end, length = (int(x) for x in head["cut"])
                values = sample_rows(data, (at, end, length), dtype, stride)
            else:  # the view's buffer is reused: the values copied out
                values = np.frombuffer(data, dtype).reshape(-1, stride).copy()
            if "gain" in head:
                values = values * np.asarray(head["gain"]) + np.asarray(head["offset"])
            self.live.block(head["run"], head["path"], int(head["first"]), values, head["at"],
                            int(head["chunks"]))

    def fileno(self) -> int:
        return -1 if self.sock is None or self.closed else self.sock.fileno()

    def logPrefix(self) -> str:
        return type(self).__name__

    def connectionLost(self, reason: Any) -> None:
        self.closed = True
        if self.sock is not None:
            self.sock.close()
        if self.lost is not None:
            self.lost()

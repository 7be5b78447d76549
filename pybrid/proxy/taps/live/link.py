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

from typing import Any

import numpy as np
from twisted.internet import protocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.proxy.taps.link import LinkError, LinkWriter, message, split
from pybrid.proxy.taps.live.tap import sample_rows

START, BLOCK, END = 1, 2, 3
_log = Logger()


class LiveLink(LinkWriter):
    """The proxy's end: the store calls of :class:`~.tap.LiveTap` as messages; blocks are not
    sent (counted) while the child is behind."""

    def __init__(self, sock: Any, reactor: Any) -> None:
        super().__init__(sock, reactor)
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
        header = {"run": run_id, "path": path, "first": first, "chunks": len(parts), "at": at,
                  "dtype": fmt.dtype.str, "stride": fmt.stride, "cut": list(cut)}
        if not fmt.identity:
            header.update(gain=fmt.gain.tolist(), offset=fmt.offset.tolist())
        self.data(message(BLOCK, header, parts))
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


class LinkReader(protocol.Protocol):
    """The child's end: messages into ``live`` (a :class:`~pybrid.monitor.web.MonitorLive`:
    ``store``, ``block``).  A malformed message closes the link (the proxy restarts us)."""

    def __init__(self, live: Any, lost: Any = None) -> None:
        self.live = live
        self.lost = lost
        self.buffer = bytearray()
        self.blocks = 0

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        try:
            for kind, head, body in split(self.buffer):
                try:
                    self.message(kind, head, body)
                except Exception:
                    _log.failure("live link: a message could not be stored")
        except LinkError as e:
            _log.error("live link: {error}; closing", error=str(e))
            if self.transport is not None:
                self.transport.loseConnection()

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

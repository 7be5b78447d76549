"""HTTP and PNG helpers for the status page tests (issue 9, operations).

* :func:`fetch` — one GET with ``twisted.web.client.Agent`` (no persistent connections, so
  nothing is left open), bounded by a timeout.
* :func:`decode_png` — a small PNG decoder (8-bit RGB/RGBA, non-interlaced: what Chromium
  writes) into a numpy array, enough to check that a screenshot shows something.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
from twisted.internet import defer, protocol
from twisted.web.client import Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers


class _Body(protocol.Protocol):
    """Collects a response body (``readBody`` warns about Agent's own transports)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        if reason is not None and reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(bytes(self.data))
        else:
            self.done.errback(reason)


async def fetch(reactor: Any, url: str, timeout: float = 10.0,
                headers: dict[bytes, bytes] | None = None) -> tuple[int, Headers, bytes]:
    agent = Agent(reactor)
    sent = Headers({b"User-Agent": [b"pybrid-tests"]})
    for name, value in (headers or {}).items():
        sent.setRawHeaders(name, [value])
    d = agent.request(b"GET", url.encode("ascii"), sent)
    response = await d.addTimeout(timeout, reactor)
    reader = _Body()
    response.deliverBody(reader)
    body = await reader.done.addTimeout(timeout, reactor)
    return response.code, response.headers, body


def header(headers: Headers, name: str) -> str:
    values = headers.getRawHeaders(name.encode("ascii")) or [b""]
    return values[0].decode("latin-1")


def decode_png(data: bytes, max_rows: int | None = None) -> np.ndarray:
    """Pixels (rows, width, channels) of an 8-bit, non-interlaced RGB or RGBA PNG.

    ``max_rows`` decodes only the top rows (each row depends only on the rows above it).
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = chunk
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    rows = height if max_rows is None else min(height, max_rows)
    raw = zlib.decompressobj().decompress(bytes(idat), rows * (stride + 1))
    out = np.zeros((rows, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(rows):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1).astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average, Paeth: sequential along the row
            cur = _sequential(kind, line.tolist(), prev.tolist(), bpp)
        out[y] = cur
        prev = np.asarray(cur, dtype=np.int32)
    return out.reshape(rows, width, bpp)


def _sequential(kind: int, line: list[int], up: list[int], bpp: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, x in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (x + ((a + b) >> 1)) & 0xFF
            continue
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (x + pred) & 0xFF
    return np.asarray(cur, dtype=np.int32)

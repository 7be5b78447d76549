"""A link to a child process: messages over a Unix socket pair, never blocking the proxy.

Design note
-----------
The live tap (``--live-process``) and the NATS feed (``--nats``) hand their child what it
needs as messages on a non-blocking socket pair: ``!IB`` (bytes after this field, kind),
``!I`` JSON length, the JSON header, then raw bytes (datagrams as they came).  A message is
one ``sendmsg`` of its parts' own buffers (no join).  What the socket does not take at once
is written when it is writable (:class:`LinkWriter` is its own write descriptor).  Behind
it, data messages wait (their parts held, not copied) up to ``max_queued`` bytes — a socket
buffer is a few hundred KiB, a few 10 ms blocks at full rate; beyond that they are not sent
but counted by the caller (:meth:`LinkWriter.data` returns False), while the few event
messages always queue (:meth:`LinkWriter.event`).  :func:`split` cuts a received buffer
into messages (a malformed one raises :class:`LinkError`); :class:`Inbox` reads a socket
into one reused buffer and hands out each message's data as a view, no copy.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

from twisted.internet.interfaces import IWriteDescriptor
from zope.interface import implementer

_HEAD = struct.Struct("!IBI")
#: A message longer than this is not ours (a block of 4 096 chunks of 64 KiB is 256 MiB).
MAX_MESSAGE = 1 << 29
#: Buffers of one message at most (``sendmsg``'s IOV_MAX is 1 024): more are joined.
MAX_PARTS = 1000
#: Send buffer of a link (the kernel may cap it): room for a few blocks at full rate.
LINK_SNDBUF = 4 << 20
#: A reader's buffer (:class:`Inbox`): all a full send buffer holds in one read.
INBOX_SIZE = 8 << 20


def link_pair() -> tuple[socket.socket, socket.socket]:
    """A link's sockets: the proxy's end (non-blocking, ``LINK_SNDBUF``) and the child's."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_SNDBUF)
    return ours, theirs


class LinkError(ValueError):
    """Bytes on a link that are not a message of this format."""


def message(kind: int, header: dict[str, Any], data: list[bytes] | None = None,
            nbytes: int | None = None) -> list[bytes]:
    """One message as the parts to write (``sendmsg``); ``nbytes``: the data's length, when
    the caller knows it (datagrams of one layout: one length), saves a pass over the parts."""
    return encoded(kind, json.dumps(header, separators=(",", ":")).encode(), data, nbytes)


def encoded(kind: int, body: bytes, data: list[bytes] | None = None,
            nbytes: int | None = None) -> list[bytes]:
    """:func:`message` with its header already JSON (a sender that keeps its fixed part)."""
    data = data or []
    if len(data) > MAX_PARTS:
        data = [b"".join(data)]
    size = 1 + 4 + len(body) + (sum(map(len, data)) if nbytes is None else nbytes)
    return [_HEAD.pack(size, kind, len(body)), body, *data]


def _length(parts: list[bytes]) -> int:
    """A whole message's length, from its head (no pass over its parts)."""
    return 4 + _HEAD.unpack_from(parts[0])[0]


def _next(buf: Any, at: int, end: int) -> tuple[int, dict[str, Any], int, int] | None:
    """The message at ``buf[at:end]`` if it is whole: kind, header, where its data starts and
    ends (the next message starts there); raises :class:`LinkError` for a malformed one."""
    if end - at < _HEAD.size:
        return None
    size, kind, jlen = _HEAD.unpack_from(buf, at)
    if size > MAX_MESSAGE or jlen > size - 5:
        raise LinkError(f"a malformed message ({size} bytes, header {jlen})")
    stop = at + 4 + size
    if end < stop:
        return None
    start = at + _HEAD.size
    try:
        head = json.loads(bytes(buf[start:start + jlen]))
    except ValueError as e:
        raise LinkError(f"a message header that is not JSON: {e}") from None
    if not isinstance(head, dict):
        raise LinkError("a message header that is not a JSON object")
    return kind, head, start + jlen, stop


def split(buf: bytearray) -> Iterator[tuple[int, dict[str, Any], bytearray]]:
    """The whole messages at the start of ``buf`` (kind, header, data — copies), removed from
    it as they are taken; raises :class:`LinkError` for a malformed one."""
    at = 0
    try:
        while (found := _next(buf, at, len(buf))) is not None:
            kind, head, start, at = found
            yield kind, head, buf[start:at]
    finally:
        if at:
            del buf[:at]


class Inbox:
    """A link's receiving end without copies: the socket read into one reused buffer, each
    message's data handed out as a view of it — valid until the next :meth:`recv`."""

    def __init__(self, size: int = INBOX_SIZE) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._at = 0  # the first byte not taken
        self._end = 0  # the first byte not filled

    def recv(self, sock: socket.socket) -> int:
        """Read what ``sock`` has (at most the room left); 0: the other end closed.  Raises
        ``BlockingIOError`` when there is nothing to read."""
        if self._end == len(self._buf):
            self._make_room()
        n = sock.recv_into(self._view[self._end:])
        self._end += n
        return n

    def feed(self, data: bytes) -> None:
        """Bytes from elsewhere (a test, another transport): copied in."""
        while data:
            if self._end == len(self._buf):
                self._make_room()
            n = min(len(data), len(self._buf) - self._end)
            self._view[self._end:self._end + n] = data[:n]
            self._end += n
            data = data[n:]

    def messages(self) -> Iterator[tuple[int, dict[str, Any], memoryview]]:
        """The whole messages read so far (kind, header, data as a view); raises
        :class:`LinkError` for a malformed one."""
        while (found := _next(self._view, self._at, self._end)) is not None:
            kind, head, start, self._at = found
            yield kind, head, self._view[start:self._at]

    def _make_room(self) -> None:
        """Move the part of a message read so far to the front; a buffer it fills gets
        bigger (the message's size is in its head)."""
        rest = self._end - self._at
        need = len(self._buf)
        if rest >= _HEAD.size:
            size = _HEAD.unpack_from(self._view, self._at)[0]
            if size > MAX_MESSAGE:
                raise LinkError(f"a malformed message ({size} bytes)")
            need = max(need, 4 + size)
        if rest == len(self._buf) or need > len(self._buf):  # a message bigger than the buffer
            buf = bytearray(max(need, 2 * len(self._buf)))
            buf[:rest] = self._view[self._at:self._end]
            self._buf, self._view = buf, memoryview(buf)
        else:
            self._view[:rest] = self._view[self._at:self._end]
        self._at, self._end = 0, rest


@implementer(IWriteDescriptor)
class LinkWriter:
    """The proxy's end of a link; see the module note."""

    def __init__(self, sock: socket.socket, reactor: Any, max_queued: int = 0) -> None:
        self.sock = sock
        self.reactor = reactor
        #: Bytes of data messages that may wait behind a full socket (0: none).
        self.max_queued = max_queued
        self.closed = False
        #: The unsent end of a message: its parts from the first not wholly sent (no copy).
        self._rest: list[Any] | None = None
        self._queue: collections.deque[list[bytes]] = collections.deque()
        self._queued = 0
        self._writing = False  # registered with the reactor as a writer

    @property
    def behind(self) -> bool:
        return self._rest is not None or bool(self._queue)

    @property
    def queued(self) -> int:
        """Bytes of messages waiting behind the socket."""
        return self._queued + (0 if self._rest is None else sum(map(len, self._rest)))

    def data(self, parts: list[bytes]) -> bool:
        """Send a data message now, or queue it within ``max_queued``; False: not sent."""
        if self.closed:
            return False
        if self.behind:
            size = _length(parts)
            if self._queued + size > self.max_queued:
                return False
            self._queue.append(parts)
            self._queued += size
            return True
        self._send(parts)
        return True

    def event(self, parts: list[bytes]) -> None:
        """Send an event message, behind what waits if need be (never dropped while open)."""
        if self.closed:
            return
        if self.behind:
            self._queue.append(parts)
            self._queued += _length(parts)
            return
        self._send(parts)

    def _send(self, parts: list[bytes]) -> bool:
        """Write one message; False: the socket took part of it (the rest waits) or failed."""
        try:
            n = self.sock.sendmsg(parts)
        except BlockingIOError:
            n = 0
        except OSError:
            self.close()
            return False
        if n < _length(parts):
            self._rest = _after(parts, n)
            if not self._writing:
                self._writing = True
                self.reactor.addWriter(self)
            return False
        return True

    # IWriteDescriptor: what waits, when the socket is writable
    def doWrite(self) -> None:
        while True:
            if self._rest is not None:
                try:
                    n = self.sock.sendmsg(self._rest)
                except BlockingIOError:
                    return None
                except OSError:
                    self.close()
                    return None
                rest = _after(self._rest, n)
                if rest:
                    self._rest = rest
                    return None
                self._rest = None
            if not self._queue:
                break
            parts = self._queue.popleft()
            self._queued -= _length(parts)
            if not self._send(parts) and self.closed:
                return None
        self._writing = False
        self.reactor.removeWriter(self)
        return None

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()

    def logPrefix(self) -> str:
        return type(self).__name__

    def connectionLost(self, reason: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        if self._writing:
            self._writing = False
            self.reactor.removeWriter(self)
        self._rest = None
        self._queue.clear()
        self._queued = 0
        self.closed = True
        self.sock.close()


def _after(parts: list[Any], n: int) -> list[Any]:
    """What of ``parts`` is left after their first ``n`` bytes were sent (views, no copy)."""
    for i, part in enumerate(parts):
        if n < len(part):
            return [memoryview(part)[n:], *parts[i + 1:]]
        n -= len(part)
    return []

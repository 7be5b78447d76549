"""Handing a viewer's connection from the proxy to the live-view process (``--live-process``).

Design note
-----------
The proxy answers ``/live`` itself (page, script, auth, the Origin check) but a WebSocket
upgrade on a plain-TCP status port is *handed over*: :func:`hand_over` sends the connected
socket over a Unix socket pair (``SCM_RIGHTS``) with the request's head, then swaps the
proxy's own descriptor for an unconnected socket (``dup2``) and aborts that, so closing it
in the proxy neither shuts down nor resets the viewer's connection.  The live-view process
(:class:`Adopter`) adopts the socket into its own reactor and replays the head into its
``Site``: the upgrade, the frames and every byte to the viewer cost the proxy nothing more.
A TLS connection cannot be handed over (its session lives in the proxy): it is served
in-process.  Each message on the pair: the descriptor with a 4-byte length and the head.
The other direction carries the live process's one-JSON-object lines (ready, viewers).
"""

from __future__ import annotations

import collections
import os
import socket
import struct
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_LEN = struct.Struct("!I")
#: A request head larger than this is not handed over (the proxy serves it or refuses it).
MAX_HEAD = 64 << 10
_log = Logger()


def request_head(request: Any) -> bytes:
    """The request line and headers as the viewer sent them (the body is empty: a GET)."""
    lines = [b"%s %s HTTP/1.1" % (request.method, request.uri)]
    for name, values in request.requestHeaders.getAllRawHeaders():
        lines.extend(name + b": " + value for value in values)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def can_hand_over(request: Any) -> bool:
    """A plain TCP connection (not TLS) whose request is a WebSocket upgrade."""
    tcp = getattr(request.channel, "transport", None)
    upgrade = (request.getHeader("upgrade") or "").lower() == "websocket"
    return upgrade and not request.isSecure() and hasattr(tcp, "getHandle")


def hand_over(pair: socket.socket, request: Any) -> bool:
    """Send ``request``'s connection over ``pair`` and let go of it; False (nothing changed)
    when the pair is full or gone."""
    head = request_head(request)
    if len(head) > MAX_HEAD:
        return False
    tcp = request.channel.transport
    sock = tcp.getHandle()
    try:
        socket.send_fds(pair, [_LEN.pack(len(head)) + head], [sock.fileno()])
    except OSError:  # full (the live process is not reading) or closed
        return False
    # the kernel holds the descriptor in flight now: swap ours for a socket nobody uses
    tcp.stopReading()
    tcp.stopWriting()
    blank = socket.socket(sock.family, socket.SOCK_STREAM)
    try:
        os.dup2(blank.fileno(), sock.fileno())
    finally:
        blank.close()
    tcp.abortConnection()
    return True


@implementer(IFileDescriptorReceiver)
class Adopter(protocol.Protocol):
    """In the live process: takes connections from the proxy into ``site`` and tells the
    proxy its state as JSON lines (:meth:`say`).  ``lost`` is called when the proxy is gone."""

    def __init__(self, reactor: Any, site: Any, lost: Any = None) -> None:
        self.reactor = reactor
        self.site = site
        self.lost = lost
        self.fds: collections.deque[int] = collections.deque()
        self.buffer = b""
        self.adopted = 0
        self.failed = 0

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.fds.append(descriptor)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _LEN.size:
            (size,) = _LEN.unpack_from(self.buffer)
            if size > MAX_HEAD or not self.fds:
                _log.error("live process: a hand-off without its connection; closing")
                if self.transport is not None:
                    self.transport.loseConnection()
                return
            if len(self.buffer) < _LEN.size + size:
                return
            head = self.buffer[_LEN.size:_LEN.size + size]
            self.buffer = self.buffer[_LEN.size + size:]
            self.adopt(self.fds.popleft(), head)

    def adopt(self, descriptor: int, head: bytes) -> None:
        """The viewer's connection into our ``Site``, its request replayed; never raises."""
        try:
            sock = socket.socket(fileno=descriptor)  # the family read from the descriptor
        except OSError:
            os.close(descriptor)
            self.failed += 1
            return
        try:
            sock.setblocking(False)
            conn = self.reactor.adoptStreamConnection(sock.fileno(), sock.family, self.site)
        except Exception:
            self.failed += 1
            _log.failure("live process: a viewer's connection could not be adopted")
            return
        finally:
            sock.close()  # the reactor keeps its own duplicate
        self.adopted += 1
        conn.protocol.dataReceived(head)

    def say(self, text: bytes) -> None:
        if self.transport is not None:
            self.transport.write(text + b"\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        if self.lost is not None:
            self.lost()


class AdopterFactory(protocol.Factory):
    def __init__(self, adopter: Adopter) -> None:
        self.adopter = adopter

    def buildProtocol(self, addr: Any) -> Adopter:
        return self.adopter

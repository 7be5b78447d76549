"""Whether the proxy reads a client's connection now (TCP back-pressure on requests).

Design note
-----------
A client may send requests faster than they are answered: more than ``Front.max_outstanding``
forwarded at once, while its replies are not being read (its sender is paused), or right after
a wrong token (the auth delay).  Instead of buffering, the proxy stops reading that client: a
:class:`ReadGate` holds for one or more named reasons, and while it holds the transport is
paused (``pauseProducing``: the kernel's receive buffer fills and TCP flow control stops the
client) and the connection's frame receiver is paused too (``pauseFrames``): the rest of the
last segment read stays raw bytes in the receiver — at most one segment, never parsed while
the gate holds.  When the last reason is released, the waiting frames are handled in order —
until a reason holds again — and reading resumes.  A frame offered while the gate holds (a
receiver that cannot pause) waits in ``held``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from pybrid.proto import pb
from pybrid.wire.interfaces import IStreamTransport


class FrameSource(Protocol):
    """What delivers a connection's frames (an :class:`~pybrid.wire.framing.EnvelopeReceiver`)."""

    def pauseFrames(self) -> None: ...

    def resumeFrames(self) -> None: ...


@attrs.define(eq=False)
class ReadGate:
    """Reasons not to read one client now, and the frames read meanwhile; see the module note."""

    transport: IStreamTransport
    clock: IReactorTime
    #: Handles one frame (the front's ``frame_received`` for this session).
    handle: Callable[[pb.Envelope, bytes], None] | None = None
    #: The connection's frame receiver, paused and resumed with the transport.
    frames: FrameSource | None = None
    #: Called each time the gate closes (the front's counter).
    on_pause: Callable[[], None] | None = None
    holds: set[str] = attrs.field(factory=set)
    held: deque[tuple[pb.Envelope, bytes]] = attrs.field(factory=deque)
    #: Times the gate closed (for the status page and tests).
    pauses: int = 0
    _timers: dict[str, IDelayedCall] = attrs.field(factory=dict)
    _closed: bool = False

    @property
    def open(self) -> bool:
        return not self.holds

    def offer(self, env: pb.Envelope, payload: bytes) -> bool:
        """A frame was read: True to handle it now, False if it was held."""
        if self.holds:
            self.held.append((env, payload))
            return False
        return True

    def hold(self, reason: str, seconds: float | None = None) -> None:
        """Stop reading for ``reason`` (until :meth:`release`, or ``seconds`` on the clock)."""
        if self._closed:
            return
        if not self.holds:
            self.pauses += 1
            if self.on_pause is not None:
                self.on_pause()
            _call(self.transport, "pauseProducing")
            if self.frames is not None:
                self.frames.pauseFrames()
        self.holds.add(reason)
        if seconds is not None:
            old = self._timers.pop(reason, None)
            if old is not None and old.active():
                old.cancel()
            self._timers[reason] = self.clock.callLater(seconds, self._expired, reason)

    def _expired(self, reason: str) -> None:
        self._timers.pop(reason, None)
        self.release(reason)

    def release(self, reason: str) -> None:
        if reason not in self.holds or self._closed:
            return
        self.holds.discard(reason)
        while not self.holds and self.held and not self._closed:
            env, payload = self.held.popleft()
            if self.handle is not None:
                self.handle(env, payload)
        if not self.holds and not self._closed and self.frames is not None:
            self.frames.resumeFrames()  # the waiting bytes: handled until a reason holds again
        if not self.holds and not self._closed and not getattr(self.transport, "disconnecting",
                                                                  False):
            _call(self.transport, "resumeProducing")

    def close(self) -> None:
        """The connection is gone: drop what is held, cancel the timers."""
        self._closed = True
        self.held.clear()
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()


def _call(transport: object, name: str) -> None:
    """``transport.pauseProducing()`` / ``resumeProducing()`` (TCP transports have both)."""
    method = getattr(transport, name, None)
    if method is not None:
        try:
            method()
        except RuntimeError:  # closing already (a test transport says so)
            pass

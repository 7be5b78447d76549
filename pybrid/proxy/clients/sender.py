"""Per-client output: the single place every byte the proxy sends to a client goes through.

Design note
-----------
Replies, notifications and forwarded run data all reach a client through its
:class:`ClientSender`.  Data forwarded from a backend is written as the backend's original
Envelope bytes behind a varint length prefix (no re-serialization; prefix and payload are
handed to the transport separately, so a large payload is not copied to prepend two bytes).

**Flow control.**  The sender is the transport's streaming producer (:meth:`attach` registers
it; the transport unregisters it when the connection goes).  Device intake must never wait for
a slow client, so the sender never blocks and never drops anything silently:

* while the transport accepts data (not paused), a frame is written straight through;
* once Twisted's buffer passes ``transport.bufferSize`` the transport calls
  :meth:`pauseProducing`, and frames go to the sender's own queue (``queued`` bytes; the
  high-water mark is ``counters.peak``);
* :meth:`resumeProducing` (the transport flushed its buffer) moves queued frames into the
  transport in batches until it pauses us again or the queue is empty;
* a frame that would take the queue past ``limit`` (``--client-buffer``) is an **overflow**:
  the queue — run data the client could not take in time — is discarded and counted,
  ``on_overflow`` is called with an :class:`~pybrid.proxy.sizes.Overflow` (the client protocol
  then fails the run: ``error_message`` with the bytes buffered and the limit, stop_run to the
  backends, session closed), and if that did not close the sender it closes itself with that
  message.  Frames after the close are counted in ``counters.dropped``.

Pause and resume are idempotent.  Besides the queue, at most ``transport.bufferSize`` (1 MiB,
less for a smaller limit) waits in Twisted's buffer.

**Waiting sizes.**  A sender made with ``active_limit`` starts small — ``limit`` (1 MiB) and
a 64 KiB transport buffer (``WAITING_*`` in :mod:`pybrid.proxy.sizes`): a connection that is
not the active session only gets replies.  :meth:`activate` (the scheduler's promotion) gives
it ``active_limit`` (``--client-buffer``) and the full transport buffer.

**Closing.**  :meth:`close` writes what is queued, then ``loseConnection`` (which flushes the
transport).  A client that does not take its last bytes within ``close_grace`` seconds (on the
injected clock; a close may ask for another bound, e.g. the longer one after an overflow, where
only the error frames wait) is aborted, so a stuck client cannot hold a connection and its
buffers forever.  A close with ``linger`` waits that long after the queue is written before
``loseConnection``: the reference client drops run states that arrive right before the close.
:meth:`when_gone` fires once the connection is gone (the service waits for it at shutdown).

**States.**  Flow control and closing are one machine, the table
:data:`~pybrid.proxy.clients.states.SENDER`: a frame is written in OPEN, queued in PAUSED,
refused and counted in every other state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet import abstract, defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from pybrid.proto import pb
from pybrid.proxy.clients.states import SENDER, SenderState
from pybrid.proxy.sizes import (
    CLOSE_GRACE,
    DEFAULT_CLIENT_BUFFER,
    TRANSPORT_BUFFER,
    WAITING_TRANSPORT_BUFFER,
    Overflow,
)
from pybrid.wire import messages
from pybrid.wire.counters import snapshot
from pybrid.wire.framing import encode_varint
from pybrid.wire.interfaces import IStreamTransport
from pybrid.wire.observer import OneShotObserver

_OPEN, _PAUSED, _CLOSING, _CLOSING_PAUSED, _LINGERING, _RELEASED, _ABORTED, _GONE = SenderState
_SENDER = SENDER.transitions

_PREFIXES: dict[int, bytes] = {}


def _prefix(n: int) -> bytes:
    """The varint length prefix of an ``n``-byte frame (cached: sizes repeat)."""
    prefix = _PREFIXES.get(n)
    if prefix is None:
        if len(_PREFIXES) > 4096:
            _PREFIXES.clear()
        prefix = _PREFIXES[n] = encode_varint(n)
    return prefix


def _producer_of(transport: object) -> object:
    """The producer registered with ``transport``: Twisted's transports (and StringTransport)
    keep it in ``producer``, which :class:`~twisted.internet.interfaces.IConsumer` does not
    declare."""
    return getattr(transport, "producer", None)


@attrs.define
class SenderCounters:
    """What one sender wrote, queued or refused."""

    #: Frames and bytes (payload only) accepted for the client.
    frames: int = 0
    bytes: int = 0
    #: Frames refused because the sender was closed.
    dropped: int = 0
    #: Largest number of bytes ever queued (the sender's queue, not Twisted's buffer).
    peak: int = 0
    pauses: int = 0
    resumes: int = 0
    overflows: int = 0
    #: Queued frames (and their bytes, prefixes included) discarded by an overflow or a lost
    #: connection.
    discarded_frames: int = 0
    discarded_bytes: int = 0
    #: Connections aborted because the client did not take its last bytes in time.
    aborted: int = 0


@attrs.frozen(kw_only=True)
class SenderStatus(SenderCounters):
    """What one sender wrote to its client and holds now (:meth:`ClientSender.status`)."""

    #: Bytes waiting in the sender's queue, and the most it may hold (``--client-buffer``).
    buffered: int
    limit: int


@implementer(IPushProducer)
@attrs.define(eq=False)
class ClientSender:
    """Frames and writes Envelopes to one client's TCP transport; see the module note."""

    transport: IStreamTransport
    #: Most bytes the queue may hold (``--client-buffer``).
    limit: int = DEFAULT_CLIENT_BUFFER
    #: Clock for the close grace timer (none: no timer).
    clock: IReactorTime | None = None
    #: Called once with the :class:`Overflow` when the queue overflows.
    on_overflow: Callable[[Overflow], None] | None = None
    close_grace: float = CLOSE_GRACE
    #: Called after each resume (the front reads the client again: pybrid.proxy.clients.gate).
    on_resume: Callable[[], None] | None = None
    #: The limit once active (``--client-buffer``); None: ``limit`` from the start (active).
    active_limit: int | None = None
    counters: SenderCounters = attrs.field(factory=SenderCounters)
    #: Changed only by :meth:`_to` (the table :data:`SENDER`).
    state: SenderState = SenderState.OPEN
    #: Bytes waiting in ``queue`` (prefixes included).
    queued: int = 0
    queue: deque[bytes] = attrs.field(factory=deque)
    overflow: Overflow | None = None
    _abort_timer: IDelayedCall | None = None
    _linger: float = 0.0
    _grace: float = CLOSE_GRACE
    _linger_timer: IDelayedCall | None = None
    _gone: OneShotObserver[None] = attrs.field(factory=OneShotObserver)
    #: Bytes handed to the transport per write while draining (its buffer size).
    _batch: int = TRANSPORT_BUFFER

    log = Logger()

    # -- set-up ---------------------------------------------------------------------------

    def attach(self) -> None:
        """Register as the transport's streaming producer and size its buffer."""
        transport = self.transport
        self._size(WAITING_TRANSPORT_BUFFER if self.active_limit is not None else TRANSPORT_BUFFER)
        if _producer_of(transport) is None:
            transport.registerProducer(self, True)

    def activate(self) -> None:
        """The session became active: the full limit and transport buffer."""
        if self.active_limit is not None:
            self.limit, self.active_limit = max(self.limit, self.active_limit), None
            self._size(TRANSPORT_BUFFER)

    @property
    def waiting(self) -> bool:
        """Still on the waiting sizes (not activated)."""
        return self.active_limit is not None

    def _size(self, transport_buffer: int) -> None:
        self._batch = min(transport_buffer, self.limit)
        transport = self.transport
        if isinstance(transport, abstract.FileDescriptor):  # the real TCP transports
            transport.bufferSize = self._batch  # also what one read() takes
            transport.SEND_LIMIT = TRANSPORT_BUFFER

    def _to(self, event: str) -> SenderState:
        # the table's dict read here (one call less per pause/resume); SENDER.next raises
        state = _SENDER.get((self.state, event)) or SENDER.next(self.state, event)
        self.state = state
        return state

    @property
    def closed(self) -> bool:
        """No more frames are accepted (close requested, or the connection is gone)."""
        state = self.state
        return state is not _OPEN and state is not _PAUSED

    @property
    def paused(self) -> bool:
        """The transport asked us to stop writing (and the queue is not written yet)."""
        state = self.state
        return state is _PAUSED or state is _CLOSING_PAUSED

    @property
    def buffered(self) -> int:
        """Bytes waiting in the sender's queue."""
        return self.queued

    def status(self) -> SenderStatus:
        return snapshot(SenderStatus, self.counters, buffered=self.queued, limit=self.limit)

    # -- writing --------------------------------------------------------------------------

    def send_payload(self, payload: bytes) -> None:
        """Write one serialized Envelope as a frame (or queue it while paused)."""
        state = self.state
        if state is not _OPEN and state is not _PAUSED:
            self.counters.dropped += 1
            return
        n = len(payload)
        counters = self.counters
        counters.frames += 1
        counters.bytes += n
        prefix = _prefix(n)
        if state is _PAUSED or self.queue:
            size = len(prefix) + n
            if self.queued + size > self.limit:
                self._overflowed(size)
                return
            self.queue.append(prefix)
            self.queue.append(payload)
            queued = self.queued = self.queued + size
            if queued > counters.peak:
                counters.peak = queued
            return
        self.transport.writeSequence((prefix, payload))

    def send_envelope(self, envelope: pb.Envelope) -> None:
        self.send_payload(envelope.SerializeToString())

    # -- IPushProducer --------------------------------------------------------------------

    def pauseProducing(self) -> None:
        was = self.state
        if self._to("pause") is not was:
            self.counters.pauses += 1

    def resumeProducing(self) -> None:
        was = self.state
        if self._to("resume") is _GONE:
            return
        if self.state is not was:
            self.counters.resumes += 1
        self._drain()
        if self.on_resume is not None and not self.paused:
            self.on_resume()

    def stopProducing(self) -> None:
        """The transport is gone (Twisted calls this when the connection is lost)."""
        self.connection_gone()

    def _drain(self) -> None:
        queue, transport = self.queue, self.transport
        batch_limit = (transport.bufferSize if isinstance(transport, abstract.FileDescriptor)
                       else self._batch)
        while queue and not self.paused:
            batch: list[bytes] = []
            size = 0
            while queue and size < batch_limit:  # pieces come in pairs: prefix, payload
                prefix, payload = queue.popleft(), queue.popleft()
                batch += (prefix, payload)
                size += len(prefix) + len(payload)
            self.queued -= size
            transport.writeSequence(batch)
        if not queue and (self.state is _CLOSING or self.state is _CLOSING_PAUSED):
            self._drained()

    # -- overflow and closing -------------------------------------------------------------

    def _overflowed(self, incoming: int) -> None:
        frames, size = len(self.queue) // 2, self.queued
        self.queue.clear()
        self.queued = 0
        counters = self.counters
        counters.overflows += 1
        counters.discarded_frames += frames + 1
        counters.discarded_bytes += size + incoming
        name = ("for a connection that is not the active session" if self.waiting
                else "--client-buffer")
        self.overflow = overflow = Overflow(size, self.limit, incoming, frames + 1,
                                            size + incoming, limit_name=name)
        self.log.warn(
            "client sender: queue overflow, {buffered} bytes buffered (limit {limit}); "
            "{frames} frames discarded", buffered=size, limit=self.limit, frames=frames + 1,
        )
        if self.on_overflow is not None:
            try:
                self.on_overflow(overflow)
            except Exception:
                self.log.failure("client sender: overflow handler failed")
        if not self.closed:
            self.send_envelope(messages.error(overflow.describe()))
            self.close()

    def close(self, *, grace: float | None = None, linger: float = 0.0) -> None:
        """Stop accepting frames; close once everything accepted so far is written.

        ``grace`` (default ``close_grace``): abort if the client has not taken it all by
        then.  ``linger``: wait this long after the queue is written before closing.
        """
        was = self.state
        self._to("close")
        if was is not _OPEN and was is not _PAUSED:
            return
        self._linger = linger if self.clock is not None else 0.0
        if not self.queue:
            self._drained()
        grace = self._grace = self.close_grace if grace is None else grace
        if self.clock is not None and grace > 0:
            self._abort_timer = self.clock.callLater(grace, self._abort)

    def when_gone(self) -> defer.Deferred[None]:
        """Fires once the connection is gone (at once if it is)."""
        if self.state is _GONE:
            return defer.succeed(None)
        return self._gone.when_fired()

    def _drained(self) -> None:
        """The queue is written: let go, after the linger if there is one."""
        self._to("drained")
        if self._linger > 0 and self.clock is not None:
            self._linger_timer = self.clock.callLater(self._linger, self._let_go)
            self._linger = 0.0
            return
        self._let_go()

    def _let_go(self) -> None:
        """Nothing more to produce: unregister (else Twisted, having paused us, would wait for
        a resume instead of closing) and close after the transport's flush."""
        self._linger_timer = None
        if self.state is _GONE:
            return
        self._to("let_go")
        if _producer_of(self.transport) is self:
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _abort(self) -> None:
        self._abort_timer = None
        if self.state is _GONE:
            return
        self._to("abort")
        if self._linger_timer is not None and self._linger_timer.active():
            self._linger_timer.cancel()
        self._linger_timer = None
        self.counters.aborted += 1
        self.log.warn("client did not take its last {queued} queued bytes within {grace:g} s; "
                      "aborting the connection", queued=self.queued, grace=self._grace)
        self._discard()
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def connection_gone(self) -> None:
        """The transport is gone: later writes are dropped and counted; queued data too."""
        if self.state is _GONE:
            return
        self._to("gone")
        self._discard()
        for timer in (self._abort_timer, self._linger_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._abort_timer = self._linger_timer = None
        if _producer_of(self.transport) is self:
            self.transport.unregisterProducer()
        self._gone.fire(None)

    def _discard(self) -> None:
        if self.queue:
            self.counters.discarded_frames += len(self.queue) // 2
            self.counters.discarded_bytes += self.queued
            self.queue.clear()
            self.queued = 0

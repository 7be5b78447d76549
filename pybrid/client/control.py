"""The client's control lane: requests, replies, busy retries and pings over one TCP connection.

Design note
-----------
:class:`ClientProtocol` only splits bytes into Envelopes (via
:class:`~pybrid.wire.framing.EnvelopeReceiver`) and hands each one to its
:class:`ControlChannel`, which decides what it is, in this order (``envelopeReceived``):

1. ``generic.ping_response`` answers the oldest outstanding ping (a generic pong has no id; the
   reference proxy answers a v1 ``ping_command`` with one too).
2. ``run_state_change_message`` / ``run_data_message`` / ``run_data_end_message`` are run
   notifications (they carry a fresh id or none) and go to ``on_notification`` — the same sink
   the UDP data lane feeds.  Data frames of a layout learned from earlier parsed ones are
   read without protobuf (:mod:`pybrid.client.fastdata`) and go to ``on_fast_data``; one it
   does not take is parsed and handled as above.
3. A v1 message whose id belongs to an outstanding v1 ping answers that ping (whatever its kind:
   a queued session on a proxy gets ``busy_response``, which is still an answer).
4. Otherwise the :class:`~pybrid.wire.correlate.RequestTracker` matches it to its request.
5. An ``error_message`` that answers nothing (the proxy's id-less "Cluster degraded: …") is fatal
   for the session: every waiter fails with :class:`ConnectionLost` and ``on_fatal`` is called.
6. Anything else is counted in ``counters.unexpected`` and logged.

:meth:`ControlChannel.request` hides ``busy_response``: the same request is resent with a fresh
id every ``busy_retry`` seconds until ``busy_timeout`` seconds (measured on the injected clock
from the first attempt) have passed; the next busy answer after that fails the request with
:class:`DeviceBusyError`.  ``error_message`` becomes :class:`RequestFailed`; no reply within
``request_timeout`` becomes :class:`RequestTimeout`.  Cancelling the returned Deferred forgets
the request and stops retrying.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf.message import Message
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.client.errors import (
    AuthenticationError,
    ConnectionLost,
    DeviceBusyError,
    PingTimeout,
    RequestFailed,
)
from pybrid.client.fastdata import DataFastPath, FastData
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.correlate import RequestTracker
from pybrid.wire.framing import EnvelopeReceiver
from pybrid.wire.observer import OneShotObserver

log = Logger()


class ClientProtocol(EnvelopeReceiver):
    """The TCP protocol of a client connection: frames in, :class:`ControlChannel` decides."""

    def __init__(self, channel: ControlChannel) -> None:
        self.channel = channel

    def connectionMade(self) -> None:
        self.channel.connectionMade(self)

    def frameReceived(self, payload: bytes) -> None:
        """Run data frames of a learned layout skip protobuf (:mod:`pybrid.client.fastdata`)
        when the channel takes them; everything else takes the full parse."""
        channel = self.channel
        fast = channel.fast_path.match(payload)
        if fast is not None and channel.on_fast_data(fast):
            counters = self.counters
            counters.frames += 1
            counters.bytes += len(payload)
            channel.counters.notifications += 1
            return
        super().frameReceived(payload)

    def envelopeReceived(self, envelope: pb.Envelope, payload: bytes) -> None:
        channel = self.channel
        if channel.on_fast_data is not _refuse_fast:
            kind = envelope.message_v1.WhichOneof("kind")
            if kind == "run_data_message" or kind == "run_data_end_message":
                channel.fast_path.learn(envelope, payload)
        channel.envelopeReceived(envelope)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.channel.connectionLost(reason)


class ClientFactory(protocol.Factory):
    """Builds the one :class:`ClientProtocol` of a connection for its channel."""

    noisy = False

    def __init__(self, channel: ControlChannel) -> None:
        self.channel = channel

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        p = ClientProtocol(self.channel)
        p.factory = self
        return p


def _refuse_fast(data: FastData) -> bool:
    return False


@attrs.define
class ControlCounters:
    """What the control lane saw beyond ordinary replies."""

    busy_answers: int = 0
    unexpected: int = 0
    notifications: int = 0


@attrs.define(eq=False)
class _Ping:
    kind: str
    request_id: str | None
    sent_at: float
    deferred: defer.Deferred[float]
    timer: IDelayedCall


@attrs.define(eq=False)
class _BusyRetryingRequest:
    """One logical request that is resent while the peer answers ``busy_response``."""

    channel: ControlChannel
    kind: str
    body: Message | None
    timeout: float | None
    started: float
    deferred: defer.Deferred[pb.Envelope] = attrs.field(init=False)
    attempts: int = 0
    waiting: defer.Deferred[pb.Envelope] | None = None
    retry_timer: IDelayedCall | None = None
    finished: bool = False

    def __attrs_post_init__(self) -> None:
        self.deferred = defer.Deferred(lambda _d: self.cancel())

    def attempt(self) -> None:
        self.retry_timer = None
        if self.finished:
            return
        self.attempts += 1
        ch = self.channel
        request_id, env = messages.request(self.kind, self.body)
        waiting = ch.tracker.expect(request_id, self.kind, self.timeout)
        self.waiting = waiting
        waiting.addCallbacks(self._reply, self._failed)
        ch.send(env)

    def _reply(self, env: pb.Envelope) -> None:
        self.waiting = None
        ch = self.channel
        kind = messages.kind_of(env)
        if kind == "busy_response":
            ch.counters.busy_answers += 1
            waited = ch.clock.seconds() - self.started
            if waited + ch.busy_retry > ch.busy_timeout:
                self.finish(Failure(DeviceBusyError(self.kind, waited, self.attempts, ch.peer)))
                return
            log.debug(
                "{peer} busy; retrying {kind} in {delay} s",
                peer=ch.peer, kind=self.kind, delay=ch.busy_retry,
            )
            self.retry_timer = ch.clock.callLater(ch.busy_retry, self.attempt)
        elif kind == "error_message":
            desc = env.message_v1.error_message.description
            err_type = AuthenticationError if self.kind == "auth_request" else RequestFailed
            self.finish(Failure(err_type(self.kind, desc, ch.peer)))
        else:
            self.finish(env)

    def _failed(self, failure: Failure) -> None:
        self.waiting = None
        if failure.check(defer.CancelledError) and self.finished:
            return None
        self.finish(failure)
        return None

    def _end(self) -> bool:
        """Finished now (False: it was already): leave the channel, stop retrying."""
        if self.finished:
            return False
        self.finished = True
        self.channel.active.discard(self)
        timer, self.retry_timer = self.retry_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        return True

    def finish(self, result: pb.Envelope | Failure) -> None:
        if not self._end():
            return
        if isinstance(result, Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)

    def cancel(self) -> None:
        """The caller cancelled: stop retrying and forget the outstanding attempt."""
        if not self._end():
            return
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.cancel()


@attrs.define(eq=False)
class ControlChannel:
    """Request/response bookkeeping of one client connection; see the module's design note.

    Owned by a :class:`~pybrid.client.computer.Computer`; ``on_notification`` receives run
    notifications, ``on_fatal`` an id-less error from the peer, ``on_lost`` the end of the
    connection.
    """

    clock: IReactorTime
    peer: str = ""
    request_timeout: float = 5.0
    busy_retry: float = 0.2
    busy_timeout: float = 60.0
    on_notification: Callable[[pb.Envelope], None] = lambda env: None
    #: Run data read by the fast path; False = not taken (the frame is then parsed and goes
    #: to ``on_notification`` like any other).
    on_fast_data: Callable[[FastData], bool] = _refuse_fast
    fast_path: DataFastPath = attrs.field(factory=DataFastPath)
    on_fatal: Callable[[str], None] = lambda description: None
    on_lost: Callable[[Failure], None] = lambda reason: None
    protocol: ClientProtocol | None = None
    tracker: RequestTracker = attrs.field(init=False)
    counters: ControlCounters = attrs.field(factory=ControlCounters)
    active: set[_BusyRetryingRequest] = attrs.field(factory=set)
    pings: list[_Ping] = attrs.field(factory=list)
    lost: Failure | None = None
    _closed: OneShotObserver[None] = attrs.field(factory=OneShotObserver)

    def __attrs_post_init__(self) -> None:
        self.tracker = RequestTracker(self.clock, self.request_timeout, self.peer)

    # -- connection events -------------------------------------------------------------------

    def connectionMade(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol

    def connectionLost(self, reason: Failure) -> None:
        if self.lost is not None:
            return
        self.lost = reason
        self.protocol = None
        self._fail_everything(ConnectionLost(f"connection to {self.peer} closed"))
        self._closed.fire(None)
        self.on_lost(reason)

    def _fail_everything(self, exc: Exception) -> None:
        self.tracker.fail_all(exc)
        for req in list(self.active):
            req.finish(Failure(exc))
        pings, self.pings = self.pings, []
        for p in pings:
            if p.timer.active():
                p.timer.cancel()
            p.deferred.errback(exc)

    @property
    def connected(self) -> bool:
        return self.protocol is not None and self.lost is None

    def close(self) -> defer.Deferred[None]:
        """Close the connection; the Deferred fires once it is closed."""
        if self.lost is not None or self.protocol is None:
            return defer.succeed(None)
        d = self._closed.when_fired()
        transport = self.protocol.transport
        if transport is not None:
            transport.loseConnection()
        return d

    # -- incoming ----------------------------------------------------------------------------

    def envelopeReceived(self, env: pb.Envelope) -> None:
        top = env.WhichOneof("kind")
        if top == "generic":
            self._generic(env)
            return
        if top != "message_v1":
            self.counters.unexpected += 1
            log.warn("ignored an Envelope without a kind from {peer}", peer=self.peer)
            return
        kind = env.message_v1.WhichOneof("kind")
        if kind in messages.RUN_KINDS:  # run notifications, never replies
            self.counters.notifications += 1
            self.on_notification(env)
            return
        rid = messages.request_id(env)
        if rid and self._answer_ping(lambda p: p.request_id == rid):
            return
        if self.tracker.resolve(env):
            return
        if kind == "error_message" and not rid:
            desc = env.message_v1.error_message.description
            log.error("{peer} reported: {description}", peer=self.peer, description=desc)
            self._fail_everything(ConnectionLost(f"{self.peer}: {desc}"))
            self.on_fatal(desc)
            return
        self.counters.unexpected += 1
        log.debug("unexpected {kind} (id {id}) from {peer}", kind=kind, id=rid, peer=self.peer)

    def _generic(self, env: pb.Envelope) -> None:
        which = env.generic.WhichOneof("kind")
        if which == "ping_response":
            if not self._answer_ping(lambda p: True):
                self.counters.unexpected += 1
        elif which == "ping_command":
            self.send(messages.generic_pong())
        else:
            self.counters.unexpected += 1

    def _answer_ping(self, match: Callable[[_Ping], bool]) -> bool:
        for i, p in enumerate(self.pings):
            if match(p):
                del self.pings[i]
                if p.timer.active():
                    p.timer.cancel()
                p.deferred.callback(self.clock.seconds() - p.sent_at)
                return True
        return False

    # -- outgoing ----------------------------------------------------------------------------

    def send(self, env: pb.Envelope) -> None:
        if not self.connected:
            raise ConnectionLost(f"not connected to {self.peer}")
        assert self.protocol is not None
        self.protocol.sendEnvelope(env)

    def request(
        self, kind: str, body: Message | None = None, *, timeout: float | None = None
    ) -> defer.Deferred[pb.Envelope]:
        """Send ``kind`` and fire with the reply Envelope (busy answers handled; see the note)."""
        if not self.connected:
            return defer.fail(ConnectionLost(f"not connected to {self.peer}"))
        req = _BusyRetryingRequest(self, kind, body, timeout, self.clock.seconds())
        self.active.add(req)
        req.attempt()
        return req.deferred

    def notify(self, kind: str, body: Message | None = None) -> bool:
        """Send a request without waiting for its reply (``stop_run_command``); False if closed."""
        if not self.connected:
            return False
        _rid, env = messages.request(kind, body)
        self.send(env)
        return True

    def ping(self, kind: str = "generic", timeout: float | None = None) -> defer.Deferred[float]:
        """Round-trip time in seconds of a generic ping (``"generic"``) or a v1
        ``ping_command`` (``"v1"``)."""
        if kind not in ("generic", "v1"):
            raise ValueError("ping kind must be 'generic' or 'v1'")
        if not self.connected:
            return defer.fail(ConnectionLost(f"not connected to {self.peer}"))
        seconds = self.request_timeout if timeout is None else timeout
        if kind == "generic":
            rid, env = None, messages.generic_ping()
        else:
            rid, env = messages.request("ping_command")

        def cancel(_d: defer.Deferred[float]) -> None:
            self._drop_ping(ping)

        d: defer.Deferred[float] = defer.Deferred(cancel)
        timer = self.clock.callLater(seconds, self._ping_expired, d, kind, seconds)
        ping = _Ping(kind, rid, self.clock.seconds(), d, timer)
        self.pings.append(ping)
        self.send(env)
        return d

    def _drop_ping(self, ping: _Ping) -> None:
        if ping in self.pings:
            self.pings.remove(ping)
        if ping.timer.active():
            ping.timer.cancel()

    def _ping_expired(self, d: defer.Deferred[float], kind: str, seconds: float) -> None:
        for p in self.pings:
            if p.deferred is d:
                self.pings.remove(p)
                break
        d.errback(PingTimeout(kind, seconds, self.peer))


def reply_body(env: pb.Envelope) -> Any:
    """The message inside a v1 reply (``ExtractResponse``, ``ResetResponse`` …)."""
    msg = env.message_v1
    kind = msg.WhichOneof("kind")
    return getattr(msg, kind) if kind else None

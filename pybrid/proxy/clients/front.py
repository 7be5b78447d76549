"""What the proxy does with each frame a client sends, before any backend is involved.

Design note
-----------
Per client connection (:class:`~pybrid.proxy.clients.protocol.ClientProtocol` calls in here):

1. **Standalone ping.**  A connection opens PENDING with a ``ping_window`` timer (5 ms).  If the
   first frame is a generic ping inside that window, it is answered and the connection closed
   with ``loseConnection`` — which flushes the reply first, so it is never lost.  Any other
   first frame, or the window running out, opens a session in the scheduler (which may refuse
   it: "Server overloaded", delivered, then close).
2. **Pings** (generic, or v1 ``ping_command``) are answered with a generic ``ping_response``
   at any time, need no authentication and do not count as activity.
3. Every other v1 frame is activity (restarts the session's idle timer).
4. **Auth.**  ``auth_request`` is answered here (success, or "Authentication failed").  With
   ``--auth``, every other v1 request before a successful one gets "Authentication required".
   After repeated wrong tokens from one IP address, the
   :class:`~pybrid.proxy.clients.auth.AuthThrottle` locks that address out for a while: its
   tokens are refused unchecked (see there).
5. **Discovery.**  ``extract{specification}`` (without configuration or calibration) is served
   from the backends' cached specifications, for queued sessions too.
6. Everything else needs the device: the session claims it (see the scheduler), and is then
   ACTIVE — the request goes to the :class:`~pybrid.proxy.runs.dispatch.Dispatcher` — or QUEUED
   and gets ``busy_response`` with the request's id.

**Nudges.**  The reference client's native receive thread waits in ``poll`` with a 100 ms
timeout and checks its stop flag only when it wakes up.  It stops that thread twice while
connecting: when closing its discovery connection (right after the extract reply) and when
falling back to TCP (right after the UDP refusal) — about 100 ms each, most of its connect
time.  Any incoming frame wakes the thread at once, so after those two replies the session
sends a few generic pongs (``Timing.nudge_delays``: 1, 3, 6, 12, 25, 50 ms), cancelled by the
client's next frame or the close.  A pong without a ping is ignored by clients; the nudges
take the reference client's connect through the proxy from ~130–230 ms to a few tens of ms.
An empty ``nudge_delays`` turns them off.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.backend.cache import CacheNotReady
from pybrid.proxy.clients.auth import FAILED, REQUIRED, Authenticator, AuthThrottle, throttled_text
from pybrid.proxy.clients.scheduler import Scheduler
from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.proxy.sizes import DEFAULT_CLIENT_BUFFER, Overflow
from pybrid.wire import messages
from pybrid.wire.interfaces import IStreamTransport
from pybrid.wire.noise import worth_logging


@attrs.define
class FrontCounters:
    connections: int = 0
    standalone_pings: int = 0
    pings: int = 0
    cache_extracts: int = 0
    busy: int = 0
    auth_failures: int = 0
    #: Of ``auth_failures``: tokens refused unchecked, their address being locked out.
    auth_throttled: int = 0
    #: Frames with no message at all (an Envelope with neither ``generic`` nor ``message_v1``).
    not_v1: int = 0
    #: Generic frames other than a ping command (a stray ping_response, or no kind).
    generic_dropped: int = 0


def servable_from_cache(command: pb.ExtractCommand) -> bool:
    """A specification-only extract of the whole tree."""
    whole = not command.HasField("entity") or not command.entity.path.strip("/")
    return command.specification and not command.configuration and not command.calibration and whole


@attrs.define(eq=False)
class Front:
    """Per-frame policy for client connections; see the module note."""

    clock: IReactorTime
    scheduler: Scheduler
    dispatch: Callable[[Session, pb.Envelope, str, str | None], None]
    extract: Callable[[], pb.ExtractResponse]
    auth: Authenticator = attrs.field(factory=Authenticator)
    ping_window: float = 0.005
    debug: bool = False
    nudge_delays: tuple[float, ...] = ()
    #: Most bytes each client's sender may queue (``--client-buffer``).
    client_buffer: int = DEFAULT_CLIENT_BUFFER
    counters: FrontCounters = attrs.field(factory=FrontCounters)
    #: Per-address back-off after wrong tokens (on this front's clock).
    throttle: AuthThrottle = attrs.field(
        default=attrs.Factory(lambda self: AuthThrottle(self.clock), takes_self=True))

    log = Logger()

    def connection_made(self, transport: IStreamTransport) -> Session:
        self.counters.connections += 1
        peer = transport.getPeer()

        def overflowed(overflow: Overflow) -> None:
            self._overflow(session, overflow)

        sender = ClientSender(transport, limit=self.client_buffer, clock=self.clock,
                              on_overflow=overflowed)
        session = Session(messages.new_id()[:8], f"{peer.host}:{peer.port}", sender,
                          clock=self.clock, nudge_delays=self.nudge_delays, host=str(peer.host))
        session.window_timer = self.clock.callLater(self.ping_window, self._window_closed,
                                                    session)
        if self.debug:
            self.log.debug("client {peer} connected (session {session})", peer=session.peer,
                           session=session.id)
        return session

    def _overflow(self, session: Session, overflow: Overflow) -> None:
        """The client's queue overflowed: close the session, naming its runs, the bytes
        buffered and the limit (the dispatcher then stops the unfinished run)."""
        if session.closed:
            return
        text = overflow.describe(tuple(sorted(session.runs)))
        self.log.warn("session {session} from {peer}: {error}", session=session.id,
                      peer=session.peer, error=text)
        self.scheduler.close(session, text, "client buffer overflow")

    def connection_lost(self, session: Session) -> None:
        session.sender.connection_gone()
        self.scheduler.end(session, "client closed the connection")

    def _window_closed(self, session: Session) -> None:
        session.window_timer = None
        if session.state is SessionState.PENDING:
            self.scheduler.open(session)

    def _dropped(self, session: Session, what: str, total: int) -> None:
        """Log a dropped client frame: the first three, then every 1000th (all are counted)."""
        if worth_logging(total):
            self.log.warn("session {session}: {what} dropped ({total} so far)",
                          session=session.id, what=what, total=total)

    def frame_received(self, session: Session, env: pb.Envelope, payload: bytes) -> None:
        if session.closed:
            return
        if session.nudge_timers:
            session.stop_nudging()
        top = env.WhichOneof("kind")
        is_ping = top == "generic" and env.generic.WhichOneof("kind") == "ping_command"
        if session.state is SessionState.PENDING:
            window_open = session.window_timer is not None and session.window_timer.active()
            session.cancel_timers()
            if is_ping and window_open:
                self.counters.standalone_pings += 1
                session.state = SessionState.CLOSED
                session.reply(messages.generic_pong())
                session.sender.close()
                return
            if not self.scheduler.open(session):
                return
        if top == "generic":
            if is_ping:
                self.counters.pings += 1
                session.reply(messages.generic_pong())
            else:
                self.counters.generic_dropped += 1
                self._dropped(session, "generic frame that is not a ping command",
                              self.counters.generic_dropped)
            return
        if top != "message_v1":
            self.counters.not_v1 += 1
            self._dropped(session, "frame without a message", self.counters.not_v1)
            return
        msg = env.message_v1
        kind = msg.WhichOneof("kind") or "unknown"
        rid = msg.id if msg.HasField("id") else None
        if self.debug:
            self.log.debug("session {session} ({state}): {kind} (id {id})", session=session.id,
                           state=session.state.value, kind=kind, id=rid)
        if kind == "ping_command":
            self.counters.pings += 1
            session.reply(messages.generic_pong())
            return
        self.scheduler.touch(session)
        if kind == "auth_request":
            self._authenticate(session, msg.auth_request, rid)
        elif self.auth.required and not session.authenticated:
            session.reply(messages.error(REQUIRED, id=rid))
        elif kind == "extract_command" and servable_from_cache(msg.extract_command):
            self._extract(session, rid)
        elif self.scheduler.claim(session) is not SessionState.ACTIVE:
            self.counters.busy += 1
            session.busy_replies += 1
            session.reply(messages.busy(id=rid))
        else:
            self.dispatch(session, env, kind, rid)

    def _authenticate(self, session: Session, request: pb.AuthRequest, rid: str | None) -> None:
        wait = self.throttle.locked(session.host)
        if wait > 0:
            self.counters.auth_failures += 1
            self.counters.auth_throttled += 1
            session.reply(messages.error(throttled_text(session.host, wait), id=rid))
            self.log.debug("session {session} from {peer}: token not checked, address locked "
                           "out for {wait:.3g} s more", session=session.id, peer=session.peer,
                           wait=wait)
            return
        if self.auth.check(request):
            session.authenticated = True
            self.throttle.succeeded(session.host)
            session.reply(messages.success(id=rid))
            self.log.info("session {session} authenticated", session=session.id)
            return
        self.counters.auth_failures += 1
        lockout = self.throttle.failed(session.host)
        session.reply(messages.error(FAILED, id=rid))
        if lockout:
            self.log.warn("session {session} from {peer}: authentication failed; address "
                          "{host} locked out for {lockout:g} s after repeated failures",
                          session=session.id, peer=session.peer, host=session.host,
                          lockout=lockout)
        else:
            self.log.warn("session {session} from {peer}: authentication failed",
                          session=session.id, peer=session.peer)

    def _extract(self, session: Session, rid: str | None) -> None:
        try:
            response = self.extract()
        except CacheNotReady as e:
            session.reply(messages.error(f"Cluster not ready: {e}", id=rid))
            return
        self.counters.cache_extracts += 1
        session.reply(messages.v1("extract_response", response, id=rid))
        if session.state is SessionState.IDLE:  # perhaps a discovery connection about to close
            session.nudge()

"""What the proxy does with each frame a client sends, before any backend is involved.

Design note
-----------
Per client connection (:class:`~pybrid.proxy.clients.protocol.ClientProtocol` calls in here),
in the order a frame meets them.  The session states named here and every transition between
them are one table, :data:`pybrid.proxy.clients.session.SESSION` (event names in brackets).

1. **Bounded reading.**  Before a frame is handled its connection's read gate
   (:mod:`pybrid.proxy.clients.gate`) holds it while ``max_outstanding`` of its requests are
   unanswered or its sender is paused: it waits in the client's TCP buffers, not in our memory.
   Each frame takes a token of the connection's bucket (``frame_rates``: 1000/s bursts of 200
   for the active session, 100/s bursts of 20 for every other); with none left it is not read
   until the bucket refills, so no client's request rate can take the reactor from the active
   session, the device lanes' pings or a standalone ping.
2. **Standalone ping.**  A connection opens PENDING with a ``ping_window`` timer (5 ms).  If the
   first frame is a generic ping inside that window, it is answered and the connection becomes
   PING (``standalone_ping``): it holds no session, answers every further ping (``ping``), and
   is closed with ``loseConnection`` (which flushes the replies first, so none is lost)
   ``ping_linger`` seconds after its last ping (``ping_over``; the reference
   ``pybrid ping -c 3`` sends its pings on one connection).  Any other frame on it makes it
   PENDING again (``other_frame``) and goes on as in 3.
3. **Slots only for what did something legitimate.**  A PENDING connection holds no session
   slot (``--max-sessions``).  Without ``--auth`` its first complete frame opens its session in
   the scheduler (``admit``, or ``refuse``: "Server overloaded", delivered, then close); with
   ``--auth`` only a successful ``auth_request`` does.  A connection that sends no complete
   frame within ``first_frame_deadline`` (or, with ``--auth``, does not authenticate within
   ``auth_deadline``) is told so and closed (``deadline``): half frames and unauthenticated
   peers cannot keep an authenticated client out; past ``--max-pending`` of them the oldest
   goes (``evict``, :mod:`.pending`).
4. **Pings** (generic, or v1 ``ping_command``) are answered with a generic ``ping_response``
   at any time, need no authentication and do not count as activity.
5. **Activity.**  Every other v1 frame of an admitted session restarts its idle timer.
6. **Auth.**  ``auth_request`` is answered here (success, or "Authentication failed").  With
   ``--auth``, every other v1 request before a successful one gets "Authentication required".
   Wrong tokens delay the connection they came on, and after a few it is closed
   (:class:`~pybrid.proxy.clients.auth.AuthThrottle`: per connection, never per address).
7. **Run traffic** sent by a client (``run_data_message``, …) is refused with an error, never
   forwarded.
8. **Discovery.**  ``extract{specification}`` (without configuration or calibration) is served
   from the backends' cached specifications, for queued sessions too.
9. Everything else needs the device: an IDLE session claims it (``claim``, see the scheduler),
   and is then ACTIVE — the request goes to the :class:`~pybrid.proxy.runs.dispatch.Dispatcher`
   — or QUEUED and gets ``busy_response`` with the request's id.

**Overflow.**  When a client's queue overflows (:mod:`~pybrid.proxy.clients.sender`) the queued
run data is already dropped; in its place go an ERROR state change per unfinished carrier of
each of the session's runs (``fail_runs``: the reference client fails a run on an ERROR, it
ignores an id-less error message), then the error message; the connection closes after they are
written (plus ``error_linger``), or is aborted ``overflow_close`` seconds after the overflow.

**Nudges.**  After a cached extract reply and after the UDP refusal a few generic pongs
(``Timing.nudge_delays``) wake the reference client's receive thread, which otherwise notices
its stop flag only every 100 ms: its connect through the proxy drops from ~130–230 ms to a few
tens of ms (docs/proxy.md, *Nudges*).  An empty ``nudge_delays`` turns them off.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.backend.cache import CacheNotReady
from pybrid.proxy.clients.auth import FAILED, REQUIRED, Authenticator, AuthThrottle, too_many_text
from pybrid.proxy.clients.budget import WaitingBudget
from pybrid.proxy.clients.gate import FrameSource, ReadGate
from pybrid.proxy.clients.inflight import InFlight
from pybrid.proxy.clients.pending import PendingLimit
from pybrid.proxy.clients.scheduler import Scheduler
from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session, SessionState
from pybrid.proxy.sizes import DEFAULT_CLIENT_BUFFER, WAITING_CLIENT_BUFFER, Overflow
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
    #: Of ``auth_failures``: wrong tokens after which their connection was not read for a while.
    auth_throttled: int = 0
    #: Connections closed after too many wrong tokens.
    auth_closed: int = 0
    deadlines: int = 0  # no complete frame / authentication in time
    pending_closed: int = 0
    client_run_traffic: int = 0  # run_data_message, … sent by a client: refused
    #: Connections closed because waiting connections' partial frames passed the budget.
    budget_closed: int = 0
    #: Times a connection's read gate closed (the proxy stopped reading that client).
    reads_paused: int = 0
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
    #: Per-connection delay and limit after wrong tokens.
    throttle: AuthThrottle = attrs.field(factory=AuthThrottle)
    #: Seconds a connection has for its first complete frame (without --auth) or to
    #: authenticate (with --auth) before it is closed; it holds no session slot meanwhile.
    first_frame_deadline: float = 10.0
    auth_deadline: float = 5.0
    #: Requests of one session forwarded and unanswered before the proxy stops reading it.
    max_outstanding: int = 16
    #: Forwarded, unanswered requests per session (the dispatcher counts; given to both).
    in_flight: InFlight[Session] = attrs.field(factory=InFlight)
    #: (frames per second, burst) for the active session and for every other connection.
    frame_rates: tuple[tuple[float, float], tuple[float, float]] = ((1000.0, 200.0),
                                                                    (100.0, 20.0))
    gates: dict[Session, ReadGate] = attrs.field(factory=dict)
    #: Partial frames of all connections that are not active, against one limit.
    budget: WaitingBudget = attrs.field(factory=WaitingBudget)
    pending: PendingLimit[Session] = attrs.field(factory=PendingLimit)
    _buckets: dict[Session, list[float]] = attrs.field(factory=dict)
    _failures: dict[Session, int] = attrs.field(factory=dict)
    #: Seconds a standalone-ping connection stays open after its last ping (0: close at once).
    ping_linger: float = 0.0
    #: Writes an ERROR state per unfinished carrier of the session's runs, with the reason
    #: (the dispatcher's ``fail_runs``); True if it wrote any.
    fail_runs: Callable[[Session, str], bool] = lambda session, reason: False
    #: After an overflow: abort deadline, and the wait between the last write and the close.
    overflow_close: float = 60.0
    error_linger: float = 0.0

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.in_flight.subscribe(self.settled)

    def status(self) -> FrontCounters:
        """A copy of the front's counters."""
        return attrs.evolve(self.counters)

    def connection_made(self, transport: IStreamTransport,
                        frames: FrameSource | None = None) -> Session:
        self.counters.connections += 1
        peer = transport.getPeer()

        def overflowed(overflow: Overflow) -> None:
            self._overflow(session, overflow)

        sender = ClientSender(transport, limit=min(self.client_buffer, WAITING_CLIENT_BUFFER),
                              active_limit=self.client_buffer, clock=self.clock,
                              on_overflow=overflowed)
        session = Session(messages.new_id()[:8], f"{peer.host}:{peer.port}", sender,
                          clock=self.clock, nudge_delays=self.nudge_delays, host=str(peer.host))
        session.window_timer = self.clock.callLater(self.ping_window, self._window_closed, session)
        deadline = self.auth_deadline if self.auth.required else self.first_frame_deadline
        session.close_timer = self.clock.callLater(deadline, self._deadline, session)
        gate = self.gates[session] = ReadGate(transport, self.clock, frames=frames,
                                              on_pause=self._read_paused)
        gate.handle = lambda env, payload: self.frame_received(session, env, payload)
        sender.on_resume = lambda: self._writable(session)
        for old in self.pending.add(session):  # a connect flood: the oldest go
            if not old.closed:  # (closed already by the budget or wrong tokens: going)
                self.counters.pending_closed += 1
                self._close_pending(old, "evict", self.pending.text(),
                                    self.counters.pending_closed)
        if self.debug:
            self.log.debug("client {peer} connected (session {session})", peer=session.peer,
                           session=session.id)
        return session

    def partial(self, session: Session, held: int) -> None:
        """``session``'s receiver holds ``held`` undelivered bytes (:mod:`.budget`)."""
        exempt = session.state is SessionState.ACTIVE or session.closed
        text = self.budget.charge(session, held, exempt=exempt)
        if text is not None:
            self.counters.budget_closed += 1
            self.log.warn("connection {peer} (session {session}) closed: {why}",
                          peer=session.peer, session=session.id, why=text)
            self.scheduler.close(session, text, "memory budget")

    def _read_paused(self) -> None:
        self.counters.reads_paused += 1

    def _overflow(self, session: Session, overflow: Overflow) -> None:
        """The client's queue overflowed: close the session, naming its runs, the bytes
        buffered and the limit (the dispatcher then stops the unfinished run)."""
        if session.closed:
            return
        text = overflow.describe(tuple(sorted(session.runs)))
        self.log.warn("session {session} from {peer}: {error}", session=session.id,
                      peer=session.peer, error=text)
        failed = self.fail_runs(session, text)  # queued in place of the dropped data
        self.scheduler.end(session, "client buffer overflow")
        session.close(text, grace=self.overflow_close,
                      linger=self.error_linger if failed else 0.0)

    def connection_lost(self, session: Session) -> None:
        gate = self.gates.pop(session, None)
        if gate is not None:
            gate.close()
        self._failures.pop(session, None)
        self._buckets.pop(session, None)
        self.budget.release(session)
        self.pending.discard(session)
        session.sender.connection_gone()
        self.scheduler.end(session, "client closed the connection")

    def _window_closed(self, session: Session) -> None:
        session.window_timer = None  # no standalone ping; still no slot (see the module note)

    def _deadline(self, session: Session) -> None:
        session.close_timer = None
        if session.state is not SessionState.PENDING:
            return
        self.counters.deadlines += 1
        need = f"{REQUIRED}: not authenticated" if self.auth.required else "no complete request"
        wait = self.auth_deadline if self.auth.required else self.first_frame_deadline
        self._close_pending(session, "deadline", f"{need} within {wait:g} s",
                            self.counters.deadlines)

    def _close_pending(self, session: Session, event: str, text: str, total: int) -> None:
        self.pending.discard(session)
        session.transition(event)
        session.cancel_timers()
        if worth_logging(total):  # a flood: the first three and every 1000th
            self.log.info("connection {peer} closed: {why}", peer=session.peer, why=text)
        session.close(text)

    def _admit(self, session: Session) -> bool:
        """The PENDING session did something legitimate: it takes a slot (or is refused)."""
        session.cancel_timers()
        self.pending.discard(session)
        return self.scheduler.open(session)

    def _meter(self, session: Session, gate: ReadGate) -> None:
        """One frame handled: take a token; none left, stop reading until one is back."""
        rate, burst = self.frame_rates[0 if session.state is SessionState.ACTIVE else 1]
        now = self.clock.seconds()
        bucket = self._buckets.get(session)
        if bucket is None:
            bucket = self._buckets[session] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate) - 1.0
        bucket[0], bucket[1] = tokens, now
        if tokens < 1.0:
            gate.hold("rate", (1.0 - tokens) / rate)

    def _writable(self, session: Session) -> None:
        gate = self.gates.get(session)
        if gate is not None:
            gate.release("output")

    def settled(self, session: Session) -> None:
        """A forwarded request of ``session`` was answered (the dispatcher calls this)."""
        gate = self.gates.get(session)
        if gate is not None and self.in_flight.count(session) < self.max_outstanding:
            gate.release("outstanding")

    def _standalone_pong(self, session: Session) -> None:
        """Answer a ping of a PING connection; close it ``ping_linger`` after the last."""
        session.cancel_timers()
        session.reply(messages.generic_pong())
        if self.ping_linger > 0:
            session.window_timer = self.clock.callLater(self.ping_linger, self._ping_over,
                                                        session)
        else:
            self._ping_over(session)

    def _ping_over(self, session: Session) -> None:
        session.window_timer = None
        if session.state is SessionState.PING:
            session.transition("ping_over")
            session.sender.close()

    def _dropped(self, session: Session, what: str, total: int) -> None:
        """Log a dropped client frame: the first three, then every 1000th (all are counted)."""
        if worth_logging(total):
            self.log.warn("session {session}: {what} dropped ({total} so far)",
                          session=session.id, what=what, total=total)

    def frame_received(self, session: Session, env: pb.Envelope, payload: bytes) -> None:
        if session.closed:
            return
        gate = self.gates.get(session)
        if gate is not None and not gate.offer(env, payload):
            return
        self._frame(session, env, payload)
        if gate is not None and not session.closed:
            self._meter(session, gate)
            if session.sender.paused:
                gate.hold("output")  # its replies are not being read: stop reading it
            if self.in_flight.count(session) >= self.max_outstanding:
                gate.hold("outstanding")

    def _frame(self, session: Session, env: pb.Envelope, payload: bytes) -> None:
        if session.nudge_timers:
            session.stop_nudging()
        top = env.WhichOneof("kind")
        is_ping = top == "generic" and env.generic.WhichOneof("kind") == "ping_command"
        if session.state is SessionState.PING:
            if is_ping:
                session.transition("ping")
                self.counters.pings += 1
                self._standalone_pong(session)
                return
            session.transition("other_frame")  # something else: a session after all
        if session.state is SessionState.PENDING:
            window_open = session.window_timer is not None and session.window_timer.active()
            if is_ping and window_open:
                session.cancel_timers()
                self.counters.standalone_pings += 1
                self.pending.discard(session)
                session.transition("standalone_ping")
                self._standalone_pong(session)
                return
            if not self.auth.required and not self._admit(session):
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
        if session.state is not SessionState.PENDING:
            self.scheduler.touch(session)
        if kind == "auth_request":
            self._authenticate(session, msg.auth_request, rid)
        elif self.auth.required and not session.authenticated:
            session.reply(messages.error(REQUIRED, id=rid))
        elif kind in messages.RUN_KINDS:  # devices to clients only: refused
            self.counters.client_run_traffic += 1
            self._dropped(session, f"client-sent {kind} (refused)",
                          self.counters.client_run_traffic)
            session.reply(messages.error(
                f"{kind} is run traffic that only a device sends; refused, not forwarded",
                id=rid))
        elif kind == "extract_command" and servable_from_cache(msg.extract_command):
            self._extract(session, rid)
        elif self.scheduler.claim(session) is not SessionState.ACTIVE:
            self.counters.busy += 1
            session.busy_replies += 1
            session.reply(messages.busy(id=rid))
        else:
            self.dispatch(session, env, kind, rid)

    def _authenticate(self, session: Session, request: pb.AuthRequest, rid: str | None) -> None:
        if self.auth.check(request):
            self._failures.pop(session, None)
            if session.state is SessionState.PENDING and not self._admit(session):
                return  # no slot: "Server overloaded" sent
            session.authenticated = True
            session.reply(messages.success(id=rid))
            self.log.info("session {session} authenticated", session=session.id)
            return
        self.counters.auth_failures += 1
        failures = self._failures[session] = self._failures.get(session, 0) + 1
        self.log.warn("session {session} from {peer}: authentication failed ({n} on this "
                      "connection)", session=session.id, peer=session.peer, n=failures)
        if self.throttle.exhausted(failures):
            self.counters.auth_closed += 1
            self.throttle.closed += 1
            session.reply(messages.error(FAILED, id=rid))
            self.scheduler.close(session, too_many_text(failures), "too many wrong tokens")
            return
        session.reply(messages.error(FAILED, id=rid))
        gate = self.gates.get(session)
        if gate is not None:  # this connection's next guess waits; nobody else's does
            self.counters.auth_throttled += 1
            gate.hold("auth", self.throttle.pause_after(failures))

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

"""One fuzz input against a whole in-memory proxy, with every check the hardening suite makes.

Each ``*_case(rnd, …)`` builds a fresh :class:`~pybrid.proxy.service.ProxyService` on a
:class:`~support.proxy_fakes.FakeReactor`, plays one hostile peer driven by ``rnd``, and
raises ``AssertionError`` (with the details) when the proxy misbehaves:

* **client lane** (:func:`client_case`): random frames from a client that is alone, follows a
  dead client's run, waits behind an active session, or has not authenticated.  The frame
  counters must match :class:`~support.fuzz_inputs.StreamOracle`; every v1 request carrying
  an id gets a reply with that id; a queued or unauthenticated client gets nothing to the
  device; no client ever receives run traffic that is not its own; afterwards no session or
  run is left behind and a fresh client gets a full run.
* **backend lane** and **handshake**: :mod:`support.fuzz_backend_cases`.

The tests call these under Hypothesis; ``benchmarks/fuzz_soak.py`` calls them 100 000+ times.
Unhandled errors are checked by the caller (a :class:`~support.fuzz_proxy.LogCapture`), since
an unhandled Deferred failure is only logged when it is garbage-collected.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import Any

import attrs

from pybrid.proto import pb
from pybrid.proxy.clients.auth import FAILED, REQUIRED
from pybrid.proxy.clients.front import servable_from_cache
from pybrid.wire import messages
from pybrid.wire.framing import MAX_FRAME_LENGTH, frame
from support.fuzz_inputs import (
    RUN_KINDS,
    Piece,
    StreamOracle,
    random_piece,
    split,
)
from support.fuzz_proxy import (
    AutoBackend,
    claim,
    close_client,
    full_run,
    proxy,
    pump_all,
    run_traffic,
    send_run_traffic,
    start_run_command,
)
from support.proxy_fakes import FakeReactor, connect_client

CLIENT_MODES = ("fresh", "leak", "queued", "auth")
TOKEN = "s3cret-token"
MACS = ["00-00-00-00-00-a0", "00-00-00-00-00-a1"]
#: The start of the reply to a token sent while the client's address is locked out.
LOCKED = f"{FAILED} "  # "… 3 times; closing the connection"


@attrs.define
class Outcome:
    """What one input was and what the proxy made of it (summed up by the soak)."""

    inputs: Counter[str] = attrs.field(factory=Counter)
    results: Counter[str] = attrs.field(factory=Counter)

    def add(self, other: Outcome) -> None:
        self.inputs.update(other.inputs)
        self.results.update(other.results)


def check_no_leftovers(service: Any, backends: list[AutoBackend]) -> None:
    pump_all(backends)
    scheduler = service.scheduler
    assert scheduler.count == 0 and scheduler.active is None and not scheduler.queue, (
        f"sessions left behind: {scheduler.sessions}")
    assert not service.router.runs, f"runs left registered: {list(service.router.runs)}"
    for lane in service.lanes:
        if lane._tracker is not None:
            assert lane._tracker.outstanding() == 0, "backend requests left outstanding"


# -- the client lane ---------------------------------------------------------------------------


def client_case(rnd: random.Random, mode: str, pieces: int = 12, full: bool = True,
                raw: bytes | None = None) -> Outcome:
    """One hostile client; see the module note.  ``raw``: send these bytes instead of a
    generated stream (a coverage-guided fuzzer's input)."""
    out = Outcome()
    reactor = FakeReactor()
    token = TOKEN if mode == "auth" else None
    carriers = [MACS[:1], ["bb-00-00-00-00-00"]] if mode == "fresh" and rnd.random() < 0.4 else None
    service, backends = proxy(reactor, carriers, auth_token=token)
    backend = backends[0]
    other = None
    other_run = None
    if mode in ("queued", "leak"):
        other = claim(service, 41001)
        other_run = str(uuid.uuid4())
        other.request("start_run_command", start_run_command(other_run), id="start")
        backend.pump()
        assert [messages.kind_of(e) for e in other.frames()][-1] == "start_run_response"
        if mode == "leak":  # the first client dies mid-run: its data must go nowhere
            close_client(other)
            backend.pump()
            other = None
    baseline = len(backend.requests)
    for b in backends:
        b.complete_runs = True  # a started run goes to DONE at once: no start is held
        b.started.clear()
        b.device_ids.clear()
    if rnd.random() < 0.2:
        for b in backends:
            b.ignore, b.rnd = 0.3, rnd
    client = connect_client(service, 41002)
    if rnd.random() < 0.3:
        reactor.advance(0.01)  # the standalone-ping window closes before the first frame
    stream: list[Piece] = (
        [random_piece(rnd) for _ in range(pieces)] if raw is None else [Piece(raw, "raw input")])
    if mode == "auth" and rnd.random() < 0.5:
        auth = pb.AuthRequest()
        auth.bearer.token = TOKEN
        env = messages.v1("auth_request", auth, id="good-auth")
        stream.insert(rnd.randrange(len(stream) + 1), Piece(frame(env.SerializeToString()),
                                                            "correct token", env))
    out.inputs.update(p.what for p in stream)
    raw = b"".join(p.data for p in stream)
    traffic = run_traffic(other_run, service.lanes[0].carriers, 3) if other_run else []
    injected = 0
    for segment in split(rnd, raw, 10):
        client.proto.dataReceived(segment)
        pump_all(backends)
        if traffic and rnd.random() < 0.4:
            batch, traffic = traffic[:4], traffic[4:]
            send_run_traffic(service, 0, batch)
            injected += len(batch)
        if rnd.random() < 0.1:
            reactor.advance(0.05)
            pump_all(backends)
    for _ in range(40):  # frames held by the client's read gate (auth delay, bounds)
        gate = service.front.gates.get(client.proto.session)
        if gate is None or gate.open:
            break
        reactor.advance(0.25)
        pump_all(backends)
    send_run_traffic(service, 0, traffic)
    injected += len(traffic)
    ignored = sum(b.ignored for b in backends)
    for b in backends:
        b.ignore = 0.0  # from now on every request is answered
    if ignored:
        # unanswered requests: the proxy's request timeout (5 s) must answer them
        for _ in range(40):
            reactor.advance(0.25)
            pump_all(backends)
            if not any(lane._tracker.outstanding() for lane in service.lanes if lane._tracker):
                break
        out.results["requests timed out"] += ignored
    for b in backends:
        b.complete_runs = False
    longest = max(b.longest for b in backends)
    assert longest <= MAX_FRAME_LENGTH, f"the proxy sent a device a {longest}-byte frame"

    oracle = StreamOracle.of(raw)
    counters = client.proto.counters
    assert oracle.matches(counters), f"frame counters {counters} != oracle {oracle}"
    out.results["frames"] += oracle.frames
    out.results["bad frames counted"] += oracle.empty + oracle.unparseable
    out.results["framing violations (closed)"] += oracle.oversized
    received = client.frames()
    session = client.proto.session
    kinds = [messages.kind_of(e) for e in received]
    own = {r for b in backends for r in b.started}
    leaked = [e for e in received if messages.kind_of(e) in RUN_KINDS
              and getattr(e.message_v1, messages.kind_of(e)).run.id not in own]
    assert not leaked, f"client received run traffic that is not its own: {leaked[:2]}"
    out.results["own run messages"] += sum(1 for k in kinds if k in RUN_KINDS)
    new_requests = backend.requests[baseline:] + [r for b in backends[1:] for r in b.requests]

    if service.front.counters.standalone_pings:
        assert oracle.envelopes and messages.kind_of(oracle.envelopes[0]) == "generic.ping_command"
        assert kinds == ["generic.ping_response"], kinds
        assert client.closing
        assert not new_requests
        out.results["standalone ping closed"] += 1
    else:
        _check_replies(oracle.envelopes, received, mode, session, out)
        if mode == "queued" or (mode == "auth" and not session.authenticated):
            assert not new_requests, (
                f"{mode} client got {[messages.kind_of(e) for e in new_requests]} to the device")
        out.results["requests forwarded"] += len(new_requests)
    if other is not None:
        other_kinds = [messages.kind_of(e) for e in other.frames()]
        assert other_kinds.count("run_data_message") == 3 * len(service.lanes[0].carriers)
        close_client(other)
    if mode == "leak":
        assert service.router.counters.foreign_run == injected
        out.results["dead client's run messages dropped"] += injected
    close_client(client)
    check_no_leftovers(service, backends)
    if full:
        full_run(service, reactor, backends, token=token)
        out.results["full runs after"] += 1
    return out


def _check_replies(envelopes: list[pb.Envelope], received: list[pb.Envelope], mode: str,
                   session: Any, out: Outcome) -> None:
    wanted: Counter[str] = Counter()
    must_be: dict[str, set[str]] = {}
    authenticated = mode != "auth"
    for env in envelopes:
        top = env.WhichOneof("kind")
        if top != "message_v1":
            continue
        msg = env.message_v1
        kind = msg.WhichOneof("kind") or "unknown"
        if kind == "ping_command":
            continue
        if kind == "auth_request" and mode == "auth":
            ok = msg.auth_request.WhichOneof("kind") == "bearer" and (
                msg.auth_request.bearer.token == TOKEN)
            authenticated = authenticated or ok
        if not msg.HasField("id"):
            continue
        rid = msg.id
        wanted[rid] += 1
        if kind in messages.RUN_KINDS and (mode != "auth" or authenticated):
            must_be.setdefault(rid, set()).add("error_message")  # refused, never forwarded
        elif mode == "queued":
            allowed = {"busy_response", "success_message"}
            if kind == "extract_command" and servable_from_cache(msg.extract_command):
                allowed = {"extract_response"}
            must_be.setdefault(rid, set()).update(allowed)
        elif mode == "auth" and not authenticated and kind != "auth_request":
            must_be.setdefault(rid, set()).add("error_message")
    got: Counter[str] = Counter()
    got_kinds: dict[str, set[str]] = {}
    errors: Counter[str] = Counter()
    for env in received:
        if env.WhichOneof("kind") == "message_v1" and env.message_v1.HasField("id"):
            got[env.message_v1.id] += 1
            got_kinds.setdefault(env.message_v1.id, set()).add(messages.kind_of(env))
            if messages.kind_of(env) == "error_message":
                errors[env.message_v1.error_message.description] += 1
    missing = {rid: n for rid, n in wanted.items() if got[rid] < n}
    if session.closed and mode == "auth":  # closed after three wrong tokens: no more replies
        missing = {}
    assert not missing, f"requests without a reply: {missing}"
    for rid, allowed in must_be.items():
        if rid not in got_kinds and session.closed and mode == "auth":
            continue
        assert got_kinds[rid] & allowed, f"request {rid!r} answered {got_kinds[rid]}, not {allowed}"
    if mode == "auth":
        assert session.authenticated or all(
            e in (REQUIRED, FAILED) or e.startswith(LOCKED) for e in errors), errors
    out.results["replies"] += sum(got.values())
    out.results["busy replies"] += sum(1 for e in received
                                       if messages.kind_of(e) == "busy_response")
    out.results["auth refusals"] += errors[REQUIRED] + errors[FAILED] + sum(
        n for e, n in errors.items() if e.startswith(LOCKED))


__all__ = ["CLIENT_MODES", "MACS", "Outcome", "check_no_leftovers", "client_case"]

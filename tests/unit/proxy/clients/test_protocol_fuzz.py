"""Fuzzing the proxy's client lane in memory: hostile frames from clients (issue 8, part 1).

Each Hypothesis example is one :func:`support.fuzz_cases.client_case`: a fresh proxy on a
memory reactor, a client sending a random mix of valid Envelopes (any kind, random ids and
nesting), empty frames, random bytes, damaged frames, truncated and over-long varints and huge
declared lengths, split at random points — alone, after a dead client's run, queued behind an
active session, or unauthenticated.  ``benchmarks/fuzz_soak.py`` runs the same cases 100 000+
times; here a few hundred keep the file within seconds.
"""

from __future__ import annotations

import gc
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz_cases import CLIENT_MODES, Outcome, client_case
from support.fuzz_inputs import V1_KINDS, max_size_envelope
from support.fuzz_proxy import (
    AutoBackend,
    LogCapture,
    claim,
    full_run,
    proxy,
    pump_all,
    run_traffic,
    send_run_traffic,
    start_run_command,
)
from support.proxy_fakes import FakeReactor

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import MAX_FRAME_LENGTH, frame

FUZZ = settings(max_examples=400, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def test_hostile_clients_get_errors_or_counted_drops_and_a_full_run_follows():
    total = Outcome()
    with LogCapture() as log:

        @FUZZ
        @given(st.integers(0, 2**64 - 1), st.sampled_from(CLIENT_MODES))
        def one(seed: int, mode: str) -> None:
            total.add(client_case(random.Random(seed), mode))

        one()
        gc.collect()  # unhandled Deferred failures are logged when collected
    assert not log.failures, log.describe()
    # the generator really produced the hostile inputs it is meant to
    for what in ("envelope", "empty frame", "random bytes in a frame", "unknown kind",
                 "raw random bytes", "damaged envelope", "over-long varint",
                 "huge declared length"):
        assert total.inputs[what] > 0, what
    assert total.results["bad frames counted"] > 100
    assert total.results["framing violations (closed)"] > 5
    assert total.results["busy replies"] > 0 and total.results["auth refusals"] > 0
    assert total.results["full runs after"] == 400


def test_every_message_kind_from_an_active_client_is_answered():
    reactor = FakeReactor()
    service, [backend] = proxy(reactor)
    client = claim(service)
    backend.pump()
    client.frames()
    for i, kind in enumerate(V1_KINDS):
        client.request(kind, id=f"k{i}")
        backend.pump()
    got = {messages.request_id(e) for e in client.frames()}
    unanswered = [k for i, k in enumerate(V1_KINDS) if f"k{i}" not in got and k != "ping_command"]
    assert not unanswered


def test_a_request_that_would_outgrow_the_frame_limit_is_refused_not_forwarded():
    """Found by the fuzz: a 262 084-byte request with a short id grew by the proxy's 36-byte
    request id beyond the device's frame limit, so the device closed the control connection
    and the active session was lost ("Cluster degraded")."""
    reactor = FakeReactor()
    service, [backend] = proxy(reactor)
    client = claim(service)
    backend.pump()
    client.frames()
    payload = max_size_envelope(random.Random(1), rid="a").SerializeToString()
    assert len(payload) == MAX_FRAME_LENGTH
    client.proto.dataReceived(frame(payload))
    backend.pump()
    assert backend.longest <= MAX_FRAME_LENGTH
    [reply] = client.frames()
    assert reply.message_v1.id == "a"
    assert "request too large" in reply.message_v1.error_message.description
    assert service.lanes[0].healthy and not client.closing
    client.request("get_overload_status_command", id="next")
    backend.pump()
    assert [messages.request_id(e) for e in client.frames()] == ["next"]


def test_a_client_whose_stream_stops_inside_a_frame_does_not_disturb_others():
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    stuck = claim(service, 41500)
    backends[0].pump()
    stuck.frames()
    stuck.proto.dataReceived(b"\xc0\x84\x10" + b"\x00" * 1000)  # declares 262 208 > max: closed
    assert stuck.closing and stuck.proto.counters.oversized == 1
    stuck.proto.connectionLost(None)
    half = claim(service, 41501)
    half.proto.dataReceived(b"\xff\xff\x07" + b"x" * 10)  # 131 071 declared, 10 sent: waits
    assert not half.closing
    half.proto.connectionLost(None)
    backends[0].pump()
    full_run(service, reactor, backends)


def test_auto_backend_answers_what_it_is_sent():
    """The fake device the fuzz relies on answers every request kind with its id."""
    reactor = FakeReactor()
    service, [backend] = proxy(reactor)
    assert isinstance(backend, AutoBackend)
    client = claim(service)
    client.request("start_run_command", pb.StartRunCommand(), id="s")
    backend.pump()
    kinds = [messages.kind_of(e) for e in client.frames()]
    assert kinds[-1] == "start_run_response"


def test_a_start_held_behind_a_long_run_is_answered_within_the_request_timeout():
    """Found by the fuzz: a start sent while the session's previous run was unfinished was held
    without a timeout of its own (up to the take-off timeout, or the previous run's length plus
    grace), so the client got no reply within its 5 s request timeout.  It is now held for at
    most ``Timing.start_hold`` (2 s), then refused with an error naming the run and backend."""
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    client = claim(service)
    backends[0].pump()
    client.frames()
    client.request("start_run_command", start_run_command("long", op_ns=3600 * 10**9), id="a")
    backends[0].pump()
    paths = service.lanes[0].carriers
    send_run_traffic(service, 0, run_traffic("long", paths, 1)[:3])  # TAKE_OFF, IC, OP
    assert messages.request_id(client.frames()[0]) == "a"
    client.request("start_run_command", start_run_command("next"), id="b")
    answered_after = None
    for step in range(1, 13):  # 6 s: more than the 5 s request timeout
        reactor.advance(0.5)
        backends[0].pump()
        replies = [e for e in client.frames() if messages.request_id(e) == "b"]
        if replies:
            assert answered_after is None, "answered twice"
            answered_after = step * 0.5
            [reply] = replies
    assert answered_after == service.config.timing.start_hold
    text = reply.message_v1.error_message.description
    assert text.startswith(f"previous run long still running on backend {service.lanes[0].name}")
    assert "next" not in backends[0].started  # never reached the device
    assert service.dispatcher.counters.held_starts_refused == 1


def test_a_start_reusing_a_running_run_id_does_not_orphan_a_held_start():
    """Found by the fuzz: a start (with clear_queue, so not held) reusing the id of a run in
    progress replaced that run's bookkeeping, and a start held behind the replaced run was
    never answered.  A start naming a run id in use is now refused at once."""
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    for b in backends:
        b.complete_runs = True
    client = claim(service)
    pump_all(backends)
    client.frames()
    client.request("start_run_command", start_run_command("r"), id="a")
    client.request("start_run_command", start_run_command("r"), id="b")  # "r" is in progress
    reused = start_run_command("r")
    reused.clear_queue = True
    client.request("start_run_command", reused, id="c")
    for _ in range(20):  # 10 s: twice the request timeout
        reactor.advance(0.5)
        pump_all(backends)
    replies: dict[str, list[str]] = {}
    for env in client.frames():
        rid = messages.request_id(env)
        if rid in ("a", "b", "c"):
            replies.setdefault(rid, []).append(messages.kind_of(env))
    assert replies == {"a": ["start_run_response"], "b": ["error_message"],
                       "c": ["error_message"]}
    assert service.dispatcher.counters.reused_run_ids == 2
    assert backends[0].started == ["r"]  # one run reached the device
    assert not service.dispatcher.coordinator.barriers  # "r" finished and was forgotten
    client.request("start_run_command", start_run_command("r"), id="d")  # free again
    pump_all(backends)
    assert messages.kind_of(client.frames()[0]) == "start_run_response"

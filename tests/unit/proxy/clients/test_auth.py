"""The per-address back-off after wrong tokens (``AuthThrottle``), under task.Clock, and the
front using it: lockouts grow 0.25 → 5 s, tokens are refused unchecked meanwhile, the right
token resets, memory is bounded."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy
from twisted.internet import task

from pybrid.proto import pb
from pybrid.proxy.clients import auth as auth_module
from pybrid.proxy.clients.auth import FAILED, REQUIRED, AuthThrottle, throttled_text
from pybrid.wire import messages

TOKEN = "s3cret"


def fail_until_locked(throttle: AuthThrottle, host: str = "10.0.0.1") -> float:
    lockout = 0.0
    while not lockout:
        lockout = throttle.failed(host)
    return lockout


def test_the_fifth_consecutive_failure_locks_the_address_out():
    clock = task.Clock()
    throttle = AuthThrottle(clock)
    assert [throttle.failed("10.0.0.1") for _ in range(4)] == [0.0] * 4
    assert throttle.locked("10.0.0.1") == 0.0
    assert throttle.failed("10.0.0.1") == 0.25
    assert throttle.locked("10.0.0.1") == 0.25
    assert throttle.locked("10.0.0.2") == 0.0  # per address
    clock.advance(0.2)
    assert throttle.locked("10.0.0.1") == pytest.approx(0.05)
    clock.advance(0.05)
    assert throttle.locked("10.0.0.1") == 0.0


def test_lockouts_double_up_to_the_cap():
    clock = task.Clock()
    throttle = AuthThrottle(clock)
    got = [fail_until_locked(throttle)]
    for _ in range(7):
        clock.advance(got[-1])  # wait it out, then guess wrong again
        got.append(throttle.failed("10.0.0.1"))
    assert got == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert throttle.lockouts == 8
    for _ in range(10_000):  # a huge count does not overflow
        throttle.failed("10.0.0.1")
    assert throttle.locked("10.0.0.1") == 5.0


def test_success_resets_the_count_and_so_does_a_quiet_minute():
    clock = task.Clock()
    throttle = AuthThrottle(clock)
    fail_until_locked(throttle)
    throttle.succeeded("10.0.0.1")
    assert throttle.locked("10.0.0.1") == 0.0 and throttle.peers == 0
    assert [throttle.failed("10.0.0.1") for _ in range(4)] == [0.0] * 4  # counting from 0
    clock.advance(60.01)
    assert [throttle.failed("10.0.0.1") for _ in range(4)] == [0.0] * 4  # forgotten meanwhile
    assert throttle.failed("10.0.0.1") == 0.25


def test_memory_is_bounded_forgetting_the_least_recent_address():
    clock = task.Clock()
    throttle = AuthThrottle(clock, max_peers=100)
    fail_until_locked(throttle, "10.0.0.1")
    for i in range(99):
        throttle.failed(f"10.1.0.{i}")
    assert throttle.peers == 100 and throttle.locked("10.0.0.1") > 0
    throttle.failed("10.2.0.0")
    assert throttle.peers == 100
    assert throttle.locked("10.0.0.1") == 0.0  # the least recently failing one went first


# -- through the front -------------------------------------------------------------------


def auth(client, token, id):
    request = pb.AuthRequest()
    request.bearer.token = token
    client.request("auth_request", request, id=id)
    [reply] = client.frames()
    assert reply.message_v1.id == id
    if messages.kind_of(reply) == "success_message":
        return "ok"
    return reply.message_v1.error_message.description


def test_a_locked_out_address_is_refused_unchecked_on_every_connection(monkeypatch):
    checked = []
    real = auth_module.hmac.compare_digest
    monkeypatch.setattr(auth_module.hmac, "compare_digest",
                        lambda a, b: checked.append(a) or real(a, b))
    reactor = FakeReactor()
    service, _ = make_proxy(reactor, auth_token=TOKEN)
    first = connect_client(service, 41000)
    assert [auth(first, f"guess-{i}", f"g{i}") for i in range(5)] == [FAILED] * 5
    second = connect_client(service, 41001)  # another connection from the same address
    assert auth(second, TOKEN, "right") == throttled_text("127.0.0.1", 0.25)
    assert len(checked) == 5  # the right token was not even compared
    second.request("reset_command", id="r")
    assert second.frames()[0].message_v1.error_message.description == REQUIRED
    assert service.front.counters.auth_throttled == 1
    reactor.advance(0.25)
    assert auth(first, "guess-5", "g5") == FAILED  # checked again: the next lockout is 0.5 s
    reactor.advance(0.3)
    assert auth(second, TOKEN, "right") == throttled_text("127.0.0.1", 0.2)
    reactor.advance(0.2)
    assert auth(second, TOKEN, "right") == "ok"
    assert service.front.throttle.peers == 0  # the address starts from scratch
    assert [auth(first, f"again-{i}", f"a{i}") for i in range(4)] == [FAILED] * 4
    assert service.front.counters.auth_failures == 12
    assert service.front.counters.auth_throttled == 2
    assert service.front.throttle.lockouts == 2


def test_without_auth_nothing_is_throttled():
    reactor = FakeReactor()
    service, _ = make_proxy(reactor)
    client = connect_client(service, 41000)
    assert [auth(client, f"anything-{i}", f"x{i}") for i in range(20)] == ["ok"] * 20
    assert service.front.throttle.peers == 0

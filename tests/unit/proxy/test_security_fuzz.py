"""Security properties of the proxy, in memory (issue 8, part 4).

* A queued or an unauthenticated client can never get a command to a device nor receive
  another session's samples — whatever it sends (Hypothesis: any message kind, any content,
  interleaved with the active session's run traffic).  The fake devices record everything
  the proxy sent them after the handshake; it must stay empty.
* Wrong-token floods: every wrong token is answered "Authentication failed" and counted,
  nothing is forwarded; each wrong token delays its own connection and the third closes it
  (pybrid.proxy.clients.auth.AuthThrottle: per connection, never per address); tokens are
  compared with ``hmac.compare_digest`` (constant time).
* The monitor tap keeps samples on the local network by default: TTL 1 (and loopback as the
  default interface), both in the proxy's options and in the tap itself.
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz_inputs import random_envelope
from support.fuzz_proxy import claim, proxy, run_traffic, send_run_traffic, start_run_command
from support.proxy_fakes import FakeReactor, connect_client

from pybrid.monitor.options import DEFAULT_TTL, MonitorConfig
from pybrid.proto import pb
from pybrid.proxy.clients import auth as auth_module
from pybrid.proxy.clients.auth import FAILED, REQUIRED, too_many_text
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.taps.multicast import MulticastTap
from pybrid.wire import messages
from pybrid.wire.framing import frame

TOKEN = "correct-horse-battery-staple-0123456789abcdef"
RUN_KINDS = ("run_data_message", "run_data_end_message", "run_state_change_message")
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def auth_request(token: str) -> pb.AuthRequest:
    request = pb.AuthRequest()
    request.bearer.token = token
    return request


def active_with_run(service, backends, token=None):
    """An active session whose run is streaming; returns (client, run id)."""
    holder = claim(service, 41001, token)
    run_id = str(uuid.uuid4())
    holder.request("start_run_command", start_run_command(run_id), id="start")
    for b in backends:
        b.pump()
    assert [messages.kind_of(e) for e in holder.frames()][-1] == "start_run_response"
    return holder, run_id


@pytest.mark.parametrize("who", ["queued", "unauthenticated", "queued-unauthenticated"])
def test_a_waiting_or_unauthenticated_client_reaches_no_device_and_sees_no_samples(who):
    @FUZZ
    @given(st.integers(0, 2**64 - 1))
    def one(seed: int) -> None:
        rnd = random.Random(seed)
        reactor = FakeReactor()
        token = TOKEN if "unauthenticated" in who else None
        service, backends = proxy(reactor, [["00-00-00-00-00-01"], ["00-00-00-00-00-02"]],
                                  auth_token=token)
        holder = run_id = None
        if who.startswith("queued"):
            holder, run_id = active_with_run(service, backends, token)
        before = [len(b.requests) for b in backends]
        intruder = connect_client(service, 41002)
        reactor.advance(0.01)  # past the standalone-ping window
        traffic = [
            e for index in range(len(backends))
            for e in run_traffic(run_id or "", service.lanes[index].carriers, 2)
        ] if run_id else []
        for _ in range(rnd.randrange(1, 25)):
            env = random_envelope(rnd)
            if rnd.random() < 0.2:  # aim for the run in progress
                if rnd.random() < 0.5:
                    env = messages.v1("start_run_command", start_run_command(run_id or "x"),
                                      id=str(uuid.uuid4()))
                else:
                    env = messages.v1("stop_run_command", id=str(uuid.uuid4()))
            if rnd.random() < 0.1:
                env = messages.v1("auth_request", auth_request(TOKEN[:-1] + "X"), id="wrong")
            intruder.proto.dataReceived(frame(env.SerializeToString()))
            for b in backends:
                b.pump()
            if traffic:
                send_run_traffic(service, rnd.randrange(len(backends)), [traffic.pop(0)])
        sent = [b.requests[n:] for b, n in zip(backends, before, strict=True)]
        assert sent == [[], []], f"a {who} client got {sent} to a device"
        got = intruder.frames()
        kinds = {messages.kind_of(e) for e in got}
        assert not kinds & set(RUN_KINDS), f"a {who} client received run traffic"
        allowed = {"generic.ping_response", "busy_response", "extract_response",
                   "success_message", "error_message"}
        assert kinds <= allowed, kinds
        if token is not None:
            texts = {e.message_v1.error_message.description for e in got
                     if messages.kind_of(e) == "error_message"}
            assert all(t in (REQUIRED, FAILED) or t.startswith(FAILED) for t in texts), texts
            assert "extract_response" not in kinds and "busy_response" not in kinds
            assert not intruder.proto.session.authenticated
        if holder is not None:
            data = [e for e in holder.frames() if messages.kind_of(e) == "run_data_message"]
            assert all(e.message_v1.run_data_message.run.id == run_id for e in data)

    one()


def test_a_wrong_token_flood_is_refused_counted_and_forwards_nothing(monkeypatch):
    """Wrong tokens pipelined on one connection: the first is answered, the connection is not
    read during its delay, the next ones are checked one per delay, and after three the
    connection is closed; nothing reaches the device."""
    checked = []
    real = auth_module.hmac.compare_digest
    monkeypatch.setattr(auth_module.hmac, "compare_digest",
                        lambda a, b: checked.append(a) or real(a, b))
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, auth_token=TOKEN)
    client = connect_client(service, 41002)
    reactor.advance(0.01)
    wrong = ["", TOKEN[:-1], TOKEN + " ", TOKEN.upper(), "x" * 200_000,
             "corrеct horse battery staple", *(f"guess-{i}" for i in range(500))]  # Cyrillic e
    for i, token in enumerate(wrong):
        client.request("auth_request", auth_request(token), id=f"a{i}")
    client.request("start_run_command", start_run_command("r"), id="run")
    assert client.transport.producerState == "paused"  # not read during the delay
    replies = client.frames()
    assert [e.message_v1.id for e in replies] == ["a0"] and len(checked) == 1
    for _ in range(8):  # 0.5 s, then 1 s: the second and third guesses, then the close
        reactor.advance(0.5)
        backend.pump()
    texts = [e.message_v1.error_message.description for e in client.frames()]
    assert texts == [FAILED, FAILED, too_many_text(3)]
    assert len(checked) == 3
    assert client.closing
    assert service.front.counters.auth_failures == 3
    assert service.front.counters.auth_closed == 1
    backend.pump()
    assert backend.requests == []


def test_a_guesser_on_the_same_address_does_not_lock_out_the_legitimate_user():
    """One guesser on 127.0.0.1 sending a wrong token every 50 ms on fresh connections; a
    legitimate user on the same address gets in every time."""
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, auth_token=TOKEN, max_sessions=2)
    logins = 0
    for attempt in range(28):
        for port in range(5):
            guesser = connect_client(service, 42000 + 5 * attempt + port)
            guesser.request("auth_request", auth_request(f"try-{attempt}-{port}"), id="a")
            reactor.advance(0.05)
        user = connect_client(service, 43000 + attempt)
        user.request("auth_request", auth_request(TOKEN), id="ok")
        if user.kinds() == ["success_message"]:
            logins += 1
        user.proto.connectionLost(None)
    assert logins == 28
    assert service.front.counters.auth_failures == 28 * 5
    backend.pump()
    assert backend.requests == []


def test_wrong_tokens_from_many_connections_do_not_open_the_door():
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, auth_token=TOKEN, max_sessions=10_000)
    for port in range(300):
        client = connect_client(service, 42000 + port)
        client.request("auth_request", auth_request(f"try-{port}"), id="a")
        client.request("reset_command", id="r")
        reactor.advance(0.5)  # the connection's delay after its wrong token
        replies = client.frames()
        texts = [e.message_v1.error_message.description for e in replies]
        assert texts == [FAILED, REQUIRED]
        client.proto.connectionLost(None)
    backend.pump()
    assert backend.requests == []
    assert service.front.counters.auth_failures == 300
    assert service.scheduler.count == 0  # unauthenticated connections hold no slot


def test_tokens_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = auth_module.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    reactor = FakeReactor()
    service, _ = proxy(reactor, auth_token=TOKEN)
    client = connect_client(service, 41002)
    client.request("auth_request", auth_request("nope"), id="a")
    client.request("auth_request", auth_request(TOKEN), id="b")
    reactor.advance(0.5)  # the wrong token's delay
    assert [messages.kind_of(e) for e in client.frames()] == ["error_message", "success_message"]
    assert calls == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_monitor_datagrams_stay_on_the_local_network_by_default():
    assert DEFAULT_TTL == 1
    assert MonitorConfig().ttl == 1 and MonitorConfig().interface == "127.0.0.1"
    config = ProxyConfig(backends=())
    assert config.monitor.ttl == 1 and not config.monitor.groups
    from pybrid.proxy.plugin import Options

    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5733", "--monitor", "239.255.0.1:5007"])
    assert options.config is not None
    assert options.config.monitor.groups == (("239.255.0.1", 5007),)
    assert options.config.monitor.ttl == 1
    assert options.config.monitor.interface == "127.0.0.1"
    tap = MulticastTap(FakeReactor(), [("239.255.0.1", 5007)])
    assert tap.ttl == 1 and tap.interface == "127.0.0.1"

"""Security properties of the proxy, in memory (issue 8, part 4).

* A queued or an unauthenticated client can never get a command to a device nor receive
  another session's samples — whatever it sends (Hypothesis: any message kind, any content,
  interleaved with the active session's run traffic).  The fake devices record everything
  the proxy sent them after the handshake; it must stay empty.
* Wrong-token floods: every wrong token is answered "Authentication failed" and counted,
  nothing is forwarded; after five wrong tokens the address is locked out (tokens refused
  unchecked, pybrid.proxy.clients.auth.AuthThrottle), and once the lockout has passed the right
  token works; tokens are compared with ``hmac.compare_digest`` (constant time).
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

from pybrid.monitor.emitter import MulticastTap
from pybrid.monitor.options import DEFAULT_TTL, MonitorConfig
from pybrid.proto import pb
from pybrid.proxy.clients import auth as auth_module
from pybrid.proxy.clients.auth import FAILED, REQUIRED, throttled_text
from pybrid.proxy.config import ProxyConfig
from pybrid.wire import messages
from pybrid.wire.framing import frame

TOKEN = "correct horse battery staple"
LOCKED = f"{FAILED}: too many failed attempts from 127.0.0.1; token not checked"
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
            assert all(t in (REQUIRED, FAILED) or t.startswith(LOCKED) for t in texts), texts
            assert "extract_response" not in kinds and "busy_response" not in kinds
            assert not intruder.proto.session.authenticated
        if holder is not None:
            data = [e for e in holder.frames() if messages.kind_of(e) == "run_data_message"]
            assert all(e.message_v1.run_data_message.run.id == run_id for e in data)

    one()


def test_a_wrong_token_flood_is_refused_counted_and_forwards_nothing(monkeypatch):
    checked = []
    real = auth_module.hmac.compare_digest
    monkeypatch.setattr(auth_module.hmac, "compare_digest",
                        lambda a, b: checked.append(a) or real(a, b))
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, auth_token=TOKEN)
    client = connect_client(service, 41002)
    reactor.advance(0.01)
    wrong = [
        "", TOKEN[:-1], TOKEN + " ", TOKEN.upper(), TOKEN[:-1] + "f", "x" * 200_000,
        "corrеct horse battery staple",  # Cyrillic e
        *(f"guess-{i}" for i in range(5000)),
    ]
    for i, token in enumerate(wrong):
        client.request("auth_request", auth_request(token), id=f"a{i}")
    client.request("auth_request", pb.AuthRequest(), id="no-bearer")  # no kind at all
    replies = client.frames()
    assert len(replies) == len(wrong) + 1
    assert [e.message_v1.id for e in replies] == [f"a{i}" for i in range(len(wrong))] + [
        "no-bearer"]
    texts = [e.message_v1.error_message.description for e in replies]
    # five tokens are checked, then the address is locked out: the rest are refused unchecked
    assert texts[:5] == [FAILED] * 5 and len(checked) == 5
    assert texts[5:] == [throttled_text("127.0.0.1", 0.25)] * (len(wrong) - 4)
    assert service.front.counters.auth_failures == len(wrong) + 1
    assert service.front.counters.auth_throttled == len(wrong) - 4
    client.request("start_run_command", start_run_command("r"), id="run")
    assert client.frames()[0].message_v1.error_message.description == REQUIRED
    backend.pump()
    assert backend.requests == [] and not client.closing
    client.request("auth_request", auth_request(TOKEN), id="locked")  # refused, unchecked
    assert client.frames()[0].message_v1.error_message.description.startswith(LOCKED)
    for _ in range(2):  # the 0.25 s lockout passes (the backend answers its pings meanwhile)
        reactor.advance(0.125)
        backend.pump()
    client.request("auth_request", auth_request(TOKEN), id="ok")
    assert client.kinds() == ["success_message"]
    client.request("start_run_command", start_run_command("r"), id="run")
    backend.pump()
    assert backend.kinds() == ["start_run_command"]


def test_wrong_tokens_from_many_connections_do_not_open_the_door():
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, auth_token=TOKEN, max_sessions=10_000)
    for port in range(300):
        client = connect_client(service, 42000 + port)
        client.request("auth_request", auth_request(f"try-{port}"), id="a")
        client.request("reset_command", id="r")
        replies = client.frames()
        texts = [e.message_v1.error_message.description for e in replies]
        # the lockout is per address, across its connections
        assert texts == [FAILED if port < 5 else throttled_text("127.0.0.1", 0.25), REQUIRED]
        client.proto.connectionLost(None)
    backend.pump()
    assert backend.requests == []
    assert service.front.counters.auth_failures == 300
    assert service.front.counters.auth_throttled == 295
    assert service.scheduler.count == 0


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
    assert [messages.kind_of(e) for e in client.frames()] == ["error_message", "success_message"]
    assert calls == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_monitor_datagrams_stay_on_the_local_network_by_default():
    assert DEFAULT_TTL == 1
    assert MonitorConfig().ttl == 1 and MonitorConfig().interface == "127.0.0.1"
    config = ProxyConfig(backends=())
    assert config.monitor.ttl == 1 and not config.monitor.groups
    from pybrid.proxy.tap import Options

    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5733", "--monitor", "239.255.0.1:5007"])
    assert options.config is not None
    assert options.config.monitor.groups == (("239.255.0.1", 5007),)
    assert options.config.monitor.ttl == 1
    assert options.config.monitor.interface == "127.0.0.1"
    tap = MulticastTap(FakeReactor(), [("239.255.0.1", 5007)])
    assert tap.ttl == 1 and tap.interface == "127.0.0.1"

"""The client's control lane on a StringTransport and a fake clock: replies, busy retries,
timeouts, pings, fatal errors and connection loss."""

import pytest
from support.client_fakes import state, wired_computer
from twisted.internet import defer
from twisted.python.failure import Failure

from pybrid.client.errors import (
    AuthenticationError,
    ConnectionLost,
    DeviceBusyError,
    PingTimeout,
    RequestFailed,
    RequestTimeout,
)
from pybrid.proto import pb
from pybrid.wire import messages


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_reply_resolves_by_id_and_other_ids_do_not():
    w = wired_computer()
    got = results(w.control.request("get_overload_status_command"))
    (req,) = w.sent()
    assert messages.kind_of(req) == "get_overload_status_command"
    w.feed(messages.v1("get_overload_status_response", id=messages.new_id()))
    assert got == []
    assert w.control.counters.unexpected == 1
    w.reply(req, "get_overload_status_response")
    assert messages.kind_of(got[0]) == "get_overload_status_response"


def test_busy_is_retried_every_busy_retry_with_a_fresh_id():
    w = wired_computer(busy_retry=0.2, busy_timeout=60.0)
    got = results(w.control.request("reset_command", pb.ResetCommand()))
    (first,) = w.sent()
    w.reply(first, "busy_response")
    w.reactor.advance(0.19)
    assert w.sent() == []
    w.reactor.advance(0.011)
    (second,) = w.sent()
    assert messages.kind_of(second) == "reset_command"
    assert messages.request_id(second) != messages.request_id(first)
    # a late answer to the first attempt is not taken for the second
    w.reply(first, "reset_response")
    assert got == []
    w.reply(second, "reset_response")
    assert messages.kind_of(got[0]) == "reset_response"
    assert w.control.counters.busy_answers == 1


def test_busy_until_busy_timeout_gives_device_busy_error():
    w = wired_computer(busy_retry=0.2, busy_timeout=1.0)
    got = results(w.control.request("start_run_command", pb.StartRunCommand()))
    attempts = 0
    while not got:
        envs = w.sent()
        for env in envs:
            attempts += 1
            w.reply(env, "busy_response")
        w.reactor.advance(0.2)
        assert w.reactor.seconds() < 5, "busy retry never gave up"
    err = got[0]
    assert isinstance(err, Failure) and err.check(DeviceBusyError)
    assert err.value.kind == "start_run_command"
    assert err.value.attempts == attempts
    assert 0.8 <= err.value.waited <= 1.0
    assert "busy" in str(err.value) and "start_run_command" in str(err.value)
    w.reactor.advance(1.0)
    assert w.sent() == []  # nothing more is sent once it gave up


def test_busy_timeout_zero_fails_at_the_first_busy_answer():
    w = wired_computer(busy_timeout=0.0)
    got = results(w.control.request("reset_command"))
    (req,) = w.sent()
    w.reply(req, "busy_response")
    assert got[0].check(DeviceBusyError)


def test_cancel_while_waiting_to_retry_stops_retrying():
    w = wired_computer()
    d = w.control.request("reset_command")
    results(d)
    (req,) = w.sent()
    w.reply(req, "busy_response")
    d.cancel()
    w.reactor.advance(1.0)
    assert w.sent() == []
    assert not w.control.active


def test_cancel_while_waiting_for_the_reply_forgets_the_request():
    w = wired_computer()
    d = w.control.request("reset_command")
    got = results(d)
    (req,) = w.sent()
    d.cancel()
    assert got[0].check(defer.CancelledError)
    w.reply(req, "reset_response")  # late reply: no error, counted as unexpected
    assert w.control.counters.unexpected == 1
    assert w.control.tracker.outstanding() == 0


def test_error_reply_is_request_failed_with_the_description():
    w = wired_computer()
    got = results(w.control.request("config_command", pb.ConfigCommand()))
    (req,) = w.sent()
    w.reply(req, "error_message", pb.ErrorMessage(description="no backend found for entity path"))
    assert got[0].check(RequestFailed)
    assert got[0].value.description == "no backend found for entity path"
    assert "config_command" in str(got[0].value)


def test_rejected_auth_is_authentication_error():
    w = wired_computer()
    body = pb.AuthRequest(bearer=pb.BearerAuth(token="wrong"))
    got = results(w.control.request("auth_request", body))
    (req,) = w.sent()
    assert req.message_v1.auth_request.bearer.token == "wrong"
    w.reply(req, "error_message", pb.ErrorMessage(description="Authentication failed"))
    assert got[0].check(AuthenticationError)


def test_no_reply_is_a_request_timeout_naming_the_kind():
    w = wired_computer(request_timeout=5.0)
    got = results(w.control.request("extract_command", pb.ExtractCommand()))
    w.reactor.advance(4.9)
    assert got == []
    w.reactor.advance(0.2)
    assert got[0].check(RequestTimeout)
    assert got[0].value.kind == "extract_command"
    assert "extract_command" in str(got[0].value)


def test_generic_pings_are_answered_in_order_and_measure_rtt():
    w = wired_computer()
    first = results(w.control.ping())
    w.reactor.advance(0.25)
    second = results(w.control.ping())
    assert [messages.kind_of(e) for e in w.sent()] == ["generic.ping_command"] * 2
    w.reactor.advance(0.5)
    w.feed(messages.generic_pong())
    assert first == [pytest.approx(0.75)] and second == []
    w.feed(messages.generic_pong())
    assert second == [pytest.approx(0.5)]


def test_v1_ping_is_answered_by_a_generic_pong_or_any_reply_with_its_id():
    w = wired_computer()
    a = results(w.control.ping("v1"))
    (req,) = w.sent()
    assert messages.kind_of(req) == "ping_command"
    w.feed(messages.generic_pong())  # how the reference proxy answers
    assert a == [0.0]
    b = results(w.control.ping("v1"))
    (req,) = w.sent()
    w.reply(req, "busy_response")  # a queued session: still an answer
    assert b == [0.0]


def test_ping_timeout():
    w = wired_computer()
    got = results(w.control.ping(timeout=1.0))
    w.reactor.advance(1.0)
    assert got[0].check(PingTimeout)
    assert w.control.pings == []


def test_run_notifications_go_to_the_sink_even_with_an_id():
    w = wired_computer()
    seen = []
    w.control.on_notification = seen.append
    w.feed(state("r1", pb.NEW, pb.TAKE_OFF))
    assert len(seen) == 1 and w.control.counters.notifications == 1


def test_an_id_less_error_is_fatal_for_everything_waiting():
    w = wired_computer()
    fatal = []
    w.control.on_fatal = fatal.append
    got = results(w.control.request("reset_command"))
    w.feed(messages.error("Cluster degraded: backend 127.0.0.1:1 lost"))
    assert fatal == ["Cluster degraded: backend 127.0.0.1:1 lost"]
    assert got[0].check(ConnectionLost)
    assert "Cluster degraded" in str(got[0].value)


def test_connection_lost_fails_requests_pings_and_retry_waits():
    w = wired_computer()
    waiting = results(w.control.request("reset_command"))
    retrying = results(w.control.request("config_command"))
    pinging = results(w.control.ping())
    envs = w.sent()
    w.reply(envs[1], "busy_response")
    closed = results(w.control.close())
    w.protocol.connectionLost(Failure(ConnectionLost("gone")))
    for got in (waiting, retrying, pinging):
        assert got[0].check(ConnectionLost), got
    assert closed == [None]
    w.reactor.advance(1.0)
    assert w.sent() == []
    later = results(w.control.request("reset_command"))
    assert later[0].check(ConnectionLost)

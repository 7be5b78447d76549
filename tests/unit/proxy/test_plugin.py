"""``twistd pybrid-proxy`` options: conversion, clear UsageErrors, auth from the environment."""

from __future__ import annotations

import pytest
from twisted.python import usage

from pybrid.proxy.plugin import AUTH_ENV, Options, makeService


def parse(argv, environ=None):
    options = Options(environ={} if environ is None else environ)
    options.parseOptions(argv)
    return options


def test_defaults():
    config = parse(["-b", "10.0.0.5"]).config
    assert config.interface == "0.0.0.0" and config.port == 5732
    assert config.session_timeout == 10.0 and config.max_sessions == 8
    assert config.auth_token is None and not config.debug
    [backend] = config.backends
    assert (backend.host, backend.port) == ("10.0.0.5", 5732)


def test_everything_given():
    config = parse([
        "-b", "127.0.0.1:6000", "--backend", "127.0.0.1:6001", "--listen", "127.0.0.1",
        "--port", "0", "--session-timeout", "2.5", "--max-sessions", "3", "--debug",
    ]).config
    assert [b.port for b in config.backends] == [6000, 6001]
    assert config.port == 0 and config.interface == "127.0.0.1"
    assert config.session_timeout == 2.5 and config.max_sessions == 3 and config.debug


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "backend is required"),
        (["-b", "h", "--port", "http"], "--port must be an integer"),
        (["-b", "h", "--port", "70000"], "--port must be between"),
        (["-b", "h", "--session-timeout", "0"], "--session-timeout must be between"),
        (["-b", "h", "--session-timeout", "nan"], "--session-timeout"),
        (["-b", "h", "--max-sessions", "0"], "--max-sessions must be between"),
        (["-b", "h", "--max-pending", "0"], "--max-pending must be between 1 and"),
        (["-b", "h", "--max-pending", "many"], "--max-pending must be an integer, not 'many'"),
        (["-b", "h", "--accepts-per-pass", "0"], "--accepts-per-pass must be between 1 and"),
        (["-b", "h", "--accepts-per-pass", "1.5"], "--accepts-per-pass must be an integer"),
        (["-b", "h", "--listen", "localhost"], "--listen must be an IP address"),
        (["-b", "h:notaport"], "bad backend file"),
    ],
)
def test_usage_errors_are_clear(argv, needle):
    with pytest.raises(usage.UsageError, match=needle):
        parse(argv)


def test_connect_flood_limits_default_and_can_be_set():
    config = parse(["-b", "h"]).config
    assert (config.max_pending, config.accepts_per_pass) == (1024, 100)
    config = parse(["-b", "h", "--max-pending", "64", "--accepts-per-pass", "16"]).config
    assert (config.max_pending, config.accepts_per_pass) == (64, 16)
    service = makeService(parse(["-b", "127.0.0.1:6000", "--max-pending", "64"]))
    assert service.front.pending.limit == 64


def test_auth_needs_the_environment_variable():
    with pytest.raises(usage.UsageError, match=AUTH_ENV):
        parse(["-b", "h", "--auth"])
    with pytest.raises(usage.UsageError, match=AUTH_ENV):
        parse(["-b", "h", "--auth"], {AUTH_ENV: ""})
    assert parse(["-b", "h", "--auth"], {AUTH_ENV: "t" * 32}).config.auth_token == "t" * 32


def test_last_of_auth_and_no_auth_wins():
    assert parse(["-b", "h", "--auth", "--no-auth"]).config.auth_token is None
    env = {AUTH_ENV: "t" * 32}
    assert parse(["-b", "h", "--no-auth", "--auth"], env).config.auth_token == "t" * 32


def test_make_service_builds_one_lane_per_backend():
    service = makeService(parse(["-b", "127.0.0.1:6000,127.0.0.1:6001", "--port", "0"]))
    assert [lane.name for lane in service.lanes] == ["127.0.0.1:6000", "127.0.0.1:6001"]
    assert service.scheduler.max_sessions == 8


def test_no_nudges_turns_the_unsolicited_pongs_off():
    assert parse(["-b", "10.0.0.5"]).config.timing.nudge_delays
    config = parse(["-b", "10.0.0.5", "--no-nudges"]).config
    assert config.timing.nudge_delays == ()


def test_listen_host_and_port_keep_their_meaning():
    config = parse(["-b", "h", "--listen", "127.0.0.1", "--port", "0"]).config
    assert (config.interface, config.port, config.listen) == ("127.0.0.1", 0, None)
    assert parse(["-b", "h", "--listen", "::1"]).config.port == 5732


def test_listen_takes_a_server_endpoint_string():
    config = parse(["-b", "h", "--listen", "tcp:0:interface=127.0.0.1"]).config
    assert config.listen == "tcp:0:interface=127.0.0.1"


def test_listen_ssl_with_a_key_and_certificate(tmp_path):
    pytest.importorskip("OpenSSL")
    from support.tls import make_pki

    pki = make_pki(tmp_path)
    assert parse(["-b", "h", "--listen", pki.listen()]).config.listen == pki.listen()


@pytest.mark.parametrize(
    ("listen", "needle"),
    [
        ("ssl:5732:privateKey=/nonexistent.key:certKey=/nonexistent.pem", "nonexistent"),
        ("bogus:5732", "Unknown endpoint type"),
        ("systemd:domain=INET:index=0", "no such descriptor was passed"),
        ("tcp:notaport", "--listen 'tcp:notaport'"),
    ],
)
def test_bad_listen_endpoints_are_clear_usage_errors(listen, needle):
    if listen.startswith("ssl:"):
        pytest.importorskip("OpenSSL")
    with pytest.raises(usage.UsageError, match=needle):
        parse(["-b", "h", "--listen", listen])


def test_port_does_not_go_with_an_endpoint():
    with pytest.raises(usage.UsageError, match="--port goes with --listen HOST"):
        parse(["-b", "h", "--listen", "tcp:5732", "--port", "5733"])


def test_live_process_needs_the_status_page_and_reaches_the_config():
    with pytest.raises(usage.UsageError, match="--live-process serves /live: it needs "
                                               "--status-port"):
        parse(["-b", "h", "--live-process"])
    assert parse(["-b", "h", "--status-port", "0", "--live-process"]).config.live_process
    assert not parse(["-b", "h", "--status-port", "0"]).config.live_process

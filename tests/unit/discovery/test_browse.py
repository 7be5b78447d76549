"""Choosing a target without a host: the only one, the one asked for, or a clear list."""

from __future__ import annotations

import sys

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from pybrid.client import connect
from pybrid.client.cli import EXIT_CONNECT, exit_code_for
from pybrid.discovery import browse as browse_mod
from pybrid.discovery.browse import (
    DiscoveryError,
    find_target,
    interfaces_from_env,
    resolve_host,
    terminal_ask,
)
from pybrid.discovery.records import Target

PROXY = Target("lab proxy", "10.0.0.5", 5732, "proxy", macs=("AA",))
DEVICE = Target("LUCIDAC", "10.0.0.6", 5732, "device", macs=("AA",))


def found(monkeypatch, targets):
    monkeypatch.setattr(browse_mod, "browse", lambda *a, **k: defer.succeed(list(targets)))


def result(coro):
    d = defer.ensureDeferred(coro)
    out = []
    d.addBoth(out.append)
    assert out, "did not finish"
    if isinstance(out[0], Exception) or hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_the_only_target_is_taken(monkeypatch):
    found(monkeypatch, [DEVICE])
    assert result(find_target(None)) == DEVICE


def test_none_found_says_so(monkeypatch):
    found(monkeypatch, [])
    with pytest.raises(DiscoveryError, match=r"no _lucijsonl\._tcp service answered") as e:
        result(find_target(None, timeout=2))
    assert exit_code_for(e.value) == EXIT_CONNECT


def test_several_without_a_choice_list_them_proxies_first(monkeypatch):
    found(monkeypatch, [PROXY, DEVICE])
    with pytest.raises(DiscoveryError) as e:
        result(find_target(None))
    text = str(e.value)
    assert "2 targets found, choose one by giving its address as the host" in text
    assert text.index("10.0.0.5:5732") < text.index("10.0.0.6:5732")
    assert "bypasses a proxy's session management" in text


def test_terminal_ask_reads_a_number_in_a_thread(monkeypatch):
    found(monkeypatch, [PROXY, DEVICE])
    prompts = []

    def reading(prompt):
        prompts.append(prompt)
        return " 2\n"

    # in_thread is replaced so that the unit test needs no reactor thread
    monkeypatch.setattr(browse_mod, "in_thread", lambda r, fn, *a: defer.succeed(fn(*a)))
    assert result(find_target(None, terminal_ask(None, reading))) == DEVICE
    assert "1. 10.0.0.5:5732" in prompts[0] and "(1-2, Enter: none)" in prompts[0]


@pytest.mark.parametrize("answer", ["", "3", "x"])
def test_no_valid_answer_chooses_nothing(monkeypatch, answer):
    found(monkeypatch, [PROXY, DEVICE])
    monkeypatch.setattr(browse_mod, "in_thread", lambda r, fn, *a: defer.succeed(fn(*a)))
    with pytest.raises(DiscoveryError, match="choose one"):
        result(find_target(None, terminal_ask(None, lambda _p: answer)))


def test_a_given_host_is_not_browsed(monkeypatch):
    monkeypatch.setattr(browse_mod, "browse", lambda *a, **k: pytest.fail("browsed"))
    assert result(resolve_host(None, "h", 1, True, print)) == ("h", 1, False)


def test_tls_target_is_reached_with_tls(monkeypatch):
    found(monkeypatch, [Target("p", "10.0.0.7", 5733, "proxy", tls=True)])
    said = []
    assert result(resolve_host(None, None, 5732, False, said.append)) == (
        "10.0.0.7:5733", 5732, True)
    assert said and said[0].startswith("discovered 10.0.0.7:5733")


def test_without_zeroconf_connect_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroconf", None)
    d = connect(reactor=MemoryReactorClock())
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(DiscoveryError)
    assert "pip install -e '.[discovery]'" in str(failures[0].value)
    assert "or give the host" in str(failures[0].value)


def test_interfaces_from_the_environment():
    assert interfaces_from_env({"PYBRID_DISCOVERY_INTERFACES": "127.0.0.1, 10.0.0.1"}) == (
        "127.0.0.1", "10.0.0.1")
    assert interfaces_from_env({}) == ()

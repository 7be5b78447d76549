"""OneShotObserver: one list of waiting Deferreds for every part."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task
from twisted.python.failure import Failure

from pybrid.wire.observer import OneShotObserver


def results(d: defer.Deferred) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def test_waiters_before_and_after_fire_get_the_result() -> None:
    obs: OneShotObserver[int] = OneShotObserver()
    early = results(obs.when_fired())
    assert early == [] and obs.waiting == 1 and not obs.fired
    obs.fire(7)
    assert early == [7] and obs.waiting == 0 and obs.fired
    assert results(obs.when_fired()) == [7]
    with pytest.raises(RuntimeError):
        obs.fire(8)


def test_a_failure_reaches_every_waiter() -> None:
    obs: OneShotObserver[int] = OneShotObserver()
    first = results(obs.when_fired())
    obs.fire(Failure(ValueError("no")))
    late = results(obs.when_fired())
    for got in (first, late):
        assert isinstance(got[0], Failure) and got[0].check(ValueError)


def test_fire_waiting_remembers_nothing() -> None:
    obs: OneShotObserver[str] = OneShotObserver()
    one = results(obs.when_fired())
    obs.fire_waiting("udp")
    two = results(obs.when_fired())
    assert one == ["udp"] and two == [] and not obs.fired


def test_a_cancelled_waiter_leaves_and_the_rest_still_fire() -> None:
    obs: OneShotObserver[None] = OneShotObserver()
    cancelled = obs.when_fired()
    cancelled.addErrback(lambda f: f.trap(defer.CancelledError))
    kept = results(obs.when_fired())
    cancelled.cancel()
    assert obs.waiting == 1
    obs.fire(None)
    assert kept == [None]


def test_timeout_on_the_injected_clock() -> None:
    clock = task.Clock()
    obs: OneShotObserver[None] = OneShotObserver(clock)
    got = results(obs.when_fired(timeout=2.0))
    clock.advance(1.9)
    assert got == []
    clock.advance(0.2)
    assert isinstance(got[0], Failure) and got[0].check(defer.TimeoutError)
    assert obs.waiting == 0
    obs.fire(None)  # nobody left to tell


def test_a_timeout_without_a_clock_is_refused() -> None:
    obs: OneShotObserver[None] = OneShotObserver()
    with pytest.raises(ValueError):
        obs.when_fired(timeout=1.0)
    assert obs.waiting == 0

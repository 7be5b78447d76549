"""``blocking.connect()`` without a host: discovery through ``connect()``, a longer bound."""

from __future__ import annotations

from pybrid.client import blocking


def test_no_host_is_passed_on_for_discovery_with_room_for_the_browse(monkeypatch):
    seen = {}

    def fake_call(fn, timeout=None):
        seen["timeout"] = timeout
        return fn("the reactor")

    def fake_connect(host, port, reactor, auth_token, **options):
        seen.update(host=host, port=port, reactor=reactor)
        return "computer"

    monkeypatch.setattr(blocking, "call", fake_call)
    monkeypatch.setattr(blocking, "_connect", fake_connect)
    computer = blocking.connect(replace=False, auth_token="t")
    assert computer.computer == "computer"
    assert (seen["host"], seen["port"], seen["reactor"]) == (None, 5732, "the reactor")
    with_host = dict(seen)
    blocking.connect("10.0.0.5", replace=False, auth_token="t")
    assert with_host["timeout"] == seen["timeout"] + 10.0


def test_the_blocking_waits_use_the_defaults_of_what_they_wrap():
    """One source of truth: a default changed in connect/Computer.run/RunSpec moves the wait."""
    import inspect

    import attrs

    from pybrid.client import blocking
    from pybrid.client.computer import Computer
    from pybrid.client.connect import connect
    from pybrid.client.results import RunSpec

    params = inspect.signature(connect).parameters
    own = params["connect_timeout"].default + params["busy_timeout"].default
    assert blocking.connect_bound({}) == own + blocking.MARGIN
    assert blocking.connect_bound({"connect_timeout": 1.0, "busy_timeout": 2.0}) == (
        3.0 + blocking.MARGIN)
    run = inspect.signature(Computer.run).parameters
    assert attrs.fields(RunSpec).ic_time.default == run["ic_time"].default
    assert run["timeout"].default is None  # None: the RunSpec's default deadline
    assert blocking.run_own_timeout(0.5, {}) == RunSpec(0.5).default_timeout
    assert blocking.run_own_timeout(0.5, {"ic_time": 0.25}) == (
        RunSpec(0.5, ic_time=0.25).default_timeout)
    assert blocking.run_own_timeout(0.5, {"timeout": 3.0}) == 3.0

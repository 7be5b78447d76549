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

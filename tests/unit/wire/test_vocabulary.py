"""The shared words: entity paths, the log limiter, Envelope descriptions."""

from __future__ import annotations

from pybrid.wire import messages
from pybrid.wire.noise import worth_logging
from pybrid.wire.paths import carrier_of, mac_of


def test_carrier_of_is_the_carrier_path_and_mac_of_the_bare_mac():
    assert carrier_of("/aa-bb/0/M0") == "/aa-bb" and mac_of("/aa-bb/0/M0") == "aa-bb"
    assert carrier_of("aa-bb") == "/aa-bb" and mac_of("aa-bb/") == "aa-bb"
    assert carrier_of("/") == "" and mac_of("/") == ""


def test_worth_logging_first_three_then_every_1000th():
    logged = [n for n in range(1, 3001) if worth_logging(n)]
    assert logged == [1, 2, 3, 1000, 2000, 3000]
    assert [n for n in range(1, 2001) if worth_logging(n, first=1)] == [1, 1000, 2000]


def test_describe_names_the_kind_and_an_error_text():
    assert messages.describe(messages.v1("success_message")) == "success_message"
    assert messages.describe(messages.error("no")) == "error_message 'no'"

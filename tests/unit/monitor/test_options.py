"""Parsing of --monitor, --monitor-ttl and --monitor-interface."""

from __future__ import annotations

import re

import pytest
from twisted.python import usage

from pybrid.monitor import options as o


def test_group_and_port() -> None:
    assert o.parse_group("239.1.1.1:5007") == ("239.1.1.1", 5007)
    assert o.parse_group(" 224.0.0.251:1 ") == ("224.0.0.251", 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("239.1.1.1", "GROUP:PORT"),
        (":5007", "GROUP:PORT"),
        ("10.0.0.1:5007", "not a multicast address"),
        ("127.0.0.1:5007", "not a multicast address"),
        ("monitor.local:5007", "not an IPv4 address"),
        ("239.1.1.1:0", "outside 1..65535"),
        ("239.1.1.1:65536", "outside 1..65535"),
        ("239.1.1.1:http", "not a number"),
        ("[ff02::1]:5007", "not an IPv4 address"),
    ],
)
def test_bad_groups(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        o.parse_group(value)


def test_ttl_range() -> None:
    assert o.parse_ttl("0") == 0
    assert o.parse_ttl(255) == 255
    for bad in ("-1", "256", "one"):
        with pytest.raises(ValueError, match="TTL"):
            o.parse_ttl(bad)


def test_interface() -> None:
    assert o.parse_interface("127.0.0.1") == "127.0.0.1"
    for anything in (None, "", "any", "ANY", "0.0.0.0"):
        assert o.parse_interface(anything) is None
    with pytest.raises(ValueError, match="not an IPv4 address"):
        o.parse_interface("eth0")
    with pytest.raises(ValueError, match="multicast"):
        o.parse_interface("239.1.1.1")


def test_monitor_config_validates_everything() -> None:
    config = o.monitor_config(["239.1.1.1:5007", "239.1.1.2:5007"], "0", "any")
    assert config == o.MonitorConfig((("239.1.1.1", 5007), ("239.1.1.2", 5007)), 0, None)
    assert config.enabled
    assert not o.monitor_config([]).enabled
    assert o.monitor_config([]).ttl == 1
    with pytest.raises(ValueError, match="given twice"):
        o.monitor_config(["239.1.1.1:5007", "239.1.1.1:5007"])


class _Options(o.MonitorOptionsMixin, usage.Options):
    optParameters = [["port", "p", 5732, "Control port."]]


def test_options_mixin_defaults() -> None:
    opts = _Options()
    opts.parseOptions([])
    assert opts.monitor_config() == o.MonitorConfig((), 1, "127.0.0.1")
    assert opts["port"] == 5732


def test_options_mixin_parses_repeated_monitors() -> None:
    opts = _Options()
    opts.parseOptions(
        ["--monitor", "239.1.1.1:5007", "--monitor=239.2.2.2:6000", "--monitor-ttl", "0",
         "--monitor-interface", "any"]
    )
    assert opts.monitor_config() == o.MonitorConfig(
        (("239.1.1.1", 5007), ("239.2.2.2", 6000)), 0, None
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monitor", "10.1.1.1:5007"], "not a multicast address"),
        (["--monitor", "239.1.1.1:5007", "--monitor", "239.1.1.1:5007"], "given twice"),
        (["--monitor-ttl", "300"], "outside 0..255"),
        (["--monitor-interface", "eth0"], "not an IPv4 address"),
    ],
)
def test_options_mixin_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=re.escape(message)):
        _Options().parseOptions(argv)

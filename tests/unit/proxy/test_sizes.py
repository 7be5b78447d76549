"""Sizes and the data-path options of ``twistd pybrid-proxy``."""

from __future__ import annotations

import pytest
from twisted.python import usage

from pybrid.monitor.options import MonitorConfig
from pybrid.proxy.plugin import Options
from pybrid.proxy.sizes import Overflow, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64MiB", 64 << 20), ("512KiB", 512 << 10), ("1GiB", 1 << 30), ("8M", 8 << 20),
        ("256k", 256 << 10), ("4096", 4096), ("4096B", 4096), (" 2 MiB ", 2 << 20),
        ("1MB", 1_000_000), ("1.5KiB", 1536), ("10kB", 10_000),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MiB", "-1", "12 parsecs", "1.5", "0x10", "1e6"])
def test_parse_size_rejects_nonsense_with_a_clear_message(text):
    with pytest.raises(ValueError, match="--client-buffer must be"):
        parse_size(text, "--client-buffer")


def test_parse_size_minimum():
    with pytest.raises(ValueError, match="at least 4 KiB"):
        parse_size("100", "--udp-rcvbuf", 4096)


def test_format_size():
    assert format_size(64 << 20) == "64 MiB"
    assert format_size(512 << 10) == "512 KiB"
    assert format_size(1000) == "1000 bytes"


def test_overflow_description_names_bytes_limit_and_run():
    text = Overflow(300_000, 262_144, 3406, 90, 303_406).describe(("abc",))
    assert "run abc aborted" in text
    assert "300000 bytes were buffered" in text
    assert "--client-buffer 256 KiB = 262144 bytes" in text
    assert "session is closed" in text


def parse(*args: str) -> Options:
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", *args])
    return options


def test_defaults():
    config = parse().config
    assert config is not None
    assert config.client_buffer == 64 << 20
    assert config.udp_rcvbuf == 64 << 20
    assert config.monitor == MonitorConfig()
    assert not config.monitor.enabled


def test_data_path_options():
    config = parse("--client-buffer", "256KiB", "--udp-rcvbuf", "16MiB",
                   "--monitor", "239.255.1.2:5007", "--monitor", "239.255.1.3:5008",
                   "--monitor-ttl", "0", "--monitor-interface", "127.0.0.1").config
    assert config is not None
    assert config.client_buffer == 256 << 10
    assert config.udp_rcvbuf == 16 << 20
    assert config.monitor.groups == (("239.255.1.2", 5007), ("239.255.1.3", 5008))
    assert config.monitor.ttl == 0 and config.monitor.interface == "127.0.0.1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-buffer", "lots"], "--client-buffer must be a size"),
        (["--client-buffer", "100"], "--client-buffer must be at least 4 KiB"),
        (["--udp-rcvbuf", "-5"], "--udp-rcvbuf must be a size"),
        (["--monitor", "10.0.0.1:5000"], "not a multicast address"),
        (["--monitor", "239.1.1.1"], "GROUP:PORT"),
        (["--monitor-ttl", "300"], "outside 0..255"),
    ],
)
def test_bad_values_are_usage_errors(args, message):
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)

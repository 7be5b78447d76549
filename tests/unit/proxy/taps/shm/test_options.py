"""``--shm-tap`` and ``--shm-write-timeout`` on ``twistd pybrid-proxy``."""

from __future__ import annotations

import pytest
from support.shm import require_shm
from twisted.python import usage

from pybrid.proxy.plugin import Options

require_shm()


def parse(*args: str) -> Options:
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", *args])
    return options


def test_repeatable_names_reach_the_config():
    config = parse("--shm-tap", "scope", "--shm-tap", "rec.1", "--shm-write-timeout", "2").config
    assert config is not None
    assert config.shm_taps == ("scope", "rec.1") and config.shm_write_timeout == 2.0


def test_no_tap_by_default():
    config = parse().config
    assert config is not None and config.shm_taps == ()


@pytest.mark.parametrize("bad", ["", "/abs", "a b", "x" * 201, "-lead"])
def test_bad_names_are_refused_clearly(bad):
    with pytest.raises(usage.UsageError, match="ZeroBuffer name"):
        parse("--shm-tap", bad)


def test_a_name_twice_and_a_bad_timeout_are_refused():
    with pytest.raises(usage.UsageError, match="given twice"):
        parse("--shm-tap", "a", "--shm-tap", "a")
    with pytest.raises(usage.UsageError, match="--shm-write-timeout"):
        parse("--shm-tap", "a", "--shm-write-timeout", "0")

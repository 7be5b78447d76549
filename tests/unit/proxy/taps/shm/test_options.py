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


def test_the_yield_level_reaches_the_feed_and_bad_ones_are_refused():
    from twisted.internet.testing import MemoryReactorClock

    from pybrid.proxy.service import ProxyService

    config = parse("--shm-tap", "scope", "--shm-yield", "30").config
    assert config is not None and config.shm_yield == pytest.approx(0.3)
    default = parse("--shm-tap", "scope").config
    assert default is not None and default.shm_yield == 0.5
    class Reactor(MemoryReactorClock):
        def callFromThread(self, f, *a, **kw):  # what a writer thread would use
            self.callLater(0, f, *a, **kw)

    proxy = ProxyService(config, Reactor())
    feed = proxy.shm.feed
    assert feed.yield_at == pytest.approx(0.3)
    assert feed.backlog is not None and feed.backlog() == 0.0  # no intake listens yet
    for bad in ("-1", "101", "half", "nan"):
        with pytest.raises(usage.UsageError, match="--shm-yield"):
            parse("--shm-tap", "a", "--shm-yield", bad)

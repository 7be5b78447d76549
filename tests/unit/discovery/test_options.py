"""``--advertise`` and friends on ``twistd pybrid-proxy`` and ``twistd pybrid-device``."""

from __future__ import annotations

import sys

import pytest
from support.optional import require
from twisted.python import usage

from pybrid.device.plugin import Options as DeviceOptions
from pybrid.discovery.options import (
    AdvertiseConfig,
    default_name,
    interfaces_for,
    parse_interfaces,
)
from pybrid.proxy.plugin import Options as ProxyOptions


@pytest.fixture
def zeroconf_installed():
    require("zeroconf", "discovery")


def proxy(*argv):
    options = ProxyOptions(environ={})
    options.parseOptions(["-b", "127.0.0.1:6000", *argv])
    return options.config


def test_off_by_default():
    assert proxy().advertise is None
    device = DeviceOptions()
    device.parseOptions([])
    assert device["advertise-config"] is None


@pytest.mark.usefixtures("zeroconf_installed")
@pytest.mark.parametrize(("argv", "interfaces"), [
    (["--listen", "127.0.0.1"], ("127.0.0.1",)),  # loopback daemon: loopback only
    ([], ()),  # 0.0.0.0: every interface
    (["--listen", "10.1.2.3"], ("10.1.2.3",)),
    (["--listen", "tcp:5732:interface=127.0.0.1"], ("127.0.0.1",)),
    (["--listen", "tcp:5732"], ()),
    (["--listen", "127.0.0.1", "--advertise-interface", "all"], ()),
    (["--advertise-interface", "10.0.0.1, 10.0.0.2"], ("10.0.0.1", "10.0.0.2")),
])
def test_interfaces_follow_the_listening_address(argv, interfaces):
    assert proxy("--advertise", *argv).advertise == AdvertiseConfig(None, interfaces)


@pytest.mark.usefixtures("zeroconf_installed")
def test_device_name_and_interface():
    device = DeviceOptions()
    device.parseOptions(["--advertise", "--advertise-name", "bench sim"])
    assert device["advertise-config"] == AdvertiseConfig("bench sim", ("127.0.0.1",))


@pytest.mark.parametrize(("argv", "needle"), [
    (["--advertise", "--advertise-interface", "eth0"], "IPv4 addresses, not 'eth0'"),
    (["--advertise", "--advertise-interface", "::1"], "IPv4 addresses"),
    (["--advertise", "--advertise-interface", ","], "IPv4 addresses"),
    (["--advertise", "--advertise-name", "a.b"], "--advertise-name must be"),
    (["--advertise-name", "x"], "need --advertise"),
    (["--advertise-interface", "all"], "need --advertise"),
    (["--advertise", "--no-advertise", "--advertise-name", "x"], "need --advertise"),
])
def test_bad_values_are_usage_errors(argv, needle):
    with pytest.raises(usage.UsageError, match=needle):
        proxy(*argv)


def test_without_zeroconf_advertise_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroconf", None)
    with pytest.raises(usage.UsageError, match=r"pip install -e '\.\[discovery\]'"):
        proxy("--advertise")
    assert proxy("--no-advertise").advertise is None


def test_helpers():
    assert interfaces_for("::1") == ("127.0.0.1",)
    assert interfaces_for("::") == () and interfaces_for("fe80::1") == ()
    assert parse_interfaces("ALL") == ()
    name = default_name("proxy", 5732)
    assert name.startswith("pybrid-proxy on ") and name.endswith(" port 5732")
    assert "." not in name and len(name) <= 63

"""AdvertiseService with a stand-in zeroconf module: what it registers, refreshes and withdraws,
in order, off the reactor thread; a failure to advertise is logged, nothing else."""

from __future__ import annotations

import queue
import sys
import threading
import types

import pytest
from twisted.internet import task

from pybrid.discovery.advertise import AdvertiseService, advertised_addresses
from pybrid.discovery.records import Advert


class ThreadedClock(task.Clock):
    """A Clock whose callFromThread queues the call for :meth:`pump` (the test's reactor)."""

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args, **kw):
        self.from_threads.put((f, args, kw))

    def pump(self, until, seconds=10.0):
        for _ in range(1000):
            if until():
                return
            f, args, kw = self.from_threads.get(timeout=seconds)
            f(*args, **kw)
        raise AssertionError("never happened")


class FakeZeroconf:
    def __init__(self, log, fail):
        self.log, self.fail = log, fail
        self.log.append(("open", threading.current_thread().name))

    def register_service(self, info, allow_name_change=False):
        if self.fail:
            raise OSError("no multicast here")
        self.log.append(("register", info.name, dict(info.properties), info.addresses))

    def update_service(self, info):
        self.log.append(("update", dict(info.properties)))

    def unregister_service(self, info):
        self.log.append(("unregister", info.name))

    def close(self):
        self.log.append(("close",))


@pytest.fixture
def fake_zeroconf(monkeypatch):
    log, state = [], {"fail": False}
    module = types.SimpleNamespace(
        Zeroconf=lambda interfaces, ip_version: FakeZeroconf(log, state["fail"]),
        ServiceInfo=lambda type_, name, **kw: types.SimpleNamespace(name=name, **kw),
        InterfaceChoice=types.SimpleNamespace(All="all"),
        IPVersion=types.SimpleNamespace(V4Only="v4"),
        get_all_addresses=lambda: ["127.0.0.1", "10.0.0.5"],
    )
    monkeypatch.setitem(sys.modules, "zeroconf", module)
    return log, state


def test_registered_refreshed_and_withdrawn_in_order(fake_zeroconf):
    log, _ = fake_zeroconf
    clock = ThreadedClock()
    macs = ["AA"]
    svc = AdvertiseService(
        clock, lambda: Advert("lab", 5732, "proxy", "1.0", tuple(macs)), ["127.0.0.1"],
        refresh=5.0)
    svc.startService()
    clock.pump(lambda: svc.registered_name == "lab")
    opened, registered = log[0], log[1]
    assert opened[1] == "pybrid-zeroconf"  # not the reactor's (this) thread
    assert registered[1] == "lab._lucijsonl._tcp.local."
    assert registered[2]["macs"] == "AA" and registered[3] == [b"\x7f\x00\x00\x01"]
    clock.advance(5.0)  # nothing changed: no update
    macs.append("BB")
    clock.advance(5.0)
    clock.pump(lambda: any(e[0] == "update" for e in log))
    assert [e for e in log if e[0] == "update"] == [("update", {**registered[2], "carriers": "2",
                                                                  "macs": "AA,BB"})]
    stopped = svc.stopService()
    done = []
    stopped.addBoth(done.append)
    clock.pump(lambda: done)
    assert log[-2:] == [("unregister", "lab._lucijsonl._tcp.local."), ("close",)]


def test_stop_during_registration_withdraws_after_it(fake_zeroconf):
    log, _ = fake_zeroconf
    clock = ThreadedClock()
    svc = AdvertiseService(clock, lambda: Advert("lab", 1, "device", "1.0"), ["127.0.0.1"])
    svc.startService()
    done = []
    svc.stopService().addBoth(done.append)  # before the registration's thread reported back
    clock.pump(lambda: done)
    assert [e[0] for e in log] == ["open", "register", "unregister", "close"]


def test_a_failed_registration_is_logged_and_stop_still_works(fake_zeroconf, capsys):
    log, state = fake_zeroconf
    state["fail"] = True
    clock = ThreadedClock()
    svc = AdvertiseService(clock, lambda: Advert("lab", 1, "proxy", "1.0"), ())
    errors = []
    from twisted.logger import globalLogPublisher

    def observe(event):
        if event.get("log_failure") is not None:
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        svc.startService()
        clock.pump(lambda: errors)
        done = []
        svc.stopService().addBoth(done.append)
        clock.pump(lambda: done)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert "no multicast here" in str(errors[0]["log_failure"].value)
    assert svc.registered_name is None
    assert [e[0] for e in log] == ["open", "close"]


def test_all_interfaces_publish_no_loopback_address(fake_zeroconf):
    assert advertised_addresses(()) == ["10.0.0.5"]
    assert advertised_addresses(("127.0.0.1",)) == ["127.0.0.1"]

"""The proxy's bridge child (pybrid.proxy.taps.nats.child) on a fake process reactor, and the
proxy's ``--nats`` options (pybrid.proxy.taps.nats.options)."""

from __future__ import annotations

import json

import attrs
import pytest
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python import failure, usage

from pybrid.proxy.plugin import Options
from pybrid.proxy.taps.nats.child import NatsBridgeService, NatsExportConfig


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class ProcessReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[object, list[str], FakeTransport]] = []

    def spawnProcess(self, proto, executable, args, env=None, **kw):
        transport = FakeTransport(1000 + len(self.spawned))
        self.spawned.append((proto, list(args), transport))
        return transport


def config() -> NatsExportConfig:
    return NatsExportConfig(servers=("nats://a:4222", "nats://b:4222"), proxy_name="lab",
                            replicas=3, creds="/etc/x.creds")


def status_line(**fields) -> bytes:
    return json.dumps({"nats_bridge": fields}).encode() + b"\n"


def ended(proto, code: int = 1) -> None:
    proto.processEnded(failure.Failure(error.ProcessTerminated(code)))


def test_the_bridge_is_spawned_with_every_setting_and_no_secret():
    reactor = ProcessReactor()
    service = NatsBridgeService(config(), reactor, python="/py")
    service.startService()
    (_proto, argv, _t), = reactor.spawned
    assert argv[:3] == ["/py", "-m", "pybrid.proxy.taps.nats"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--link-fd"] == "3" and "--shm" not in argv and pairs["--replicas"] == "3"
    assert pairs["--nats-creds"] == "/etc/x.creds" and pairs["--nice"] == "10"
    assert argv.count("--nats") == 2 and "--nats-token" not in argv
    assert service.status().state == "starting"


def test_status_lines_become_the_status_and_counts_survive_a_restart():
    reactor = ProcessReactor()
    service = NatsBridgeService(config(), reactor, backoff=1.0, backoff_max=4.0)
    service.startService()
    proto = reactor.spawned[0][0]
    proto.outReceived(status_line(connected=False, connects=0, last_error="refused"))
    assert service.status().state == "connecting"
    proto.outReceived(status_line(connected=True, connects=1, stored=5, dropped=2)[:10])
    proto.outReceived(status_line(connected=True, connects=1, stored=5, dropped=2)[10:])
    s = service.status()
    assert (s.state, s.stored, s.dropped) == ("connected", 5, 2)
    ended(proto)
    assert service.status().state == "restarting" and len(reactor.spawned) == 1
    reactor.advance(1.0)
    assert len(reactor.spawned) == 2
    reactor.spawned[1][0].outReceived(status_line(connected=True, connects=1, stored=1))
    s = service.status()
    assert (s.stored, s.dropped, s.restarts) == (6, 2, 1)


def test_restarts_back_off_and_stop_terminates_the_child():
    reactor = ProcessReactor()
    service = NatsBridgeService(config(), reactor, backoff=1.0, backoff_max=4.0)
    service.startService()
    for delay in (1.0, 2.0, 4.0, 4.0):
        ended(reactor.spawned[-1][0])
        count = len(reactor.spawned)
        reactor.advance(delay - 0.01)
        assert len(reactor.spawned) == count
        reactor.advance(0.01)
        assert len(reactor.spawned) == count + 1
    proto, _argv, transport = reactor.spawned[-1]
    d = service.stopService()
    assert transport.signals == ["TERM"] and not d.called
    ended(proto, 0)
    assert d.called and service.status().state == "stopped"
    assert len(reactor.spawned) == 5  # no restart after stop


def test_proxy_options_build_the_export_without_a_shm_tap():
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", "--nats", "nats://n1:4222", "--nats",
                          "tls://n2:4222", "--nats-replicas", "3", "--nats-max-bytes", "2GiB",
                          "--nats-max-age", "12h", "--nats-name", "lab-a"])
    nats = options.config.nats
    assert nats.servers == ("nats://n1:4222", "tls://n2:4222")
    assert (nats.replicas, nats.max_bytes, nats.max_age) == (3, 2 << 30, 12 * 3600.0)
    assert nats.proxy_name == "lab-a"
    assert options.config.shm_taps == ()  # the bridge reads the proxy's link


@pytest.mark.parametrize("args, message", [
    (["--nats", "localhost:4222"], "needs a URL"),
    (["--nats", "nats://n:4222", "--nats-replicas", "7"], "1 to 5"),
    (["--nats", "nats://n:4222", "--nats-max-age", "soon"], "not a duration"),
    (["--nats", "nats://n:4222", "--nats-max-bytes", "lots"], "not a size"),
    (["--nats", "nats://n:4222", "--nats-name", "a.b"], "letters, digits"),
])
def test_bad_nats_options_are_refused_clearly(args, message):
    with pytest.raises(usage.UsageError, match=message):
        Options(environ={}).parseOptions(["-b", "127.0.0.1:5732", *args])


def test_without_nats_there_is_no_export():
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732"])
    assert options.config.nats is None and options.config.shm_taps == ()


def test_every_count_of_the_bridge_reaches_the_status_summed_over_restarts():
    from pybrid.proxy.taps.nats.bridge import BridgeStats, ExportCounters

    reactor = ProcessReactor()
    service = NatsBridgeService(config(), reactor, backoff=1.0)
    service.startService()
    names = [a.name for a in attrs.fields(ExportCounters)]
    stats = BridgeStats(connected=True, connects=1, **{n: i + 1 for i, n in enumerate(names)})
    line = json.dumps({"nats_bridge": stats.status(queue=3, pending=4)}).encode() + b"\n"
    reactor.spawned[0][0].outReceived(line)
    ended(reactor.spawned[0][0])
    reactor.advance(1.0)
    reactor.spawned[1][0].outReceived(line)
    s = service.status()
    assert {n: getattr(s, n) for n in names} == {n: 2 * (i + 1) for i, n in enumerate(names)}
    assert (s.queue, s.pending, s.restarts) == (3, 4, 1)


def test_nats_sched_idle_starts_the_bridge_under_sched_idle():
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", "--nats", "nats://n1:4222"])
    assert not options.config.nats.sched_idle
    assert "--sched-idle" not in options.config.nats.argv()
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", "--nats", "nats://n1:4222",
                          "--nats-sched-idle"])
    argv = options.config.nats.argv()
    assert options.config.nats.sched_idle and "--sched-idle" in argv
    assert argv[argv.index("--nice") + 1] == "10"  # nice too, where SCHED_IDLE is missing


def test_the_bridge_puts_itself_under_sched_idle():
    import os
    import subprocess
    import sys
    import time

    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this OS")
    # Once idle, the child may get no CPU on a busy host: this process reads its policy.
    code = ("import sys; from pybrid.proxy.taps.nats.cli import sched_idle; "
            "sched_idle() or sys.exit(3); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while os.sched_getscheduler(child.pid) != os.SCHED_IDLE:
            assert child.poll() is None, f"the child ended with {child.returncode}"
            assert time.monotonic() < deadline, "the child never went under SCHED_IDLE"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait(30)


def test_nats_nice_sets_the_bridge_nice_value_and_refuses_out_of_range():
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1:5732", "--nats", "nats://n1:4222",
                          "--nats-nice", "5"])
    argv = options.config.nats.argv()
    assert options.config.nats.nice == 5 and argv[argv.index("--nice") + 1] == "5"
    for bad in ("20", "-1", "low"):
        with pytest.raises(usage.UsageError, match="--nats-nice"):
            Options(environ={}).parseOptions(["-b", "127.0.0.1:5732", "--nats",
                                              "nats://n1:4222", "--nats-nice", bad])


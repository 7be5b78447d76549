"""``twistd pybrid-proxy --nats URL``: the proxy starts the NATS bridge as its child process.

Design note
-----------
The bridge (:mod:`pybrid.proxy.taps.nats.bridge`) runs in its own process, fed by the proxy's
:class:`~.feed.NatsFeed` over a link (a Unix socket pair, :mod:`pybrid.proxy.taps.link`), so
nothing NATS does — slow, full, down — can delay the proxy's reactor: the feed sends its
blocks every ``FLUSH_EVERY`` without ever waiting (a bridge that is behind gets none,
counted).  :class:`NatsBridgeService` spawns it with ``reactor.spawnProcess``, first sends it
the kept runs' start and layout messages (a bridge restarted mid-run knows the run), reads
its one-JSON-object status lines from stdout (connected or not, published, stored, dropped,
failed …) for the status page and ``/metrics``, and restarts it with backoff (``backoff``
doubling up to ``backoff_max``) when it exits.  The bridge ends with the proxy: its link
closes.  Secrets stay out of the command line: the bridge reads ``PYBRID_NATS_TOKEN`` and
``PYBRID_NATS_PASSWORD`` from the environment it inherits.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from pybrid.proxy.taps.children import RestartingChild, terminate
from pybrid.proxy.taps.link import LinkWriter, link_pair
from pybrid.proxy.taps.nats.bridge import ExportCounters
from pybrid.proxy.taps.nats.feed import FLUSH_EVERY, NatsFeed
from pybrid.wire import nats_format as N

_log = Logger()
#: The bridge's nice value unless ``--nats-nice`` says otherwise: 19 keeps the proxy's loss-free
#: rate higher, but beside busy processes the bridge then stores nothing for seconds
#: (docs/performance.md#the-nats-export); 10 keeps the export going on a busy host.
DEFAULT_NICE = 10
_COUNTS = tuple(a.name for a in attrs.fields(ExportCounters))
#: Bytes of blocks held for a bridge that is behind (about 0.3 s at 100 MB/s) before the
#: feed counts them as not sent.
LINK_QUEUE = 32 << 20


@attrs.frozen
class NatsExportConfig:
    """The proxy's ``--nats*`` options (validated by the proxy's option parser)."""

    servers: tuple[str, ...]
    proxy_name: str
    stream: str = N.DEFAULT_STREAM
    prefix: str = N.DEFAULT_PREFIX
    max_bytes: int = 1 << 30
    max_age: float = 7 * 86400.0
    replicas: int = 1
    queue: int = 10_000
    nice: int = DEFAULT_NICE  # the bridge yields the CPU to the proxy
    sched_idle: bool = False  # the bridge only gets CPU time nothing else wants
    user: str | None = None
    creds: str | None = None
    nkey: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def argv(self, python: str = sys.executable) -> list[str]:
        args = [python, "-m", "pybrid.proxy.taps.nats", "--link-fd", "3",
                "--proxy-name", self.proxy_name,
                "--nats-stream", self.stream, "--nats-prefix", self.prefix,
                "--max-bytes", str(self.max_bytes), "--max-age", f"{self.max_age:g}",
                "--replicas", str(self.replicas), "--queue", str(self.queue),
                "--nice", str(self.nice)]
        if self.sched_idle:
            args.append("--sched-idle")
        for url in self.servers:
            args += ["--nats", url]
        for flag, value in (("--nats-user", self.user), ("--nats-creds", self.creds),
                            ("--nats-nkey", self.nkey), ("--nats-tls-ca", self.tls_ca),
                            ("--nats-tls-cert", self.tls_cert),
                            ("--nats-tls-key", self.tls_key)):
            if value:
                args += [flag, value]
        return args


@attrs.frozen(kw_only=True)
class NatsExportStatus(ExportCounters):
    """What the status page and ``/metrics`` show of the export: the bridges' counts (summed
    over restarts), then its state."""

    servers: tuple[str, ...]
    stream: str
    state: str  # starting, connecting, connected, disconnected, restarting, stopped
    pid: int | None
    restarts: int
    queue: int = 0
    pending: int = 0
    last_error: str = ""
    #: The proxy's side: chunks sent to the bridge, not sent (the bridge behind or not
    #: running, the proxy behind its intake), and of those while the proxy was behind.
    sent: int = 0
    not_sent: int = 0
    yielded: int = 0


class _BridgeProcess(protocol.ProcessProtocol):
    def __init__(self, owner: NatsBridgeService) -> None:
        self.owner = owner
        self.buffer = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.owner.line(line)
        if len(self.buffer) > 1 << 16:  # a line this long is not ours
            self.buffer = b""

    def errReceived(self, data: bytes) -> None:
        text = data.decode(errors="replace").strip()
        if text:
            _log.warn("nats bridge: {text}", text=text[-2000:])

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.owner.exited(self, reason.value)


@attrs.define(eq=False)
class NatsBridgeService(RestartingChild, Service):
    """Runs and watches the bridge child; see the module note."""

    config: NatsExportConfig
    reactor: Any
    #: The router's tap that feeds the bridge's link.
    feed: NatsFeed = attrs.Factory(NatsFeed)
    backoff: float = 1.0
    backoff_max: float = 30.0
    python: str = sys.executable
    restarts: int = 0
    last: dict[str, Any] = attrs.Factory(dict)
    #: Counts of bridges that exited (a restarted bridge counts from 0 again).
    _base: dict[str, int] = attrs.Factory(dict)
    _proc: _BridgeProcess | None = None
    _transport: Any = None
    _link: LinkWriter | None = None
    _flush: task.LoopingCall | None = None
    _delay: float = 0.0
    _retry: Any = None
    _stopping: bool = False

    def _spawn(self) -> None:
        self._retry = None
        self._proc = _BridgeProcess(self)
        argv = self.config.argv(self.python)
        ours, theirs = link_pair()
        try:
            self._transport = self.reactor.spawnProcess(
                self._proc, argv[0], argv, env=dict(os.environ),
                childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()})
        finally:
            theirs.close()
        self._link = LinkWriter(ours, self.reactor, LINK_QUEUE)
        for parts in self.feed.replay():  # the runs the bridge would not know of
            self._link.event(parts)
        self.feed.link = self._link
        self._flush = task.LoopingCall(self._flush_feed)
        self._flush.clock = self.reactor
        self._flush.start(FLUSH_EVERY, now=False)
        _log.info("nats export: bridge started (pid {pid}) for {servers}, stream {stream}",
                  pid=self._transport.pid, servers=",".join(self.config.servers),
                  stream=self.config.stream)

    def line(self, raw: bytes) -> None:
        try:
            status = json.loads(raw)["nats_bridge"]
        except (ValueError, KeyError, TypeError):
            _log.info("nats bridge: {line}", line=raw.decode(errors="replace")[:500])
            return
        if status.get("connected") and not self.last.get("connected"):
            _log.info("nats export: connected to {servers}", servers=",".join(
                self.config.servers))
            self._delay = self.backoff
        if status.get("fed") and not self.last.get("fed"):
            _log.info("nats export: the bridge reads the proxy's link")
        self.last = status

    def _flush_feed(self) -> None:
        try:
            self.feed.flush()
        except Exception:
            _log.failure("nats export: sending blocks to the bridge failed")

    def _close_link(self) -> None:
        if self._flush is not None and self._flush.running:
            self._flush.stop()
        self._flush = None
        self.feed.flush()  # what waits is counted as not sent
        if self.feed.link is self._link:
            self.feed.link = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def exited(self, proc: _BridgeProcess, reason: Any) -> None:
        if proc is not self._proc:
            return
        self._transport = None
        self._close_link()
        for key in _COUNTS:
            self._base[key] = self._base.get(key, 0) + int(self.last.get(key, 0))
        self.last = {}
        if not self._stopping:
            self._restart_later("nats export: bridge", reason)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stop_restarting()
        self._close_link()
        proc, transport = self._proc, self._transport
        if proc is None or transport is None:
            return defer.succeed(None)
        return terminate(self.reactor, transport, proc.ended)

    def status(self) -> NatsExportStatus:
        s = self.last
        if self._stopping:
            state = "stopped"
        elif self._transport is None:
            state = "restarting"
        elif not s:
            state = "starting"
        elif s.get("connected"):
            state = "connected"
        else:
            state = "disconnected" if s.get("connects") else "connecting"
        counts = {k: self._base.get(k, 0) + int(s.get(k, 0)) for k in _COUNTS}
        counts.update(queue=int(s.get("queue", 0)), pending=int(s.get("pending", 0)),
                      sent=self.feed.sent, not_sent=self.feed.not_sent,
                      yielded=self.feed.yielded)
        return NatsExportStatus(
            servers=self.config.servers, stream=self.config.stream, state=state,
            pid=None if self._transport is None else self._transport.pid,
            restarts=self.restarts, last_error=str(s.get("last_error", "")), **counts)

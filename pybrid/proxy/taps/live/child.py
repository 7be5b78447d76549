"""``--live-process``: the proxy serves ``/live``'s viewers from a child process.

Design note
-----------
Serving the live view in the proxy's own process costs it a third or more of its CPU per
datagram (docs/performance.md#the-live-view): storing and binning the samples and sending the
viewers' frames.  With ``--live-process`` the proxy starts a child
(``python -m pybrid.proxy.taps.live``, :mod:`.cli`) with two Unix socket pairs.  On the
first it hands every WebSocket upgrade of ``/live/ws`` over after its own checks (auth,
Origin): the socket itself (:mod:`pybrid.live.handoff`); the child answers with JSON lines
(``{"ready": true}``, ``{"viewers": N}``).  On the second the live tap sends the run events
and, while the child has viewers, the watched chunks' sample bytes in blocks every
``FLUSH_EVERY`` seconds (:mod:`.link`); the child decodes, stores, bins and draws.  The page's
URL, port, token and cookie stay the proxy's.  Until the child is ready, while it restarts
(with backoff, like the NATS bridge), or on a TLS status port, the proxy serves the viewer
itself: the view never breaks.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from pybrid.live.handoff import can_hand_over, hand_over
from pybrid.proxy.taps.children import RestartingChild, terminate
from pybrid.proxy.taps.link import link_pair
from pybrid.proxy.taps.live.link import LiveLink

_log = Logger()
#: Seconds between the blocks the live tap sends the child while someone watches.
FLUSH_EVERY = 0.01
#: The live process's nice increment.  0: it competes as the view in the proxy would; at 10
#: the proxy comes first, but beside two busy processes the viewers got no frame for seconds.
DEFAULT_NICE = 0


@attrs.frozen
class LiveProcessStatus:
    """What the status page and ``/metrics`` show of ``--live-process``."""

    pid: int | None
    ready: bool
    viewers: int
    handed: int  # viewers handed over to the process
    served_here: int  # viewers the proxy served itself (not ready, TLS)
    sent: int  # watched chunks sent to the process
    not_sent: int  # … and not sent while it was behind
    restarts: int


def nice_from(environ: Any) -> int:
    """The live process's nice increment: ``PYBRID_LIVE_NICE`` (0 … 19), else 0."""
    text = environ.get("PYBRID_LIVE_NICE", "")
    try:
        value = int(text) if text else DEFAULT_NICE
    except ValueError:
        value = -1
    if not 0 <= value <= 19:
        _log.warn("PYBRID_LIVE_NICE={text!r} is not 0 … 19; the live process runs at nice "
                  "{default}", text=text, default=DEFAULT_NICE)
        return DEFAULT_NICE
    return value


class _Child(protocol.ProcessProtocol):
    def __init__(self, owner: LiveProcess) -> None:
        self.owner = owner
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        _log.info("live process: {text}", text=data.decode(errors="replace").strip()[-2000:])

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.owner.exited(self, reason.value)


class _Lines(protocol.Protocol):
    """The child's JSON lines on the socket pair."""

    def __init__(self, owner: LiveProcess) -> None:
        self.owner = owner
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            self.owner.line(line)
        if len(self.buffer) > 1 << 16:
            self.buffer = b""


class _LinesFactory(protocol.Factory):
    def __init__(self, owner: LiveProcess) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Lines:
        return _Lines(self.owner)


@attrs.define(eq=False)
class LiveProcess(RestartingChild, Service):
    """Runs the live-view child and hands viewers to it; see the module note."""

    reactor: Any
    #: The proxy's :class:`~.tap.LiveTap`: it sends the child blocks while ``viewers``.
    tap: Any
    nice: int = attrs.field(factory=lambda: nice_from(os.environ))
    python: str = sys.executable
    backoff: float = 1.0
    backoff_max: float = 30.0
    ready: bool = False
    viewers: int = 0
    #: Viewers handed to the child; upgrades the proxy served itself (not ready, TLS, full).
    handed: int = 0
    served_here: int = 0
    restarts: int = 0
    _sent: int = 0
    _not_sent: int = 0
    _pair: socket.socket | None = None
    _lines: Any = None
    _link: Any = None
    _flush: task.LoopingCall | None = None
    _proc: _Child | None = None
    _transport: Any = None
    _retry: Any = None
    _delay: float = 0.0
    _stopping: bool = False

    def _spawn(self) -> None:
        self._retry = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        link_ours, link_theirs = link_pair()
        argv = [self.python, "-m", "pybrid.proxy.taps.live", "--fd", "3", "--link-fd", "4",
                "--nice", str(self.nice)]
        self._proc = _Child(self)
        try:
            self._transport = self.reactor.spawnProcess(
                self._proc, argv[0], argv, env=dict(os.environ),
                childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno(), 4: link_theirs.fileno()})
        finally:
            theirs.close()
            link_theirs.close()
        self._pair = ours
        self._lines = self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX,
                                                         _LinesFactory(self))
        self._link = LiveLink(link_ours, self.reactor)
        _log.info("live view: process started (pid {pid})", pid=self._transport.pid)

    def line(self, raw: bytes) -> None:
        try:
            said = json.loads(raw)
        except ValueError:
            _log.warn("live process: {line!r}", line=raw[:200])
            return
        if said.get("ready") and not self.ready:
            self.ready = True
            self._delay = self.backoff
            self.tap.link = self._link
            self._announce()
        if "viewers" in said:
            self.viewers = int(said["viewers"])
        self._watching(self.viewers if self.ready else 0)

    def _announce(self) -> None:
        """The runs the proxy's store knows, to a child that starts mid-run."""
        for run in self.tap.store.runs.values():
            self._link.start(run.run_id, run.number, run.sample_rate, run.started)
            if run.ended_at is not None:
                self._link.end(run.run_id, run.result, run.chunks, run.missing, run.ended_at)

    def _watching(self, viewers: int) -> None:
        """The tap sends blocks, flushed every ``FLUSH_EVERY`` s, while the child has viewers."""
        self.tap.remote = viewers
        if viewers and self._flush is None:
            self._flush = task.LoopingCall(self._flush_tap)
            self._flush.clock = self.reactor
            self._flush.start(FLUSH_EVERY, now=False)
        elif not viewers and self._flush is not None:
            loop, self._flush = self._flush, None
            if loop.running:
                loop.stop()

    def _flush_tap(self) -> None:
        try:
            self.tap.flush()
        except Exception:
            _log.failure("live view: sending blocks to the process failed")

    def hand_over(self, request: Any) -> bool:
        """Give ``request``'s connection to the child; False: the proxy serves it."""
        if self.ready and self._pair is not None and can_hand_over(request):
            if hand_over(self._pair, request):
                self.handed += 1
                return True
        self.served_here += 1
        return False

    def status(self) -> LiveProcessStatus:
        link = self._link
        return LiveProcessStatus(
            pid=None if self._transport is None else self._transport.pid, ready=self.ready,
            viewers=self.viewers, handed=self.handed, served_here=self.served_here,
            sent=self._sent + (0 if link is None else link.sent),
            not_sent=self._not_sent + (0 if link is None else link.not_sent),
            restarts=self.restarts)

    def _close_pairs(self) -> None:
        self.ready = False
        self.viewers = 0
        self._watching(0)
        if self.tap.link is self._link:
            self.tap.link = None
        if self._lines is not None:
            self._lines.loseConnection()
        if self._link is not None:
            self._sent += self._link.sent  # the counts go on over restarts
            self._not_sent += self._link.not_sent
            self._link.close()
        self._lines = self._link = None
        if self._pair is not None:
            self._pair.close()
            self._pair = None

    def exited(self, proc: _Child, reason: Any) -> None:
        if proc is not self._proc:
            return
        self._transport = None
        self._close_pairs()
        if not self._stopping:
            self._restart_later("live view: process", reason)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stop_restarting()
        proc, transport = self._proc, self._transport
        self._close_pairs()  # the child sees the pairs close and stops
        if proc is None or transport is None:
            return defer.succeed(None)
        return terminate(self.reactor, transport, proc.ended)

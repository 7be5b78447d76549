"""The monitor tap: copies backend datagrams to multicast groups from the proxy's hot path.

Design note
-----------
The run router tells the tap of its runs (:class:`~pybrid.proxy.taps.base.RunTap`): every data
and state Envelope as the client got it (the client's run id) goes out with
:meth:`MulticastTap.emit`, on the reactor thread; a run's start and end as a JSON run record
(``FLAG_RUN_RECORD``: the client's run id, carriers, sample rate …), so a listener knows what it
records without being told.  ``emit`` does only this: one
``struct.pack`` of the fixed header (:mod:`pybrid.wire.monitor_header`), one bytes concatenation
and one ``sendto`` per group on a non-blocking socket.  It never parses protobuf, never looks
at samples, never blocks and never raises into the caller:

* a full socket buffer (``EAGAIN``/``ENOBUFS``) drops the datagram for that group and counts
  it in ``dropped_busy``; any other ``OSError`` counts in ``dropped_error``;
* an Envelope too big for one datagram with the header counts in ``oversize``;
* ``emit`` before :meth:`start` or after :meth:`stop` counts in ``not_running``;
* the first drop of each kind is logged, later ones only counted (``counters``).

The tap sequence number advances for every ``emit`` call, even dropped ones, so a listener
sees every loss as a gap.  The socket is a Twisted multicast port bound to an ephemeral port;
the time stamp comes from the injected reactor's ``seconds()``.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterable
from typing import Any, cast

import attrs
from twisted.internet import defer, protocol
from twisted.logger import Logger

from pybrid.monitor.options import (
    DEFAULT_INTERFACE,
    DEFAULT_TTL,
    MonitorConfig,
    parse_group,
    parse_interface,
    parse_ttl,
)
from pybrid.proxy.taps.base import RunEnd, RunInfo
from pybrid.wire.interfaces import INetworkReactor
from pybrid.wire.layout import Layout
from pybrid.wire.monitor_header import (
    FLAG_RUN_RECORD,
    HEADER,
    MAGIC,
    MAX_ENVELOPE,
    RUN_WIDE,
    VERSION,
)

#: Send buffer the tap asks for (the kernel may cap it).
SEND_BUFFER = 1 << 20

_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def _groups(value: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Validate ``(address, port)`` pairs as ``--monitor`` would; raises ValueError."""
    return [parse_group(f"{g}:{p}") for g, p in value]


class TapSetupError(Exception):
    """The tap's socket could not be configured (e.g. the interface address is not local)."""


@attrs.define
class GroupCounters:
    """What the tap did for one group."""

    group: str
    port: int
    sent: int = 0
    bytes: int = 0
    dropped_busy: int = 0
    dropped_error: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_busy + self.dropped_error


@attrs.define
class TapCounters:
    """Totals of one tap; ``groups`` holds one :class:`GroupCounters` per target."""

    emitted: int = 0
    oversize: int = 0
    not_running: int = 0
    invalid: int = 0
    groups: list[GroupCounters] = attrs.Factory(list)

    @property
    def dropped(self) -> int:
        """Datagrams lost to every group (oversize, not running, invalid) plus per-group drops."""
        whole = self.oversize + self.not_running + self.invalid
        return whole * len(self.groups) + sum(g.dropped for g in self.groups)


class _SendOnly(protocol.DatagramProtocol):
    """The tap's port never expects datagrams; anything that arrives is ignored."""

    noisy = False

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        pass


@attrs.define(eq=False)
class MulticastTap:
    """Sends a copy of each Envelope it is given, with a monitor header, to multicast groups.

    Responsible for the sending socket (TTL, loopback delivery, outgoing interface), the tap
    sequence number and the per-group counters.  ``reactor`` provides ``listenMulticast`` and
    ``seconds``; ``groups`` are ``(address, port)`` pairs already validated (see
    :mod:`pybrid.monitor.options`).
    """

    reactor: INetworkReactor
    groups: list[tuple[str, int]] = attrs.field(converter=_groups)
    ttl: int = attrs.field(default=DEFAULT_TTL, converter=parse_ttl)
    interface: str | None = attrs.field(default=DEFAULT_INTERFACE, converter=parse_interface)
    counters: TapCounters = attrs.field(init=False)
    _log: Logger = attrs.field(init=False, factory=Logger)
    _port: Any = attrs.field(init=False, default=None)
    _socket: Any = attrs.field(init=False, default=None)
    _targets: list[tuple[tuple[str, int], GroupCounters]] = attrs.field(init=False, factory=list)
    _sequence: int = attrs.field(init=False, default=0)
    _logged: set[tuple[str, int]] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self.counters = TapCounters(groups=[GroupCounters(g, p) for g, p in self.groups])
        self._targets = [((c.group, c.port), c) for c in self.counters.groups]

    @classmethod
    def from_config(cls, reactor: INetworkReactor, config: MonitorConfig) -> MulticastTap:
        return cls(reactor, config.groups, ttl=config.ttl, interface=config.interface)

    @property
    def running(self) -> bool:
        return self._socket is not None

    @property
    def sequence(self) -> int:
        """The sequence number the next datagram will carry."""
        return self._sequence

    def start(self) -> None:
        """Open and configure the sending socket; raises :class:`TapSetupError` on failure."""
        if self._port is not None:
            return
        bind = self.interface or ""
        try:
            port = self.reactor.listenMulticast(0, _SendOnly(), interface=bind)
        except Exception as e:
            raise TapSetupError(f"cannot open a multicast socket on {bind or 'any'}: {e}") from e
        sock = cast(Any, port).socket  # a Twisted multicast Port; the interface omits it
        try:
            port.setTTL(self.ttl)
            port.setLoopbackMode(True)
            if self.interface:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.interface)
                )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError as e:
            port.stopListening()
            raise TapSetupError(
                f"cannot send multicast from interface {self.interface or 'any'}: {e}"
            ) from e
        self._port = port
        self._socket = sock
        self._log.info(
            "monitor tap sending to {groups} (ttl {ttl}, interface {interface})",
            groups=", ".join(f"{g}:{p}" for g, p in self.groups),
            ttl=self.ttl,
            interface=self.interface or "any",
        )

    def stop(self) -> defer.Deferred[None]:
        """Close the socket; later ``emit`` calls are counted as ``not_running``."""
        port, self._port, self._socket = self._port, None, None
        if port is None:
            return defer.succeed(None)
        self._log.info(
            "monitor tap stopped after {emitted} datagrams, {dropped} dropped",
            emitted=self.counters.emitted,
            dropped=self.counters.dropped,
        )
        return defer.maybeDeferred(port.stopListening)

    def emit(
        self,
        payload: bytes,
        lane_index: int,
        flags: int = 0,
        timestamp_ns: int | None = None,
    ) -> None:
        """Send ``payload`` (a serialized Envelope) to every group, prefixed by the header.

        ``lane_index`` (0..65535) says which lane (backend) it came from; ``flags`` may
        hold :data:`~pybrid.wire.monitor_header.FLAG_TCP_LANE`; ``timestamp_ns`` defaults to the
        reactor's clock.  Never raises; see the module's design note for what is counted.
        """
        self.chunk(None, lane_index, None, 0, payload, flags, timestamp_ns)

    # -- the router's events (pybrid.proxy.taps.base.RunTap) --------------------------------

    def run_started(self, run: RunInfo) -> None:
        self._record({"event": "run-start", **run.as_record()})

    def chunk(self, run: RunInfo | None, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int, timestamp_ns: int | None = None) -> None:
        """One message to every group (what :meth:`emit` does; the router calls this)."""
        counters = self.counters
        counters.emitted += 1
        sequence = self._sequence
        self._sequence = sequence + 1
        sock = self._socket
        if sock is None:
            counters.not_running += 1
            return
        if len(payload) > MAX_ENVELOPE:
            counters.oversize += 1
            self._first("oversize", 0, size=len(payload))
            return
        if timestamp_ns is None:
            timestamp_ns = int(self.reactor.seconds() * 1e9)
        try:
            datagram = (
                HEADER.pack(MAGIC, VERSION, flags, lane, sequence, timestamp_ns)
                + payload
            )
        except Exception:
            counters.invalid += 1
            self._first("invalid", 0, lane=lane, flags=flags)
            return
        size = len(datagram)
        for target, group in self._targets:
            try:
                sock.sendto(datagram, target)
            except OSError as e:
                if e.errno in _BUSY:
                    group.dropped_busy += 1
                else:
                    group.dropped_error += 1
                self._first(f"{target[0]}:{target[1]}", e.errno or 0, error=str(e))
                continue
            group.sent += 1
            group.bytes += size

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None:
        self.chunk(run, lane, None, 0, payload, flags)

    def run_ended(self, run: RunInfo, end: RunEnd) -> None:
        state = {1: "ERROR", 2: "DONE"}.get(end.state, "")  # protobuf RunState numbers
        self._record({"event": "run-end", "run_id": run.client_id, "proxy_run_id": run.proxy_id,
                      "run": run.number, "state": state, "chunks": end.chunks,
                      "lost": end.lost})

    def _record(self, body: dict[str, Any]) -> None:
        self.emit(json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), RUN_WIDE,
                  FLAG_RUN_RECORD)

    def _first(self, what: str, code: int, **fields: Any) -> None:
        """Log the first drop of each kind; later ones are only counted."""
        key = (what, code)
        if key in self._logged:
            return
        self._logged.add(key)
        self._log.warn(
            "monitor tap dropping datagrams ({what}); further drops of this kind are only "
            "counted",
            what=what,
            **fields,
        )


def make_tap(reactor: INetworkReactor, config: MonitorConfig) -> MulticastTap | None:
    """A tap for ``config``, or None when no group is configured."""
    return MulticastTap.from_config(reactor, config) if config.enabled else None

"""The UDP sockets backends stream run data to, and the watch on their kernel drops.

Design note
-----------
Each backend lane gets its own intake socket, so a datagram's backend is known from the socket
it arrived on, even when several backends share one host (and a device's source port is not
known in advance).  The socket is bound to the local address of the lane's TCP connection — the
address the backend sends to (docs/protocol.md#data-lane) — with ``maxPacketSize=65536``
(Twisted's default of 8192 silently truncates) and a large ``SO_RCVBUF`` (``--udp-rcvbuf``, the
biggest single fix against kernel drops; :func:`pybrid.netstats.raise_rcvbuf` asks with
``SO_RCVBUFFORCE`` when allowed, and the size the kernel granted is logged).  Twisted's
``doRead`` reads datagrams until ``maxThroughput`` bytes per wake-up (``MAX_THROUGHPUT``).

**Source latch.** Datagrams are accepted only from the device's own source address: the first
datagram from the backend's IP that the router accepts as traffic of a registered run
(``deliver`` returns true) *latches* its ``(ip, port)`` in ``latched``; from then on a datagram
from any other address — another host, or another port of the backend's host, such as a local
process forging samples with the active run's id — is dropped and counted in
``counters.foreign``. Until the latch is set, datagrams from the backend's IP go to the router
(which drops anything that is not traffic of a registered run), so garbage cannot take the
latch. Once latched, the socket is ``connect()``-ed to the device's address: the kernel then
drops datagrams from every other address before they reach the socket's buffer, so a flood from
another local port can neither fill the buffer (the real stream loses nothing) nor cost the
proxy any time; the Python check stays for what was queued before the connect. Before the
latch, only a datagram the router accepts as traffic of a registered run can take it, and the
run ids the device streams are the proxy's own, random ones (:mod:`pybrid.proxy.data.router`):
an outsider cannot forge the datagram that would latch. The latch is released
(:meth:`DatagramIntake.unlatch`) on every UDP negotiation (setting ``peer_host``: each lane
connection) and whenever a run is registered (the service wires :meth:`IntakeWatch.unlatch` to
the router), so a device that opened a new socket, for a new connection or even per run, is
latched again by its next run's first datagram. Both devices we know open one UDP socket per
negotiation (our simulator, ``pybrid.device.lanes``; the reference mock, one datagram endpoint
per ``udp_data_streaming_command``). Per datagram, the intake does one tuple comparison and one
call.

The kernel counts, per socket, datagrams it discarded because the receive buffer was full
(``/proc/net/udp``, :func:`pybrid.netstats.socket_drops`).  :class:`IntakeWatch` reads that
for every intake once a second (a ``LoopingCall`` on the injected clock) or on demand
(:meth:`IntakeWatch.poll`), keeps the totals in each intake's ``counters.kernel_drops``, and
logs every increase together with the chunk gaps the router saw meanwhile — so a loss is
always reported, and attributed to the kernel or to the path before the proxy.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast

import attrs
from twisted.internet import protocol
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.logger import Logger

from pybrid import netstats
from pybrid.wire.counters import snapshot
from pybrid.wire.interfaces import host_port
from pybrid.wire.noise import worth_logging
from pybrid.wire.periodic import Periodic

MAX_PACKET = 65536
#: Bytes Twisted's UDP ``doRead`` reads per wake-up before returning to the reactor.
MAX_THROUGHPUT = 256 * 1024


@attrs.define
class IntakeCounters:
    """What one intake socket received, and what the kernel dropped on it."""

    datagrams: int = 0
    bytes: int = 0
    foreign: int = 0
    #: Times the socket was connected to a latched device address (the kernel filters then).
    connects: int = 0
    #: Datagrams the kernel dropped on this socket (buffer full), as of the last poll.
    kernel_drops: int = 0


@attrs.frozen(kw_only=True)
class IntakeStatus(IntakeCounters):
    """One intake socket as the status page shows it (:meth:`DatagramIntake.status`): its
    counters, then where it listens."""

    #: ``HOST:PORT`` the socket is bound to; None while it is not listening.
    address: str | None
    #: Receive buffer the kernel granted; None while not known.
    rcvbuf: int | None


def _socket_of(port: object) -> socket.socket | None:
    """The OS socket of a listening UDP port: Twisted's ``udp.Port`` has one (undeclared by
    its interfaces); a test's fake port may not."""
    return getattr(port, "socket", None)


class DatagramSink(Protocol):
    """Where an intake hands its datagrams: the run router."""

    # True: traffic of a registered run (the intake latches the device's source on it)
    def route_datagram(self, lane: Any, data: bytes) -> bool: ...


class DatagramIntake(protocol.DatagramProtocol):
    """One backend's UDP intake socket; see the module note.

    Every datagram from ``peer_host`` goes to ``sink.route_datagram(lane, data)``, where
    ``lane`` is the backend lane the socket belongs to.
    """

    log = Logger()
    noisy = False

    def __init__(self, name: str, lane: Any, sink: DatagramSink) -> None:
        self.name = name
        self._lane = lane
        self._sink = sink
        self._peer_host: str | None = None
        #: The device's latched address as Twisted gives it (``(ip, port)``; IPv6 adds flow
        #: info and scope), or None (see the module note).
        self.latched: tuple[Any, ...] | None = None
        self._last_latched: tuple[Any, ...] | None = None
        self.counters = IntakeCounters()
        self.port: IListeningPort | None = None
        self.rcvbuf = 0
        self._drops_base: int | None = None

    @property
    def peer_host(self) -> str | None:
        """The backend's IP address; setting it (a new UDP negotiation) releases the latch."""
        return self._peer_host

    @peer_host.setter
    def peer_host(self, host: str | None) -> None:
        self._peer_host = host
        self.unlatch()

    def unlatch(self) -> None:
        """Accept the next datagram of a registered run from the backend's IP as the
        device's source (a new run, or a new negotiation)."""
        self.latched = None
        port = self.port
        if port is not None and getattr(port, "_connectedAddr", None):
            sock = getattr(port, "socket", None)
            if sock is not None:
                disconnect_udp(sock)
            port._connectedAddr = None  # type: ignore[attr-defined]

    def _connect(self, addr: tuple[Any, ...]) -> None:
        """Let the kernel filter everything but ``addr`` (Twisted's ``Port.connect``)."""
        port = self.port
        if port is None or not hasattr(port, "connect") or getattr(port, "_connectedAddr",
                                                                     None):
            return
        try:
            port.connect(addr[0], addr[1])
        except Exception as e:  # the Python check still filters
            self.log.warn("backend {backend} intake: connect to {addr} failed: {error}",
                          backend=self.name, addr=f"{addr[0]}:{addr[1]}", error=e)
            return
        self.counters.connects += 1

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if addr == self.latched:
            counters = self.counters
            counters.datagrams += 1
            counters.bytes += len(data)
            self._sink.route_datagram(self._lane, data)
            return
        if self.latched is not None or addr[0] != self._peer_host:
            self._foreign(addr, len(data))
            return
        counters = self.counters
        counters.datagrams += 1
        counters.bytes += len(data)
        if self._sink.route_datagram(self._lane, data) and self.latched is None:
            latched = self.latched = tuple(addr)
            self._connect(latched)
            if latched == self._last_latched:
                return
            self._last_latched = latched
            self.log.info("backend {backend} intake: run data comes from {addr}; datagrams "
                          "from other addresses are dropped", backend=self.name,
                          addr=f"{addr[0]}:{addr[1]}")

    def _foreign(self, addr: Any, length: int) -> None:
        self.counters.foreign += 1
        count = self.counters.foreign
        if worth_logging(count):
            latched = self.latched
            if latched is not None and addr[0] == latched[0]:
                why = f"the backend's host, but not the device's port {latched[1]}"
            else:
                why = "an address that is not the backend's"
            self.log.warn(
                "backend {backend} intake: dropped datagram from {addr}: {why} ({length} bytes; "
                "{count} so far)",
                backend=self.name, addr=f"{addr[0]}:{addr[1]}", why=why, length=length,
                count=count,
            )

    # -- socket ------------------------------------------------------------------------------

    def listen(self, reactor: IReactorUDP, interface: str, rcvbuf: int,
               max_throughput: int = MAX_THROUGHPUT) -> int:
        """Bind to ``interface`` on a free port; return the port number."""
        self.port = _listen_pinned(reactor, self, interface)
        sock = _socket_of(self.port)
        if sock is not None:  # Twisted's udp.Port: read at most this much per wake-up
            cast(Any, self.port).maxThroughput = max_throughput
        self.rcvbuf = 0 if sock is None else netstats.raise_rcvbuf(sock, rcvbuf)
        self._drops_base = None if sock is None else netstats.socket_drops(sock)
        number = host_port(self.port.getHost())[1]
        self.log.info(
            "backend {backend} intake listening on {interface}:{port} (SO_RCVBUF: asked "
            "{wanted} bytes, the kernel granted {rcvbuf})",
            backend=self.name, interface=interface, port=number, wanted=rcvbuf,
            rcvbuf=self.rcvbuf,
        )
        return number

    def status(self) -> IntakeStatus:
        c = self.counters
        address = None
        if self.port is not None:
            host, port = host_port(self.port.getHost())
            address = f"{host}:{port}"
        return snapshot(IntakeStatus, c, address=address, rcvbuf=self.rcvbuf or None)

    @property
    def interface(self) -> str | None:
        return None if self.port is None else host_port(self.port.getHost())[0]

    def backlog(self) -> float:
        """How full the socket's receive buffer is (0 … 1; 0 while not known): datagrams the
        proxy has not read yet, as the kernel accounts them against the limit it drops at."""
        sock = _socket_of(self.port)
        if sock is None:
            return 0.0
        held = netstats.receive_backlog(sock)
        return held[0] / held[1] if held and held[1] else 0.0

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on the current socket (None: not known here)."""
        sock = _socket_of(self.port)
        return None if sock is None else netstats.socket_drops(sock)

    def poll_drops(self) -> int:
        """Update ``counters.kernel_drops``; return the increase since the last poll."""
        now = self.kernel_drops()
        if now is None:
            return 0
        base = self._drops_base or 0
        self._drops_base = now
        new = max(0, now - base)
        self.counters.kernel_drops += new
        return new

    def stop(self) -> Any:
        if self.port is not None:
            self.poll_drops()
        port, self.port = self.port, None
        self._drops_base = None
        return None if port is None else port.stopListening()


def intake_backlog(lanes: Iterable[HasIntake]) -> float:
    """The fullest intake's :meth:`DatagramIntake.backlog` (0 … 1) of ``lanes``."""
    return max((lane.intake.backlog() for lane in lanes if lane.intake is not None),
               default=0.0)


def _listen_pinned(reactor: IReactorUDP, proto: DatagramIntake, interface: str) -> Any:
    """Listen on a free port named explicitly: a socket bound to port 0 loses its port when
    it is disconnected again (Linux unbinds it), one bound to a number keeps it."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    for attempt in range(5):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((interface, 0))
                number = probe.getsockname()[1]
        except OSError:  # let Twisted report it (or a test reactor accept it)
            number = 0
        try:
            return reactor.listenUDP(number, proto, interface=interface,
                                     maxPacketSize=MAX_PACKET)
        except CannotListenError:  # taken meanwhile: another one
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def disconnect_udp(sock: socket.socket) -> bool:
    """Undo ``connect()`` on a UDP socket (``connect`` to an ``AF_UNSPEC`` address, which
    Python's socket module cannot express); True if the kernel said yes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        unspec = ctypes.create_string_buffer(16)  # all zeros: sa_family AF_UNSPEC
        return int(libc.connect(sock.fileno(), unspec, ctypes.c_uint(16))) == 0
    except (OSError, AttributeError):
        return False


class HasIntake(Protocol):
    """A backend lane as the watch sees it."""

    @property
    def name(self) -> str: ...

    @property
    def intake(self) -> DatagramIntake | None: ...


class GapSource(Protocol):
    """The router's chunk-gap counts, and ``settle_gaps()``: count chunks missing for longer
    than the reorder window now."""

    @property
    def gaps_by_carrier(self) -> dict[str, int]: ...

    def settle_gaps(self) -> None: ...


@attrs.define(eq=False)
class IntakeWatch:
    """Polls the intake sockets' kernel drop counters and reports them with chunk gaps."""

    clock: IReactorTime
    lanes: Sequence[HasIntake]
    router: GapSource
    interval: float = 1.0
    #: Kernel drops seen on all intakes since start.
    drops: int = 0
    _gaps: dict[str, int] = attrs.field(factory=dict)
    _loop: Periodic = attrs.field(init=False)

    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._loop = Periodic(self.clock, self.interval, self.poll, "intake watch")

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def unlatch(self) -> None:
        """Release every intake's source latch (a run is being registered)."""
        for lane in self.lanes:
            intake = lane.intake
            if intake is not None:
                intake.unlatch()

    def poll(self) -> dict[str, Any]:
        """Read every intake's kernel drops now; log increases; return :meth:`report`."""
        try:
            self.router.settle_gaps()
            gaps = dict(self.router.gaps_by_carrier)
            new_gaps = {c: n - self._gaps.get(c, 0) for c, n in gaps.items()
                        if n != self._gaps.get(c, 0)}
            self._gaps = gaps
            for lane in self.lanes:
                intake = lane.intake
                if intake is None:
                    continue
                new = intake.poll_drops()
                if new:
                    self.drops += new
                    self.log.warn(
                        "backend {backend}: the kernel dropped {new} datagram(s) on the intake "
                        "socket ({total} in all; SO_RCVBUF {rcvbuf} bytes); chunk gaps since "
                        "the last check: {gaps}",
                        backend=lane.name, new=new, total=intake.counters.kernel_drops,
                        rcvbuf=intake.rcvbuf, gaps=new_gaps or "none",
                    )
        except Exception:
            self.log.failure("intake watch: polling kernel drops failed")
        return self.report()

    def report(self) -> dict[str, Any]:
        """Per backend: datagrams, bytes, foreign, kernel drops, SO_RCVBUF; gaps per carrier."""
        backends = {}
        for lane in self.lanes:
            intake = lane.intake
            if intake is not None:
                c = intake.counters
                backends[lane.name] = {
                    "datagrams": c.datagrams, "bytes": c.bytes, "foreign": c.foreign,
                    "kernel_drops": c.kernel_drops, "rcvbuf": intake.rcvbuf,
                }
        return {"backends": backends, "kernel_drops": self.drops,
                "gaps_by_carrier": dict(self.router.gaps_by_carrier)}

"""Monitor listener: joins a tap's multicast group and decodes what the tap sends.

Design note
-----------
:class:`MonitorListener` owns one multicast socket bound to ``(group, port)`` with
``listenMultiple`` (``SO_REUSEADDR``/``SO_REUSEPORT``), so any number of listeners in one or
many processes can share a group and port; each gets every datagram.  On Linux the socket
also sets ``IP_MULTICAST_ALL`` to 0: otherwise a socket keeps receiving a group some *other*
socket on the host still belongs to, and :meth:`MonitorListener.leave` would change nothing.

The Twisted protocol (:class:`_MonitorProtocol`) only hands bytes to
:meth:`MonitorListener.datagram`, which decodes (:mod:`pybrid.monitor.decode`), counts
(:mod:`pybrid.monitor.stats`), calls ``on_chunk``/``on_state`` and fires waiters.  A malformed
datagram or a callback that raises is counted and logged once per kind, never fatal.
Every wait (``wait_for``, ``wait_for_datagrams``, ``when_run_done``) times out on the
injected reactor and fails with :class:`ListenerStopped` when the listener stops.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer, protocol
from twisted.logger import Logger

from pybrid.monitor.decode import (
    MonitorChunk,
    MonitorRun,
    MonitorStateChange,
    decode_envelope,
    decode_run_record,
    parse_envelope,
)
from pybrid.monitor.options import DEFAULT_INTERFACE
from pybrid.monitor.stats import ListenerStats
from pybrid.wire.monitor_header import (
    FLAG_RUN_RECORD,
    HEADER_SIZE,
    MalformedDatagram,
    decode_header,
)

#: Largest datagram read (datagrams up to 65 507 bytes must not be truncated).
MAX_PACKET = 65_536
#: Receive buffer a listener asks for (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER = 4 << 20
#: Run ids whose final states are remembered for ``when_run_done``.
REMEMBERED_RUNS = 256
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49 if sys.platform == "linux" else None)


class ListenerSetupError(Exception):
    """The listener could not bind its port or join its group."""


class ListenerStopped(Exception):
    """The listener stopped while something was waiting on it."""


class _MonitorProtocol(protocol.DatagramProtocol):
    """Hands every datagram to its listener; nothing else."""

    noisy = False

    def __init__(self, listener: MonitorListener) -> None:
        self.listener = listener

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.listener.datagram(datagram, addr)


@attrs.define(eq=False)
class _Waiter:
    ready: Callable[[], Any]
    deferred: defer.Deferred[Any]


def _check_group(group: str) -> str:
    try:
        address = ipaddress.IPv4Address(group)
    except ValueError:
        raise ValueError(f"monitor group {group!r} is not an IPv4 address") from None
    if not address.is_multicast:
        raise ValueError(f"monitor group {group} is not a multicast address")
    return str(address)


def _check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    return port


@attrs.define(eq=False)
class MonitorListener:
    """Receives one monitor group: decodes, counts gaps and hands chunks and states out.

    ``on_chunk(MonitorChunk)`` is called for every run data (and data end) message,
    ``on_state(MonitorStateChange)`` for every run state change.  ``port`` 0 binds an
    ephemeral port; :meth:`start` fires with the port actually bound.  ``interface`` is the
    address of the interface to join on (None: the kernel's choice).
    """

    reactor: Any
    group: str = attrs.field(converter=_check_group)
    port: int = attrs.field(converter=_check_port)
    interface: str | None = DEFAULT_INTERFACE
    on_chunk: Callable[[MonitorChunk], object] | None = None
    on_state: Callable[[MonitorStateChange], object] | None = None
    #: Called with every run record (a run's start and end: its client id, sample rate …).
    on_run: Callable[[MonitorRun], object] | None = None
    receive_buffer: int = RECEIVE_BUFFER
    stats: ListenerStats = attrs.field(init=False, factory=ListenerStats)
    _log: Logger = attrs.field(init=False, factory=Logger)
    _port: Any = attrs.field(init=False, default=None)
    _joined: bool = attrs.field(init=False, default=False)
    _waiters: list[_Waiter] = attrs.field(init=False, factory=list)
    _finished: OrderedDict[str, dict[tuple[int, str], MonitorStateChange]] = attrs.field(
        init=False, factory=OrderedDict
    )
    _logged: set[str] = attrs.field(init=False, factory=set)
    #: The start records of the last runs, by the client's run id.
    _runs: OrderedDict[str, dict[str, Any]] = attrs.field(init=False, factory=OrderedDict)

    @property
    def joined(self) -> bool:
        return self._joined

    @property
    def listening(self) -> bool:
        return self._port is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> int:
        try:
            port = self.reactor.listenMulticast(
                self.port,
                _MonitorProtocol(self),
                interface=self.group,
                maxPacketSize=MAX_PACKET,
                listenMultiple=True,
            )
        except Exception as e:
            raise ListenerSetupError(f"cannot listen on {self.group}:{self.port}: {e}") from e
        self._port = port
        try:
            granted = self._configure(port.socket)
            self.port = port.getHost().port
            await port.joinGroup(self.group, self.interface or "")
        except Exception as e:
            self._port = None
            await defer.maybeDeferred(port.stopListening)
            raise ListenerSetupError(
                f"cannot join {self.group} on interface {self.interface or 'any'}: {e}"
            ) from e
        self._joined = True
        self._log.info(
            "monitor listener joined {group}:{port} on {interface} (receive buffer {rcvbuf})",
            group=self.group,
            port=self.port,
            interface=self.interface or "any",
            rcvbuf=granted,
        )
        return int(self.port)

    def _configure(self, sock: socket.socket) -> int:
        """Membership per socket, a large receive buffer; returns the buffer granted."""
        if _IP_MULTICAST_ALL is not None:
            try:
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            except OSError:
                pass  # not Linux: membership is per socket already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def start(self) -> defer.Deferred[int]:
        """Bind and join; fires with the bound port or fails with :class:`ListenerSetupError`."""
        if self._port is not None:
            return defer.succeed(self.port)
        return defer.Deferred.fromCoroutine(self._start())

    def leave(self) -> defer.Deferred[None]:
        """Leave the group (the socket stays bound; counters stay readable)."""
        if not self._joined or self._port is None:
            return defer.succeed(None)
        self._joined = False
        return self._port.leaveGroup(self.group, self.interface or "")

    def stop(self) -> defer.Deferred[None]:
        """Leave, close the socket and fail pending waits with :class:`ListenerStopped`."""
        port = self._port
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.deferred.errback(
                ListenerStopped(f"listener on {self.group}:{self.port} stopped")
            )
        if port is None:
            return defer.succeed(None)
        left = self.leave()
        left.addErrback(lambda f: self._log.failure("leaving {group} failed", f, group=self.group))
        self._port = None
        return left.addCallback(lambda _: port.stopListening())

    # -- receiving -------------------------------------------------------------------------

    def datagram(self, data: bytes, sender: Any = None) -> None:
        """Decode, count and dispatch one datagram from ``sender`` (the tap's address)."""
        stats = self.stats
        stats.datagrams += 1
        stats.bytes += len(data)
        try:
            self._dispatch(data, sender)
        except MalformedDatagram as e:
            stats.bad(e.reason)
            self._first(e.reason, "monitor listener skipping malformed datagrams: {error}", e)
        if self._waiters:
            self._check_waiters()

    def _dispatch(self, data: bytes, sender: Any) -> None:
        stats = self.stats
        header = decode_header(data)
        stats.sequence(sender, header.sequence)
        if header.flags & FLAG_RUN_RECORD:
            self._run_record(decode_run_record(header, data[HEADER_SIZE:]))
            return
        event = decode_envelope(header, parse_envelope(data[HEADER_SIZE:]))
        if isinstance(event, MonitorChunk):
            carrier = stats.carrier(event.lane, event.carrier_path)
            count = event.sample_count
            if event.end:  # final values, not samples of the run

                stats.end_chunks += 1
                carrier.end(event.run_id, count)
            else:
                stats.chunks += 1
                stats.samples += count
                carrier.data(event.run_id, event.chunk, count)
            self._call(self.on_chunk, event)
        elif isinstance(event, MonitorStateChange):
            stats.state(event.lane, event.carrier_path, event.new_name)
            if event.finished:
                self._remember(event)
            self._call(self.on_state, event)
        else:
            stats.other += 1

    def _run_record(self, run: MonitorRun) -> None:
        self.stats.run_records += 1
        if run.event == "run-start":
            self._runs[run.run_id] = run.record
            while len(self._runs) > REMEMBERED_RUNS:
                self._runs.popitem(last=False)
        self._call(self.on_run, run)

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        """The start record of run ``run_id`` (the client's id), if this listener saw it."""
        return self._runs.get(run_id)

    def _remember(self, change: MonitorStateChange) -> None:
        runs = self._finished
        carriers = runs.get(change.run_id)
        if carriers is None:
            carriers = runs[change.run_id] = {}
            while len(runs) > REMEMBERED_RUNS:
                runs.popitem(last=False)
        carriers[change.carrier] = change

    def _call(self, callback: Callable[[Any], object] | None, event: object) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception as e:
            self.stats.callback_errors += 1
            self._first("callback", "monitor listener callback raised: {error}", e)

    def _first(self, kind: str, message: str, error: Exception) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            self._log.warn(message + " (later ones are only counted)", error=str(error),
                           group=self.group, port=self.port)

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], Any], timeout: float) -> defer.Deferred[Any]:
        value = ready()
        if value is not None:
            return defer.succeed(value)
        waiter: _Waiter

        def cancel(_: defer.Deferred[Any]) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        waiter = _Waiter(ready, defer.Deferred(cancel))
        self._waiters.append(waiter)
        return waiter.deferred.addTimeout(timeout, self.reactor)

    def _check_waiters(self) -> None:
        for waiter in list(self._waiters):
            value = waiter.ready()
            if value is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                waiter.deferred.callback(value)

    def wait_for(self, n_chunks: int, timeout: float = 10.0) -> defer.Deferred[int]:
        """Fires with the data-chunk count once ``n_chunks`` run data messages have arrived."""
        return self._wait(lambda: self.stats.chunks if self.stats.chunks >= n_chunks else None,
                          timeout)

    def wait_for_datagrams(self, n: int, timeout: float = 10.0) -> defer.Deferred[int]:
        """Fires with the datagram count once ``n`` datagrams (of any kind) have arrived."""
        return self._wait(lambda: self.stats.datagrams if self.stats.datagrams >= n else None,
                          timeout)

    def when_run_done(
        self, run_id: str, carriers: int = 1, timeout: float = 10.0
    ) -> defer.Deferred[list[MonitorStateChange]]:
        """Fires with the final state changes once ``carriers`` distinct carriers of run
        ``run_id`` have reached DONE or ERROR."""

        def ready() -> list[MonitorStateChange] | None:
            finished = self._finished.get(run_id)
            if finished is None or len(finished) < carriers:
                return None
            return list(finished.values())

        return self._wait(ready, timeout)

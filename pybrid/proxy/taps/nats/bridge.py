"""The NATS bridge: the proxy's runs → a JetStream stream, never blocking anyone.

Design note
-----------
One asyncio loop, no threads.  :mod:`.intake` reads the proxy's link (``--nats``: blocks of
datagrams as they came, :meth:`Bridge.take_link`) or a ``--shm-tap`` ring (a frame per chunk,
:meth:`Bridge.take`); :class:`~pybrid.proxy.taps.nats.runs.RunTracker` turns each into
messages, appended to a bounded queue: when ``queue`` chunk records wait, a new chunk
message is dropped and counted (start, layout, state and end messages are never dropped).
:meth:`Bridge._publish` sends them with JetStream's asynchronous publish: at most ``window``
acknowledgements pending; chunk messages waiting together go out as one message of up to
:data:`~.runs.BATCH` records (one acknowledgement each, not per chunk).  A message whose
acknowledgement does not come within ``ack_timeout``, or comes as an error (server gone, a
stream without a leader), is published again after ``retry_delay`` (its message id makes
JetStream store it once) for up to ``give_up`` seconds; then its chunks count as failed.  A
run's ``end`` message waits until its chunks settled, so it says exactly which chunk numbers
the stream lacks.  The proxy is never slowed: it never waits for us (blocks we do not take
are counted there, and the run's next message tells us how many: ``tap_gaps``).

Connecting: the first connect is retried with backoff (``backoff`` doubling up to
``backoff_max``); afterwards nats-py reconnects on its own (forever).  The stream is created
if missing (``max_bytes``, ``max_age``, ``replicas``, file storage, discard old).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from pybrid.proxy.taps.nats.runs import BATCH, BATCH_BYTES, Outgoing, RunTracker, merge
from pybrid.wire import nats_format as N

_log = Logger()


@attrs.frozen
class BridgeOptions:
    servers: tuple[str, ...]
    shm: str | None  # the proxy's --shm-tap NAME to read, or None: ``link_fd``
    proxy: str
    #: The proxy's link (``--nats``: :mod:`pybrid.proxy.taps.nats.feed`), a socket's fd.
    link_fd: int | None = None
    shm_size: int = 64 << 20
    prefix: str = N.DEFAULT_PREFIX
    stream: str = N.DEFAULT_STREAM
    max_bytes: int = 1 << 30
    max_age: float = 7 * 86400.0
    replicas: int = 1
    queue: int = 10_000
    window: int = 1024
    ack_timeout: float = 5.0
    give_up: float = 30.0  # seconds a chunk is published again before it counts as failed
    retry_delay: float = 0.25
    backoff: float = 0.5
    backoff_max: float = 10.0
    status_interval: float = 1.0
    token: str | None = None
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    nkey_seed: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


@attrs.define
class ExportCounters:
    """The bridge's cumulative counts: its status lines carry them; the proxy adds them up over
    restarts and shows them (:class:`~pybrid.proxy.taps.nats.child.NatsExportStatus`)."""

    published: int = 0
    stored: int = 0  # chunks (and other messages) acknowledged by JetStream
    dropped: int = 0  # chunks dropped from the full export queue
    failed: int = 0  # chunks not acknowledged within ``give_up`` seconds
    tap_gaps: int = 0  # chunks the shared-memory tap lost before the bridge
    runs: int = 0
    runs_ended: int = 0
    incomplete: int = 0


@attrs.define
class BridgeStats(ExportCounters):
    connected: bool = False
    shm_ready: bool = False  # the ZeroBuffer exists: the proxy's tap can attach
    fed: bool = False  # the intake is ready: the ring exists, or the link is open
    connects: int = 0
    disconnects: int = 0
    frames: int = 0
    queued: int = 0
    retried: int = 0
    last_error: str = ""

    def status(self, queue: int, pending: int) -> dict[str, Any]:
        return dict(attrs.asdict(self), queue=queue, pending=pending)


def connect_options(o: BridgeOptions) -> dict[str, Any]:
    """nats-py ``connect`` keywords for the credentials and TLS options."""
    kw: dict[str, Any] = {}
    if o.token:
        kw["token"] = o.token
    if o.user:
        kw["user"], kw["password"] = o.user, o.password or ""
    if o.creds:
        kw["user_credentials"] = o.creds
    if o.nkey_seed:
        kw["nkeys_seed"] = o.nkey_seed
    if o.tls_ca or o.tls_cert:
        import ssl

        ctx = ssl.create_default_context(cafile=o.tls_ca)
        if o.tls_cert:
            ctx.load_cert_chain(o.tls_cert, o.tls_key)
        kw["tls"] = ctx
    return kw


@attrs.define(eq=False)
class Bridge:
    """See the module note.  ``emit(status)`` is called every ``status_interval`` seconds."""

    options: BridgeOptions
    emit: Callable[[dict[str, Any]], None]
    stats: BridgeStats = attrs.Factory(BridgeStats)
    tracker: RunTracker = attrs.field(init=False)
    _queue: collections.deque[Outgoing | int] = attrs.field(init=False,
                                                           factory=collections.deque)
    _chunks_queued: int = attrs.field(init=False, default=0)
    _wake: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)
    _pending: dict[asyncio.Future[Any], tuple[Outgoing, float]] = attrs.field(
        init=False, factory=dict)
    _first: dict[int, float] = attrs.field(init=False, factory=dict)
    _retrying: int = attrs.field(init=False, default=0)
    _nc: Any = attrs.field(init=False, default=None)
    _js: Any = attrs.field(init=False, default=None)
    _stop: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)
    #: Why the bridge stopped for good (the command's exit status 1), or "".
    fatal: str = attrs.field(init=False, default="")

    def __attrs_post_init__(self) -> None:
        self.tracker = RunTracker(self.options.prefix, self.options.proxy)

    # -- intake -----------------------------------------------------------------------------

    def take(self, frame: memoryview | bytes) -> None:
        """One tap frame: queue its message (a chunk beyond ``queue`` is dropped, counted)."""
        self.stats.frames += 1
        out = self.tracker.frame(frame)
        if out is not None:
            self._enqueue(out)

    def take_link(self, kind: int, head: dict[str, Any], data: bytearray) -> None:
        """One message of the proxy's link: queue its messages (likewise)."""
        self.stats.frames += 1
        for out in self.tracker.link(kind, head, data):
            self._enqueue(out)

    def _enqueue(self, out: Outgoing) -> None:
        if out.kind == "chunk":
            if self._chunks_queued >= self.options.queue:
                self.stats.dropped += out.chunks
                self.tracker.dropped(out)
                return
            self._chunks_queued += out.chunks
        elif out.kind == "start":
            self.stats.runs += 1
        self._queue.append(out)
        self.stats.queued += 1
        if out.kind == "state" and self.tracker.over(out.run):
            self._queue.append(out.run)  # the end marker: publish "end" once chunks settled
        self._wake.set()

    async def _read(self) -> None:
        from pybrid.proxy.taps.nats.intake import read_link, read_shm

        if self.options.link_fd is not None:
            await read_link(self, self.options.link_fd)
        else:
            await read_shm(self)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def settled(self) -> bool:
        """Nothing waits to be published or acknowledged."""
        return not (self._queue or self._pending or self._retrying)

    # -- publishing -------------------------------------------------------------------------

    async def _connect(self) -> None:
        import nats

        o = self.options
        delay = o.backoff

        async def disconnected() -> None:
            self.stats.connected = False
            self.stats.disconnects += 1

        async def reconnected() -> None:
            self.stats.connected = True
            self.stats.connects += 1

        async def error(e: Exception) -> None:
            self.stats.last_error = f"{type(e).__name__}: {e}"

        while not self._stop.is_set():
            try:
                self._nc = await nats.connect(
                    list(o.servers), name=f"pybrid-nats-bridge {o.proxy}",
                    max_reconnect_attempts=-1, reconnect_time_wait=o.backoff,
                    connect_timeout=2, allow_reconnect=True,
                    disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                    **connect_options(o))
                self._js = self._nc.jetstream(publish_async_max_pending=o.window)
                await self._ensure_stream()
                self.stats.connected = True
                self.stats.connects += 1
                return
            except Exception as e:
                self.stats.last_error = f"{type(e).__name__}: {e}"
                _log.warn("nats bridge: cannot connect to {servers}: {error}; retrying in "
                          "{delay} s", servers=",".join(o.servers), error=str(e), delay=delay)
                if self._nc is not None:
                    await self._nc.close()
                    self._nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, o.backoff_max)

    async def _ensure_stream(self) -> None:
        from nats.js.api import DiscardPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        o = self.options
        config = StreamConfig(name=o.stream, subjects=N.stream_subjects(o.prefix),
                              max_bytes=o.max_bytes, max_age=o.max_age,
                              num_replicas=o.replicas, storage=StorageType.FILE,
                              discard=DiscardPolicy.OLD, duplicate_window=120.0)
        try:
            await self._js.stream_info(o.stream)
        except NotFoundError:
            await self._js.add_stream(config)

    async def _publish(self) -> None:
        while not self._stop.is_set():
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._js is None or not self.stats.connected:
                await asyncio.sleep(0.05)
                continue
            item = self._queue[0]
            if isinstance(item, int):
                if self._pending or self._retrying:  # the run's chunks first
                    await asyncio.sleep(0.005)
                    continue
                self._queue.popleft()
                end = self.tracker.end(item)
                self.stats.runs_ended += 1
                if N.decode_json(end.payload)["condition"] != "complete":
                    self.stats.incomplete += 1
                self._queue.appendleft(end)
                continue
            count, chunks = 1, item.chunks
            if item.kind == "chunk" and id(item) not in self._first:
                item, count, chunks = self._batch()
            try:
                # no wait_stall: asyncio.wait_for would make a task (and a socket write) per
                # message; a full window waits here until acknowledgements (or the sweep) free it
                future = await self._js.publish_async(
                    item.subject, item.payload,
                    headers={"Nats-Msg-Id": item.msg_id} if item.msg_id else None)
            except Exception as e:  # disconnected: try again
                self.stats.last_error = f"{type(e).__name__}: {e}"
                self._forget_unsent()
                await asyncio.sleep(0.01)
                continue
            for _ in range(count):
                self._queue.popleft()
            if item.kind == "chunk":
                self._chunks_queued -= chunks
            self.stats.published += 1
            self._pending[future] = (item, asyncio.get_running_loop().time())
            future.add_done_callback(self._acked)

    def _batch(self) -> tuple[Outgoing, int, int]:
        """The chunk messages at the head of the queue as one of up to ``BATCH`` records
        (never a retried one: its message id must keep naming the same bytes); with how
        many messages and records."""
        first = self._queue[0]
        assert isinstance(first, Outgoing)
        items, size, chunks = [first], len(first.payload), first.chunks
        for item in itertools.islice(self._queue, 1, BATCH):
            if (not isinstance(item, Outgoing) or item.kind != "chunk" or item.run != first.run
                    or size + len(item.payload) > BATCH_BYTES or id(item) in self._first
                    or chunks + item.chunks > BATCH):
                break
            items.append(item)
            size += len(item.payload)
            chunks += item.chunks
        return merge(items), len(items), chunks

    def _forget_unsent(self) -> None:
        """nats-py registers an async publish's future before it sends; one whose send raised
        is never resolved and holds a window slot: cancel those (ours are in ``_pending``)."""
        futures = getattr(self._js, "_publish_async_futures", {})
        for future in list(futures.values()):
            if future not in self._pending and not future.done():
                future.cancel()

    def _acked(self, future: asyncio.Future[Any]) -> None:
        item, _at = self._pending.pop(future, (None, 0.0))
        if item is None:
            return
        if not future.cancelled() and future.exception() is None:
            self.stats.stored += item.chunks
            self._first.pop(id(item), None)
            self.tracker.stored(item)
            return
        loop = asyncio.get_running_loop()
        first = self._first.setdefault(id(item), _at)
        if item.kind == "chunk" and loop.time() - first >= self.options.give_up:
            self._first.pop(id(item), None)
            self.stats.failed += item.chunks
            return
        # published again after a pause (the stream's duplicate window stores a chunk once)
        self.stats.retried += 1
        self._retrying += 1
        loop.call_later(self.options.retry_delay, self._again, item)

    def _again(self, item: Outgoing) -> None:
        self._retrying -= 1
        if item.kind == "chunk":
            self._chunks_queued += item.chunks
        self._queue.appendleft(item)
        self._wake.set()

    async def _sweep(self) -> None:
        """Time out acknowledgements that will never come; emit the status."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            now = loop.time()
            for future, (_item, at) in list(self._pending.items()):
                if now - at > self.options.ack_timeout:
                    future.cancel()
            self.emit_status()
            await asyncio.sleep(self.options.status_interval)

    def emit_status(self) -> None:
        self.stats.tap_gaps = self.tracker.tap_gaps
        self.emit(self.stats.status(len(self._queue), len(self._pending)))

    async def run(self) -> None:
        """Read, connect and publish until :meth:`stop`."""
        tasks = [asyncio.ensure_future(c) for c in (self._read(), self._sweep(),
                                                    self._run_publisher())]
        await self._stop.wait()
        pending = set(tasks)
        for _ in range(50):  # nats-py's connect may swallow a cancel: cancel again
            for t in pending:
                t.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.1)
            if not pending:
                break
        if self._nc is not None:
            await self._nc.close()

    async def _run_publisher(self) -> None:
        await self._connect()
        await self._publish()

    def stop(self) -> None:
        self._stop.set()

    def fail(self, why: str) -> None:
        """Stop for good: the command exits with status 1 and ``why``."""
        self.fatal = self.stats.last_error = why
        self.stop()

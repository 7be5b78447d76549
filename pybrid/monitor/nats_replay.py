"""Runs from a NATS JetStream stream (:mod:`pybrid.wire.nats_format`): replay one as the client's
:class:`~pybrid.client.results.RunResult`, record it, or follow live runs.

Design note
-----------
:class:`RunAssembler` (no nats import) takes a run's messages in stream order and places each
chunk by its number (:class:`~pybrid.recording.placement.ChunkPlacer`) into a sink — a
:class:`~pybrid.recording.sinks.MemorySink` for :meth:`RunAssembler.result`, or any recorder —
exactly as the client does (``raw × gain + offset``, float32 storage for float32 and 16-bit
samples), so a replayed run equals the client's result, NaN rows at the same missing chunks.
The ``start`` message carries the run's configuration where the start command said it: the
result's ``sample_rate`` and ``expected_samples`` are the client's, so chunks lost after the
last one received are missing (NaN rows) too; without it they cannot be told (the ``end``
message's ``missing`` lists what the stream lacks).

:func:`replay` reads one run with an ordered push consumer (``deliver all``, filter
``<prefix>.*.<run>.>``) until its ``end`` message, so a late joiner gets the whole run and a
live one is followed to its end; :func:`last_run_id` finds the newest ``start``.
:func:`fetch_run` is the blocking form (its own asyncio loop) for scripts and notebooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import numpy as np

from pybrid.client.results import CarrierRun, RunResult, StateChange
from pybrid.recording.meta import CarrierSummary, RunMeta, storage_dtype
from pybrid.recording.placement import ChunkPlacer
from pybrid.recording.sinks import MemorySink
from pybrid.wire import nats_format as N
from pybrid.wire.paths import mac_of


class RunNotFound(LookupError):
    """The stream holds no such run (or no run at all)."""


@attrs.define(eq=False)
class _Carrier:
    mac: str
    dtype: np.dtype
    columns: int
    probes: tuple[int, ...]
    placer: ChunkPlacer
    received: int = 0
    final: np.ndarray | None = None


@attrs.define(eq=False)
class RunAssembler:
    """One run's messages (in stream order) → a sink and a :class:`RunResult`."""

    run_id: str
    sink: Any = attrs.Factory(MemorySink)
    start_time: float = 0.0
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    layouts: dict[int, dict[str, Any]] = attrs.Factory(dict)
    carriers: dict[str, _Carrier] = attrs.Factory(dict)
    states: list[StateChange] = attrs.Factory(list)
    malformed: int = 0
    _begun: bool = False

    def add(self, kind: str, data: bytes) -> bool:
        """One message; True once the run's ``end`` arrived."""
        if kind == "chunk":
            self._chunk(data)
        elif kind == "start":
            self.start = N.decode_json(data)
            self._begin()
        elif kind == "layout":
            body = N.decode_json(data)
            self.layouts[int(body.get("carrier", 0))] = body
        elif kind == "state":
            body = N.decode_json(data)
            mac = mac_of(body.get("path", ""))
            self.states.append(StateChange(0.0, mac or None, "", body.get("state", ""),
                                           body.get("reason", "")))
        elif kind == "end":
            self.end = N.decode_json(data)
            return True
        return False

    def _begin(self) -> None:
        if not self._begun:
            self._begun = True
            start = self.start or {}
            paths = tuple(start.get("carriers", ()))
            extra: dict[str, Any] = {"source": "pybrid-nats"}
            extra.update({k: start[k] for k in ("op_time_ns", "ic_time_ns", "proxy_run_id")
                          if k in start})
            self.sink.begin(RunMeta(
                run_id=self.run_id, start_time=self.start_time,
                sample_rate=int(start.get("sample_rate", 0)),
                channels=int(start.get("channels", 0)),
                carriers=tuple(mac_of(p) for p in paths),
                expected_samples=self.expected_samples, extra=extra))

    @property
    def expected_samples(self) -> int:
        """Samples per carrier the run's start command asked for (0: not known)."""
        return int((self.start or {}).get("expected_samples", 0))

    def _chunk(self, data: bytes) -> None:
        self._begin()
        try:
            records = list(N.iter_chunks(data))
        except N.NatsFormatError:
            self.malformed += 1
            return
        for flags, carrier, number, _n, channels, gain, offset, raw, _end in records:
            self._record(flags, carrier, number, channels, gain, offset, raw)

    def _record(self, flags: int, carrier: int, number: int, channels: int, gain: float,
                offset: float, raw: np.ndarray) -> None:
        layout = self.layouts.get(carrier, {})
        mac = mac_of(layout.get("path", "")) or f"carrier-{carrier}"
        if flags & N.FLAG_PER_CHANNEL and layout:
            g = np.asarray(layout["gains"], dtype=float)
            o = np.asarray(layout["offsets"], dtype=float)
        else:
            g, o = np.full(channels, gain), np.full(channels, offset)
        values = raw * g + o
        c = self.carriers.get(mac)
        if flags & N.FLAG_END_MESSAGE:
            if values.shape[0]:
                c_final = np.array(values[-1], dtype=np.float64)
                if c is not None:
                    c.final = c_final
                self.sink.final(mac, c_final)
            return
        if c is None:
            dtype = storage_dtype(raw.dtype)
            c = self.carriers[mac] = _Carrier(
                mac, dtype, channels, tuple(int(p) for p in layout.get("probes", ())),
                ChunkPlacer(partial(self._write, mac, dtype)))
        if channels != c.columns:
            self.malformed += 1
            return
        if c.placer.add(number, values):
            c.received += values.shape[0]

    def _write(self, mac: str, dtype: np.dtype, start: int, values: np.ndarray) -> None:
        self.sink.write(mac, start, values, dtype)

    def summaries(self) -> dict[str, CarrierSummary]:
        return {mac: CarrierSummary(probes=c.probes, chunks=c.placer.chunks,
                                    missing_chunks=tuple(int(x) for x in
                                                     c.placer.missing(self.expected_samples)),
                                    duplicate_chunks=c.placer.duplicates, rows=c.placer.rows,
                                    chunk_size=c.placer.size)
                for mac, c in self.carriers.items()}

    def finish(self) -> dict[str, CarrierSummary]:
        """Close the sink (a recorder writes its file); the summaries."""
        self._begin()
        summaries = self.summaries()
        self.sink.finish(summaries)
        return summaries

    @property
    def condition(self) -> str:
        return str(self.end.get("condition", "")) if self.end else "unfinished"

    def result(self) -> RunResult:
        """The run as the client's :class:`RunResult` (the sink must be a MemorySink)."""
        summaries = self.finish()
        out: dict[str, CarrierRun] = {}
        for mac, c in self.carriers.items():
            s = summaries[mac]
            values = self.sink.samples(mac)
            if values is None:
                values = np.full((0, c.columns), np.nan, dtype=c.dtype)
            out[mac] = CarrierRun(
                carrier=mac, samples=values, final=c.final, probes=c.probes,
                states=tuple(x.new for x in self.states if x.carrier in (None, mac)),
                chunks=c.placer.chunks,
                chunk_gaps=c.placer.gaps(), missing_chunks=s.missing_chunks,
                duplicate_chunks=s.duplicate_chunks, expected_samples=self.expected_samples,
                chunk_size=s.chunk_size, received_samples=c.received)
        meta = getattr(self.sink, "meta", None)
        if meta is not None:  # what the end message says the stream lacks
            end = self.end or {}
            meta = attrs.evolve(meta, extra=dict(
                meta.extra, condition=self.condition, reason=str(end.get("reason", "")),
                export_dropped=int(end.get("export_dropped", 0)),
                tap_gaps=int(end.get("tap_gaps", 0))))
        return RunResult(run_id=self.run_id, carriers=out, states=tuple(self.states),
                         overload=None, data_lane="nats", elapsed=0.0, malformed=self.malformed,
                         meta=meta)


async def subscribe(js: Any, subject: str, policy: Any, patience: float = 30.0) -> Any:
    """An ordered consumer on ``subject``; JetStream's API does not answer while a cluster
    elects a leader (a node just died), so timeouts are retried for ``patience`` seconds."""
    import nats.errors

    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await js.subscribe(subject, ordered_consumer=True, deliver_policy=policy)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def last_run_id(js: Any, prefix: str = N.DEFAULT_PREFIX, timeout: float = 5.0) -> str:
    """The run id of the newest ``start`` in the stream; :class:`RunNotFound` if none."""
    from nats.js.api import DeliverPolicy

    sub = await subscribe(js, N.starts_filter(prefix), DeliverPolicy.LAST)
    try:
        msg = await sub.next_msg(timeout=timeout)
    except Exception:
        raise RunNotFound(f"no run under {prefix!r} in the stream") from None
    finally:
        await sub.unsubscribe()
    return N.parse_subject(prefix, msg.subject)[1]


async def replay(js: Any, run_id: str, *, prefix: str = N.DEFAULT_PREFIX,
                 sink: Any = None, idle_timeout: float = 10.0,
                 on_message: Callable[[str, bytes], None] | None = None) -> RunAssembler:
    """Read ``run_id`` from its first message to its ``end`` (following a live run); stops
    early when nothing arrives for ``idle_timeout`` s (then ``condition`` is
    ``unfinished``).  :class:`RunNotFound` when not one message of it arrives."""
    from nats.js.api import DeliverPolicy

    assembler = RunAssembler(run_id, sink if sink is not None else MemorySink())
    sub = await subscribe(js, N.run_filter(prefix, run_id), DeliverPolicy.ALL)
    seen = 0
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                break
            seen += 1
            kind = N.parse_subject(prefix, msg.subject)[2]
            if on_message is not None:
                on_message(kind, msg.data)
            if assembler.add(kind, msg.data):
                break
    finally:
        await sub.unsubscribe()
    if not seen:
        raise RunNotFound(f"run {run_id!r} is not in the stream under {prefix!r}")
    return assembler


def fetch_run(servers: str | list[str], run_id: str | None = None, *,
              prefix: str = N.DEFAULT_PREFIX, idle_timeout: float = 10.0,
              **connect: Any) -> RunResult:
    """Blocking: the run ``run_id`` (None: the newest) from the stream, as the client's
    :class:`RunResult`; ``connect`` goes to ``nats.connect`` (token, user_credentials, tls …)."""
    import nats

    async def go() -> RunResult:
        nc = await nats.connect(servers, **connect)
        try:
            js = nc.jetstream()
            rid = run_id if run_id is not None else await last_run_id(js, prefix)
            assembler = await replay(js, rid, prefix=prefix, idle_timeout=idle_timeout)
            return assembler.result()
        finally:
            await nc.close()

    return asyncio.run(go())

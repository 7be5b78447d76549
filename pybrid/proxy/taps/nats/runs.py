"""The proxy's run events to NATS messages, and what each run's stream lacks (no nats import).

Design note
-----------
:class:`RunTracker` turns each message of the proxy's link (:mod:`.feed`: :meth:`RunTracker.link`)
or each frame of a ``--shm-tap`` ring (:mod:`pybrid.wire.shm_frames`: :meth:`RunTracker.frame`)
into :class:`Outgoing` messages of :mod:`pybrid.wire.nats_format` — a link's block of
datagrams into chunk messages of up to :data:`BATCH` records, cut with numpy
(:func:`block_records`) —, and keeps per run and carrier the highest chunk number seen and
the chunk numbers the stream *has* (acknowledged by JetStream: :meth:`stored`).  A run is
over when every carrier named in its start reached DONE or ERROR (or a run-wide end came);
its ``end`` message then says what the stream lacks: every chunk number up to the highest
seen — or up to the count the proxy saw (its carrier end's ``chunks``), or the run's
expected count when the start command's OP time and sample rate give it, whichever is more
— that was not stored: lost by the device, not sent by the proxy (the bridge behind, the
proxy behind its intake; a full ring), dropped from the export queue, or not acknowledged.
The start's run configuration goes into the ``start`` message (:data:`CONFIG_KEYS`); other
states (IC, OP …) become ``state`` messages like the final states.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import numpy as np

from pybrid.proxy.taps.nats import feed as L
from pybrid.wire import nats_format as N
from pybrid.wire import shm_frames as F

#: Chunk records per message at most, and their bytes (NATS' default max_payload is 1 MiB).
BATCH = 64
BATCH_BYTES = 256 << 10
#: Runs remembered after their end (a late ack finds nothing and is ignored).
RUNS_KEPT = 16
_ITEMSIZE = {code: np.dtype(name).itemsize for code, name in F.DTYPE_CODES.items()}


_RECORD = np.dtype([("magic", "S4"), ("flags", "u1"), ("dtype", "u1"), ("carrier", "<u2"),
                    ("chunk", "<u4"), ("samples", "<u4"), ("channels", "<u2"), ("_", "V6"),
                    ("gain", "<f8"), ("offset", "<f8")])
assert _RECORD.itemsize == N.CHUNK_HEADER_SIZE


def block_records(data: Any, cut: tuple[int, int, int], first: int, carrier: int,
                  samples: int, channels: int, dtype: int, gain: float, offset: float,
                  flags: int) -> np.ndarray:
    """The chunk records (:data:`~pybrid.wire.nats_format.CHUNK_HEADER` and the samples) of
    consecutive chunks from ``first`` whose datagrams lie end to end in ``data``, ``cut``
    saying where the samples start and end in each and its length: a row per chunk."""
    at, end, length = (int(x) for x in cut)
    raw = np.frombuffer(data, np.uint8).reshape(-1, length)
    count = len(raw)
    head = np.zeros(count, _RECORD)
    head["magic"], head["flags"], head["dtype"], head["carrier"] = N.MAGIC, flags, dtype, carrier
    head["chunk"] = np.arange(first, first + count, dtype="<u4")
    head["samples"], head["channels"], head["gain"], head["offset"] = (samples, channels,
                                                                        gain, offset)
    rows = np.empty((count, N.CHUNK_HEADER_SIZE + end - at), np.uint8)
    rows[:, :N.CHUNK_HEADER_SIZE] = head.view(np.uint8).reshape(count, -1)
    rows[:, N.CHUNK_HEADER_SIZE:] = raw[:, at:end]
    return rows


@attrs.frozen
class Outgoing:
    kind: str
    subject: str
    payload: bytes
    run: int  # the tap's run number
    carrier: int = 0
    #: ``(carrier, chunk number)`` of the numbered chunk records in ``payload``.
    members: tuple[tuple[int, int], ...] = ()
    seq: int = 0  # the tap sequence of the (first) frame
    #: The de-duplication id of a chunk message from the link (its first chunk's number).
    ident: str = ""

    @property
    def msg_id(self) -> str:
        """JetStream de-duplication id (a retried publish is stored once)."""
        if self.kind != "chunk":
            return ""
        return self.ident or f"{self.subject}:{self.seq}"

    @property
    def chunks(self) -> int:
        """Chunk records in the message (a final-values record counts too)."""
        return max(1, len(self.members))


def merge(items: list[Outgoing]) -> Outgoing:
    """Chunk messages of one run as one message of back-to-back chunk records."""
    if len(items) == 1:
        return items[0]
    first = items[0]
    return Outgoing("chunk", first.subject, b"".join(i.payload for i in items), first.run,
                    first.carrier, tuple(m for i in items for m in i.members), first.seq,
                    first.ident)


#: What of a RUN_START record the ``start`` message carries (where the start command said it).
CONFIG_KEYS = ("proxy_run_id", "sample_rate", "channels", "op_time_ns", "ic_time_ns",
               "sample_op", "sample_op_end")


def expected_samples(config: dict[str, Any]) -> int:
    """Samples per channel and carrier the start command asks for (0: not known), as
    :func:`pybrid.client.results.expected_samples` counts them."""
    op, rate = int(config.get("op_time_ns", 0) or 0), int(config.get("sample_rate", 0) or 0)
    if op <= 0 or rate <= 0 or not config.get("sample_op", True) or \
            config.get("channels", 1) == 0:
        return 0
    return max(1, int(op * rate / 1e9))


@attrs.define(eq=False)
class _Carrier:
    path: str
    top: int = -1
    size: int = 0  # samples of its full chunks (the largest seen)
    stored: set[int] = attrs.Factory(set)
    state: str = ""
    reason: str = ""
    proxy_chunks: int = 0  # chunks the proxy saw (its CARRIER_END's ``chunks``), 0: not said


@attrs.define(eq=False)
class _Run:
    number: int
    run_id: str
    paths: tuple[str, ...]
    expected: int = 0  # samples per carrier, 0: not known
    carriers: dict[int, _Carrier] = attrs.Factory(dict)
    ended: dict[str, str] = attrs.Factory(dict)
    reasons: dict[str, str] = attrs.Factory(dict)
    chunk_subject: str = ""
    wide_end: bool = False
    export_dropped: int = 0
    tap_gaps: int = 0
    finished: bool = False

    @property
    def over(self) -> bool:
        return self.wide_end or (bool(self.paths) and all(p in self.ended for p in self.paths))


@attrs.define(eq=False)
class RunTracker:
    """See the module note.  ``proxy`` names the exporting proxy in every subject."""

    prefix: str
    proxy: str
    runs: dict[int, _Run] = attrs.Factory(dict)
    last_seq: int = 0
    tap_gaps: int = 0
    unknown: int = 0  # frames of runs whose RUN_START this bridge never saw

    def frame(self, data: memoryview | bytes) -> Outgoing | None:
        """The message for one tap frame (None for frames that carry nothing to export)."""
        (kind, flags, carrier, run, seq, chunk, samples, channels, dtype, gain,
         offset) = F.parse_header(data)
        if self.last_seq and seq > self.last_seq + 1:
            self._gap(run, seq - self.last_seq - 1)
        self.last_seq = max(self.last_seq, seq)
        if kind == F.RUN_START:
            return self._start(run, F.json_body(data))
        r = self.runs.get(run)
        if r is None:
            self.unknown += 1
            return None
        if kind == F.CHUNK:
            n = samples * channels * _ITEMSIZE.get(dtype, 0)
            head = N.chunk_header(carrier, chunk, samples, channels, dtype, gain, offset,
                                  flags & (F.FLAG_END_MESSAGE | F.FLAG_PER_CHANNEL))
            payload = head + bytes(data[F.HEADER_SIZE:F.HEADER_SIZE + n])
            return self._chunks(r, carrier, chunk, 1, samples, flags, payload, seq=seq)
        return self._event(r, kind, carrier, F.json_body(data))

    def link(self, kind: int, head: dict[str, Any], data: bytearray) -> list[Outgoing]:
        """The messages for one message of the proxy's link (:mod:`.feed`)."""
        run = int(head.get("run", 0))
        if head.get("skipped"):
            self._gap(run, int(head["skipped"]))
        if kind == L.START:
            return [self._start(run, head)]
        r = self.runs.get(run)
        if r is None:
            self.unknown += 1
            return []
        carrier = int(head.get("carrier", F.RUN_WIDE))
        if kind in (L.BLOCK, L.CHUNK):
            return self._records(r, carrier, head, data)
        frame_kind = {L.LAYOUT: F.LAYOUT, L.STATE: F.STATE, L.CARRIER_END: F.CARRIER_END}
        out = self._event(r, frame_kind.get(kind, -1), carrier, head)
        return [] if out is None else [out]

    def _gap(self, run: int, chunks: int) -> None:
        """``chunks`` the tap or the link lost before this bridge."""
        self.tap_gaps += chunks
        current = self.runs.get(run)
        if current is not None:
            current.tap_gaps += chunks

    def _records(self, r: _Run, carrier: int, head: dict[str, Any],
                 data: bytearray) -> list[Outgoing]:
        """A link's BLOCK (datagrams as they came) or CHUNK (one chunk's samples) as chunk
        messages of at most ``BATCH`` records."""
        first, samples = int(head["first"]), int(head["samples"])
        channels, dtype, flags = int(head["channels"]), int(head["dtype"]), int(head["flags"])
        flags &= F.FLAG_END_MESSAGE | F.FLAG_PER_CHANNEL
        args = (carrier, samples, channels, dtype, float(head["gain"]),
                float(head["offset"]), flags)
        if "cut" not in head:  # one chunk's samples
            payload = N.chunk_header(carrier, first, samples, channels, dtype,
                                     float(head["gain"]), float(head["offset"]), flags)
            return [self._chunks(r, carrier, first, 1, samples, flags, payload + bytes(data))]
        rows = block_records(data, tuple(head["cut"]), first, *args)
        per = max(1, min(BATCH, BATCH_BYTES // max(1, rows.shape[1])))
        return [self._chunks(r, carrier, first + at, min(per, len(rows) - at), samples, flags,
                             rows[at:at + per].tobytes())
                for at in range(0, len(rows), per)]

    def _chunks(self, r: _Run, carrier: int, first: int, count: int, samples: int,
                flags: int, payload: bytes, seq: int = 0) -> Outgoing:
        end = bool(flags & F.FLAG_END_MESSAGE)
        c = r.carriers.get(carrier)
        if c is None:
            c = r.carriers[carrier] = _Carrier("")
        if not end:
            c.top = max(c.top, first + count - 1)
            c.size = max(c.size, samples)
        members = () if end else tuple(zip(itertools.repeat(carrier, count),
                                           range(first, first + count), strict=False))
        ident = "" if seq else f"{r.chunk_subject}:{'e' if end else 'c'}{carrier}.{first}"
        return Outgoing("chunk", r.chunk_subject, payload, r.number, carrier, members, seq,
                        ident)

    def _event(self, r: _Run, kind: int, carrier: int,
               body: dict[str, Any]) -> Outgoing | None:
        if kind == F.LAYOUT:
            c = r.carriers.setdefault(carrier, _Carrier(body.get("path", "")))
            c.path = body.get("path", "") or c.path
            keys = ("carrier", "path", "dtype", "channels", "gains", "offsets", "probes")
            out: dict[str, Any] = {k: body[k] for k in keys if k in body}
            return self._json(r, "layout", dict(out, run_id=r.run_id), carrier)
        if kind == F.STATE:
            return self._json(r, "state", {"run_id": r.run_id, "carrier": carrier,
                                           "path": body.get("path", ""),
                                           "state": body.get("state", ""),
                                           "reason": body.get("reason", "")}, carrier)
        if kind == F.CARRIER_END:
            path = body.get("path", "")
            state, reason = body.get("state", ""), body.get("reason", "")
            if path:
                r.ended[path] = state
                if reason:
                    r.reasons[path] = reason
                if carrier != F.RUN_WIDE:  # a carrier whose every chunk the tap lost too
                    r.carriers.setdefault(carrier, _Carrier(path))
                for c in r.carriers.values():
                    if c.path == path:
                        c.state, c.reason = state, reason
                        c.proxy_chunks = max(c.proxy_chunks, int(body.get("chunks", 0) or 0))
            else:
                r.wide_end = True
                for p in r.paths:
                    r.ended.setdefault(p, state)
                    if reason:
                        r.reasons.setdefault(p, reason)
            return self._json(r, "state", {"run_id": r.run_id, "carrier": carrier,
                                           "path": path, "state": state, "reason": reason},
                              carrier)
        return None

    def _start(self, run: int, body: dict[str, Any]) -> Outgoing:
        run_id = str(body.get("run_id", ""))
        config = {k: body[k] for k in CONFIG_KEYS if k in body}
        expected = expected_samples(config)
        if expected:
            config["expected_samples"] = expected
        r = _Run(run, run_id, tuple(body.get("carriers", ())), expected,
                 chunk_subject=N.subject(self.prefix, self.proxy, run_id, "chunk"))
        self.runs[run] = r
        while len(self.runs) > RUNS_KEPT:
            del self.runs[next(iter(self.runs))]
        return self._json(r, "start", {"format": N.FORMAT, "version": N.VERSION,
                                       "run_id": r.run_id, "proxy": self.proxy,
                                       "carriers": list(r.paths), **config}, F.RUN_WIDE)

    def _json(self, r: _Run, kind: str, body: dict[str, Any], carrier: int) -> Outgoing:
        return Outgoing(kind, N.subject(self.prefix, self.proxy, r.run_id, kind),
                        N.encode_json(body), r.number, carrier)

    # -- what the stream has ----------------------------------------------------------------

    def stored(self, out: Outgoing) -> None:
        """JetStream acknowledged ``out``."""
        r = self.runs.get(out.run)
        if r is not None:
            for carrier, chunk in out.members:
                c = r.carriers.get(carrier)
                if c is not None:
                    c.stored.add(chunk)

    def dropped(self, out: Outgoing) -> None:
        """``out`` was dropped from the export queue (it is missing unless stored later)."""
        r = self.runs.get(out.run)
        if r is not None:
            r.export_dropped += max(1, len(out.members))

    def over(self, run: int) -> bool:
        r = self.runs.get(run)
        return r is not None and r.over and not r.finished

    def end(self, run: int) -> Outgoing:
        """The run's ``end`` message (call once, after its publishes settled)."""
        r = self.runs[run]
        r.finished = True
        missing: dict[str, list[int]] = {}
        chunks: dict[str, int] = {}
        for index, c in sorted(r.carriers.items()):
            path = c.path or f"carrier-{index}"
            total = max(c.top + 1, c.proxy_chunks)  # the tap may have lost the last ones
            if r.expected and c.size:  # chunks lost after the last one seen count too
                total = max(total, -(-r.expected // c.size))
            missing[path] = sorted(set(range(total)) - c.stored)
            chunks[path] = len(c.stored)
        cond, reason = N.condition(r.ended, r.reasons, missing)
        body = {"run_id": r.run_id, "condition": cond, "reason": reason, "missing": missing,
                "chunks": chunks, "states": dict(sorted(r.ended.items())),
                "export_dropped": r.export_dropped, "tap_gaps": r.tap_gaps}
        return self._json(r, "end", body, F.RUN_WIDE)



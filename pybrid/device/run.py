"""One run of the simulated device: the state stream, paced data chunks and injected faults.

Design note
-----------
States (per carrier, all carriers in lockstep)::

    NEW → TAKE_OFF → IC ─(ic_time)→ OP ─(data paced over op_time)→ OP_END → end data → DONE
                                     └─ fault / internal error ─→ ERROR (with a reason)

Every transition is made by :meth:`RunDriver._transition`, which writes one
``run_state_change_message`` per carrier stamped with the carrier's path (or one unstamped
message when ``stamp_entity`` is off).  Pacing uses only the injected clock: at OP start the
driver notes ``t_op``; sample ``n`` is "acquired" at ``t_op + stalled + n / rate``; chunk ``j``
(samples ``j·spc … (j+1)·spc − 1``) goes out once its last sample is acquired.  A timer call
emits everything due (so at 35 k chunks/s one call sends ~70 chunks per carrier — never one
``callLater`` per chunk), capped at ``max_chunks_per_tick`` per carrier and ~8 MB of encoded
chunks per call, then schedules itself
for the next due chunk but no sooner than ``tick``.  Chunk ``j`` of every carrier goes out
before chunk ``j+1`` of any, and fault thresholds ("after K chunks") are checked between them.
Chunk samples come from :class:`~pybrid.device.signals.ChunkSignal` a batch at a time and
the Envelope bytes from :class:`~pybrid.device.encoding.ChunkEncoder`.

When the TCP lane's transport pauses us (push producer), emission stops; on resume the
backlog goes out (still capped per call) and pacing continues from the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import attrs
import numpy as np
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pybrid.device.config import Faults
from pybrid.device.counters import DeviceCounters
from pybrid.device.encoding import ChunkEncoder, end_message, state_message, varint_run_end
from pybrid.device.lanes import DataLane
from pybrid.device.plan import RunPlan
from pybrid.device.signals import SAMPLE_DTYPES, ChunkSignal, expected
from pybrid.proto import pb

log = Logger()

_EPS = 1e-6  # samples: guards floor() against float rounding of elapsed × rate
_BATCH_BYTES = 8 * 1024 * 1024  # encoded chunks built per timer call, all carriers together


@attrs.define(eq=False)
class _CarrierStream:
    index: int
    path: str
    encoder: ChunkEncoder
    signal: ChunkSignal | None
    held: bytes | memoryview | None = None


@attrs.define(eq=False)
class RunDriver:
    """Drives one run from TAKE_OFF to DONE/ERROR on a data lane; see the module note.

    ``on_end(driver, outcome)`` is called exactly once with ``"done"``, ``"stopped"``,
    ``"error"`` or ``"aborted"``.  ``disconnect()`` closes the client connection (fault).
    """

    clock: IReactorTime
    plan: RunPlan
    lane: DataLane
    counters: DeviceCounters
    on_end: Callable[[RunDriver, str], None]
    disconnect: Callable[[], None]
    faults: Faults = attrs.field(factory=Faults)
    tick: float = 0.002
    max_chunks_per_tick: int = 1000
    session: str = ""
    state: int = pb.NEW
    next_chunk: int = 0
    _rng: np.random.Generator | None = None
    _streams: list[_CarrierStream] = attrs.field(factory=list)
    _timer: IDelayedCall | None = None
    _t_start: float = 0.0
    _t_op: float = 0.0
    _stalled_total: float = 0.0
    _stall_started: float | None = None
    _stalled_once: bool = False
    _paused: bool = False
    _ended: bool = False
    _op_samples: int = 0
    _thresholds: frozenset[int] = frozenset()
    _cap: int = 1

    def __attrs_post_init__(self) -> None:
        p = self.plan
        itemsize = SAMPLE_DTYPES[p.dtype].itemsize
        for cp in p.carriers:
            enc = ChunkEncoder(p.run_id, cp.carrier.path, cp.channels, p.dtype, itemsize)
            sig = None
            if p.total_chunks:
                sig = ChunkSignal(cp.carrier.index, p.n_channels, p.per_chunk, p.dtype)
            self._streams.append(_CarrierStream(cp.carrier.index, cp.carrier.path, enc, sig))
        f = self.faults
        if f.drop > 0 or f.reorder > 0:
            self._rng = np.random.default_rng(f.seed)
        chunk_bytes = max(1, p.per_chunk * p.n_channels * itemsize * len(p.carriers))
        self._cap = max(1, min(self.max_chunks_per_tick, _BATCH_BYTES // chunk_bytes))
        self._thresholds = frozenset(
            k for k in (f.error_after_chunks, f.disconnect_after_chunks, f.stall_after_chunks)
            if k is not None
        )

    # -- public ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    def start(self) -> None:
        self._t_start = self.clock.seconds()
        self.counters.runs_started += 1
        log.info("run {run_id} starting: {plan}", run_id=self.plan.run_id, plan=self._describe(),
                 session=self.session)
        self._transition(pb.TAKE_OFF)
        self._transition(pb.IC)
        if self.plan.ic_seconds > 0:
            self._timer = self.clock.callLater(self.plan.ic_seconds, self._guarded, self._enter_op)
        else:
            self._guarded(self._enter_op)

    def stop(self) -> None:
        """stop_run_command: end the run now with what has been acquired so far."""
        if self._ended:
            return
        self._cancel_timer()
        if self.state == pb.IC:
            self._transition(pb.OP)
        self.counters.runs_stopped += 1
        self._finish("stopped")

    def abort(self, why: str) -> None:
        """The client is gone: stop silently (nothing can be delivered any more)."""
        if self._ended:
            return
        self._cancel_timer()
        self.counters.runs_aborted += 1
        log.info("run {run_id} aborted: {why}", run_id=self.plan.run_id, why=why,
                 session=self.session)
        self._end("aborted")

    def pause(self) -> None:
        """Stop emitting (TCP backpressure); phase timers (IC, stall) keep running."""
        self._paused = True

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self.state == pb.OP and self._stall_started is None and not self._ended:
            self._schedule(0.0)

    # -- phases ---------------------------------------------------------------------------

    def _guarded(self, step: Callable[[], None]) -> None:
        """Timer entry point: an exception ends the run in ERROR instead of escaping."""
        self._timer = None
        try:
            step()
        except Exception:
            log.failure("run {run_id} failed internally", run_id=self.plan.run_id,
                        session=self.session)
            if not self._ended:
                self._fail("simulated device internal error")

    def _enter_op(self) -> None:
        self._transition(pb.OP)
        self._t_op = self.clock.seconds()
        if self._check_faults(0):
            return
        self._pump()

    def _pump(self) -> None:
        if self._ended or self._paused or self._stall_started is not None:
            return
        p = self.plan
        now = self.clock.seconds()
        elapsed = now - self._t_op - self._stalled_total
        total_chunks = p.total_chunks
        if elapsed >= p.op_seconds:
            due = total_chunks
        else:
            acquired = min(p.total_samples, int(elapsed * p.sample_rate + _EPS))
            due = total_chunks if acquired >= p.total_samples else acquired // p.per_chunk
            due = min(due, total_chunks)
        target = min(due, self.next_chunk + self._cap)
        if target > self.next_chunk and not self._emit(self.next_chunk, target):
            return  # a fault took over (stall, disconnect, error)
        if self.next_chunk < due:
            self._schedule(0.0)  # backlog beyond the per-call cap
        elif self.next_chunk >= total_chunks:
            end_at = self._t_op + self._stalled_total + p.op_seconds
            if now >= end_at:
                self._finish("done")
            else:
                self._schedule(end_at - now)
        else:
            nxt = min((self.next_chunk + 1) * p.per_chunk, p.total_samples)
            due_at = self._t_op + self._stalled_total + nxt / p.sample_rate
            self._schedule(max(due_at - now, self.tick))

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(delay, self._guarded, self._pump)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- data -----------------------------------------------------------------------------

    def _emit(self, first: int, stop: int) -> bool:
        """Send chunks ``first … stop-1`` of every carrier; False if a fault ended emission."""
        p = self.plan
        full_stop = min(stop, p.total_samples // p.per_chunk)
        j = first
        while j < stop:
            if j < full_stop:
                end = min(full_stop, varint_run_end(j))
                count, n = end - j, p.per_chunk
                batches = [
                    s.encoder.batch(j, count, n, partial(s.signal.fill, j, count))  # type: ignore[union-attr]
                    for s in self._streams
                ]
            else:  # the short last chunk
                end, count = j + 1, 1
                n = p.total_samples - j * p.per_chunk
                batches = []
                for s in self._streams:
                    raw = expected(s.index, p.n_channels, j * p.per_chunk, n, p.dtype).tobytes()
                    data = s.encoder.encode(j, raw, n)
                    batches.append((memoryview(data), len(data)))
            if not self._send(j, count, batches):
                return False
            j = end
        return True

    def _send(self, first: int, count: int, batches: list[tuple[memoryview, int]]) -> bool:
        """Send ``count`` encoded chunks per carrier in lockstep, applying drop/reorder and the
        "after K chunks" faults between chunk numbers."""
        streams = self._streams
        rolls = self._rng.random((count, len(streams), 2)) if self._rng is not None else None
        drop, reorder = self.faults.drop, self.faults.reorder
        send = self.lane.send
        c = self.counters
        last = self.plan.total_chunks - 1
        thresholds = self._thresholds
        for i in range(count):
            j = first + i
            for k, (flat, row) in enumerate(batches):
                payload = flat[i * row : (i + 1) * row]
                if rolls is not None:
                    s = streams[k]
                    if rolls[i, k, 0] < drop:
                        c.chunks_dropped += 1
                        continue
                    if s.held is None and j < last and rolls[i, k, 1] < reorder:
                        s.held = payload
                        c.chunks_reordered += 1
                        continue
                    send(payload)
                    c.chunks_sent += 1
                    if s.held is not None:
                        send(s.held)
                        c.chunks_sent += 1
                        s.held = None
                    continue
                send(payload)
                c.chunks_sent += 1
            if j + 1 in thresholds:
                self.next_chunk = j + 1
                self._op_samples = min(self.next_chunk * self.plan.per_chunk,
                                       self.plan.total_samples)
                if self._check_faults(j + 1):
                    return False
        self.next_chunk = first + count
        self._op_samples = min(self.next_chunk * self.plan.per_chunk, self.plan.total_samples)
        return True

    def _flush_held(self) -> None:
        for s in self._streams:
            if s.held is not None:
                self.lane.send(s.held)
                self.counters.chunks_sent += 1
                s.held = None

    def _check_faults(self, emitted: int) -> bool:
        """Apply a fault whose threshold is ``emitted`` chunks; True if emission must stop."""
        f = self.faults
        if f.error_after_chunks == emitted:
            self._fail(f"simulated fault: error after {emitted} chunks")
            return True
        if f.disconnect_after_chunks == emitted:
            self.counters.disconnects += 1
            log.info("run {run_id}: simulated disconnect after {n} chunks",
                     run_id=self.plan.run_id, n=emitted, session=self.session)
            self._cancel_timer()
            self.disconnect()  # closes the connection
            if not self._ended:
                self.abort("simulated disconnect")
            return True
        if f.stall_after_chunks == emitted and not self._stalled_once:
            self._stalled_once = True
            self.counters.stalls += 1
            self._stall_started = self.clock.seconds()
            log.info("run {run_id}: simulated stall of {s} s after {n} chunks",
                     run_id=self.plan.run_id, s=f.stall_seconds, n=emitted, session=self.session)
            self._cancel_timer()
            self._timer = self.clock.callLater(f.stall_seconds, self._guarded, self._unstall)
            return True
        return False

    def _unstall(self) -> None:
        assert self._stall_started is not None
        self._stalled_total += self.clock.seconds() - self._stall_started
        self._stall_started = None
        self._pump()

    # -- endings --------------------------------------------------------------------------

    def _finish(self, outcome: str) -> None:
        self._flush_held()
        p = self.plan
        self._transition(pb.OP_END)
        if p.sample_op_end and p.n_channels:
            for cp in p.carriers:
                raw = expected(cp.carrier.index, p.n_channels, self._op_samples, 1, p.dtype)
                env = end_message(p.run_id, cp.carrier.path, cp.channels, p.dtype, raw.tobytes())
                self.lane.send(env.SerializeToString())
        self._transition(pb.DONE)
        self.counters.runs_done += 1
        log.info("run {run_id} {outcome}: {chunks} chunks per carrier",
                 run_id=p.run_id, outcome=outcome, chunks=self.next_chunk, session=self.session)
        self._end(outcome)

    def _fail(self, reason: str) -> None:
        self._cancel_timer()
        self._flush_held()
        self._transition(pb.ERROR, reason)
        self.counters.runs_failed += 1
        log.info("run {run_id} failed: {reason}", run_id=self.plan.run_id, reason=reason,
                 session=self.session)
        self._end("error")

    def _end(self, outcome: str) -> None:
        self._ended = True
        self._cancel_timer()
        self.on_end(self, outcome)

    def _transition(self, new: int, reason: str = "") -> None:
        old, self.state = self.state, new
        p = self.plan
        elapsed = round((self.clock.seconds() - self._t_start) * 1e9)
        if p.stamp_entity:
            for cp in p.carriers:
                env = state_message(p.run_id, old, new, entity=cp.carrier.path,
                                    elapsed_ns=elapsed, reason=reason)
                self.lane.send(env.SerializeToString())
        else:
            env = state_message(p.run_id, old, new, entity=None, elapsed_ns=elapsed,
                                reason=reason)
            self.lane.send(env.SerializeToString())

    def _describe(self) -> str:
        p = self.plan
        return (f"{len(p.carriers)} carrier(s) × {p.n_channels} {p.dtype} channels, "
                f"{p.total_samples} samples at {p.sample_rate} Hz in chunks of {p.per_chunk} "
                f"over {p.op_seconds:g} s via {self.lane.kind}")


__all__ = ["RunDriver"]

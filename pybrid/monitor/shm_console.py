"""``pybrid-monitor --shm NAME``: show and record a proxy's shared-memory tap.

The reader blocks on the ZeroBuffer's semaphore, so this console loop is plain blocking code
(no reactor): it prints a status block every ``--interval`` seconds (chunks and samples per
carrier, tap gaps, chunk gaps, whether a proxy is attached), records with the same
:class:`~pybrid.monitor.record.Recorder` as the multicast mode (``--record FILE.npz``; the
:func:`recorder_for` seam is where other formats plug in), and stops after ``--duration`` or
on Ctrl-C / SIGTERM.  A proxy that died without detaching is reported as such (exit 1).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, TextIO

from twisted.internet import task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.monitor.decode import MonitorChunk
from pybrid.monitor.record import Recorder, is_h5
from pybrid.version import install_hint

PROG = "pybrid-monitor"
_log = Logger()


def recorder_for(path: str, clock: IReactorTime, sample_rate: int = 0) -> Recorder:
    """The multicast mode's recorder (``.h5`` streamed or ``.npz``, the ``pybrid-run -o``
    layout) on ``clock``, which :func:`run` advances with the wall clock."""
    if not (path.endswith(".npz") or is_h5(path)):
        raise ValueError(f"--record {path}: the file must end in .npz or .h5")
    return Recorder(path, clock, sample_rate=sample_rate)


def as_monitor_chunk(chunk: Any) -> MonitorChunk:
    """A :class:`~pybrid.monitor.shm.ShmChunk` as the recorder's chunk (values copied)."""
    return MonitorChunk(lane=chunk.carrier, carrier_path=chunk.carrier_path,
                        run_id=chunk.run_id, chunk=chunk.chunk, samples=chunk.values(),
                        probes=chunk.probes, end=chunk.end, tap_sequence=chunk.seq,
                        timestamp_ns=0)


#: How often the web thread takes what the loop read: one wake-up, not one per chunk.
HANDOFF_EVERY = 0.01
#: Chunks waiting for the web thread at most; beyond it the view shows them as lost (counted).
HANDOFF_MAX = 4096


_CHUNK, _RUN = "chunk", "run"


def _continues(last: tuple[Any, ...], item: tuple[Any, ...]) -> bool:
    """Whether queued chunk ``item`` directly follows ``last`` in the same carrier and format."""
    return (item[1] == last[1] and item[2] == last[2] and item[3] == last[3] + last[8]
            and item[4].shape == last[4].shape and item[5] is last[5] and item[6] is last[6])


class WebThread:
    """``--web`` beside the blocking loop: a reactor in a thread serving the live view
    (:class:`~pybrid.monitor.web.MonitorLive`).  The loop queues events (chunks only while a
    viewer watches, stamped when read) and the reactor takes them in order every
    :data:`HANDOFF_EVERY` seconds: a ``callFromThread`` per chunk woke the reactor 30 000
    times a second and left the viewers about 2 frames a second."""

    def __init__(self, description: str) -> None:
        import collections
        import threading

        from twisted.internet import reactor, threads

        from pybrid.monitor.web import MonitorLive

        self.reactor: Any = reactor
        self.live = MonitorLive(reactor)
        #: ``(_CHUNK, run_id, path, first number, raw, gain, offset, at, chunks)`` or
        #: ``(_RUN, MonitorRun)``
        #: in the order read; a deque's appends and pops are thread-safe.
        self.pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self.queued = 0  # chunks in ``pending``, approximately (both threads move it)
        self.dropped = 0
        self.thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                       name="pybrid-monitor-web", daemon=True)
        self.thread.start()
        port = threads.blockingCallFromThread(
            self.reactor, self._listen, description)  # type: ignore[arg-type]
        self.url = f"http://{port.getHost().host}:{port.getHost().port}/live"

    def _listen(self, description: str) -> Any:
        loop = task.LoopingCall(self._take)
        loop.clock = self.reactor
        loop.start(HANDOFF_EVERY, now=False)
        return self.live.listen(description)

    def _take(self) -> None:
        """In the reactor thread: what the loop queued so far, in order, consecutive chunks
        of a carrier as one block (the store's work per block, not per chunk); never
        raises."""
        q = self.pending
        group: list[tuple[Any, ...]] = []
        for _ in range(len(q)):
            item = q.popleft()
            if item[0] is _CHUNK:
                last = group[-1] if group else None
                if last is not None and not _continues(last, item):
                    self._block(group)
                    group = []
                group.append(item)
                continue
            if group:
                self._block(group)
                group = []
            try:
                self.live.run(item[1])
            except Exception:
                _log.failure("live view: a run boundary failed")
        if group:
            self._block(group)
        self.queued = len(q)

    def _block(self, group: list[tuple[Any, ...]]) -> None:
        import numpy as np

        _k, run_id, path, _n, raw, gain, offset, at, _c = group[-1]
        first = group[0][3]
        rows = raw if len(group) == 1 else np.concatenate([g[4] for g in group])
        try:
            self.live.block(run_id, path, first, rows * gain + offset, at,
                            sum(g[8] for g in group))
        except Exception:
            _log.failure("live view: storing chunks failed")

    def event(self, event: Any) -> None:
        from pybrid.monitor.decode import MonitorRun
        from pybrid.monitor.shm import ShmCarrierEnd, ShmChunk, ShmRunStart
        from pybrid.monitor.shm_blocks import ShmBlock

        if type(event) is ShmBlock:  # a copy already (ShmReader.blocks)
            if self.live.watchers:
                if self.queued >= HANDOFF_MAX:
                    self.dropped += event.chunks
                    return
                self.queued += event.chunks
                self.pending.append((_CHUNK, event.run_id, event.carrier_path, event.chunk,
                                     event.raw, event.gain, event.offset,
                                     self.reactor.seconds(), event.chunks))
        elif isinstance(event, ShmChunk):
            if self.live.watchers and not event.end:
                if self.queued >= HANDOFF_MAX:
                    self.dropped += 1  # the web thread is that far behind: a gap in the view
                    return
                self.queued += 1  # the ring's slot is reused: the raw samples copied
                self.pending.append((_CHUNK, event.run_id, event.carrier_path, event.chunk,
                                     event.raw.copy(), event.gain, event.offset,
                                     self.reactor.seconds(), 1))
        elif isinstance(event, ShmRunStart):
            self.pending.append((_RUN, MonitorRun(
                "run-start", event.run_id, {"run": event.run, **event.record}, event.seq)))
        elif isinstance(event, ShmCarrierEnd):
            self.pending.append((_RUN, MonitorRun(
                "run-end", event.run_id, {"state": event.state}, event.seq)))

    def stop(self) -> None:
        self.reactor.callFromThread(self.live.hub.stop)
        self.reactor.callFromThread(self.reactor.stop)
        self.thread.join(10)


def run(name: str, *, interval: float = 1.0, duration: float | None = None,
        record: str | None = None, payload_size: int = 64 << 20, sample_rate: int = 0,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr, web: str | None = None) -> int:
    """The console loop; the process exit status."""
    try:
        from zerobuffer import WriterDeadException

        from pybrid.monitor.shm import ShmCarrierEnd, ShmChunk, ShmReader, ShmRunStart
        from pybrid.monitor.shm_blocks import ShmBlock
    except ImportError as e:
        print(f"{PROG}: error: --shm needs zerobuffer-ipc and posix-ipc ({e}): "
              + install_hint("shm", "zerobuffer-ipc posix-ipc"), file=err)
        return 1
    try:
        clock = task.Clock()  # the recorder's flush timer, advanced below
        recorder = recorder_for(record, clock, sample_rate) if record else None
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=err)
        return 2
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    try:
        reader = ShmReader(name, payload_size=payload_size)
    except Exception as e:
        print(f"{PROG}: error: cannot create the ZeroBuffer {name!r}: {e}", file=err)
        return 1
    code = 0
    start = last = time.monotonic()
    per_carrier: dict[tuple[int, str], list[int]] = {}
    shown: dict[tuple[int, str], list[int]] = {}
    print(f"reading ZeroBuffer {name!r} ({payload_size} bytes); waiting for a proxy"
          + (f", recording to {record}" if record else ""), file=out, flush=True)
    viewer = None
    try:
        if web is not None:
            viewer = WebThread(web)
            print(f"live view on {viewer.url}", file=out, flush=True)
        # without a recorder, chunks that continue each other come as blocks (less per chunk)
        source = (reader.events if recorder is not None else reader.blocks)
        for event in source(timeout=min(interval, 0.25)):
            now = time.monotonic()
            if viewer is not None and event is not None:
                viewer.event(event)
            clock.advance(now - start - clock.seconds())
            if isinstance(event, (ShmChunk, ShmBlock)):
                key = (event.carrier, event.carrier_path)
                counts = per_carrier.setdefault(key, [0, 0])
                counts[0] += event.chunks if isinstance(event, ShmBlock) else 1
                counts[1] += event.raw.shape[0]
                if recorder is not None:
                    recorder.add(as_monitor_chunk(event))
            elif isinstance(event, ShmRunStart):
                if recorder is not None:
                    recorder.run(event.run_id, event.record)
                print(f"[{now - start:7.1f}s] run {event.run} ({event.run_id[:8]}) started on "
                      f"{', '.join(event.carriers)}", file=out, flush=True)
            elif isinstance(event, ShmCarrierEnd):
                print(f"[{now - start:7.1f}s] run {event.run} ({event.run_id[:8]}) "
                      f"{event.carrier_path or event.carrier}: {event.state}"
                      + (f" ({event.reason})" if event.reason else ""), file=out, flush=True)
            if now - last >= interval:
                _report(out, now - start, now - last, reader.stats, per_carrier, shown)
                last = now
            if stop or (duration is not None and now - start >= duration):
                break
    except WriterDeadException as e:
        print(f"{PROG}: error: WriterDead: {e}", file=err, flush=True)
        code = 1
    finally:
        stats = reader.stats
        reader.close()
        if viewer is not None:
            viewer.stop()
    print(f"summary: {stats.frames} frames, {stats.chunks} chunks, {stats.samples} samples, "
          f"tap gaps {stats.gaps}, chunk gaps {stats.chunk_gaps}"
          + (f", {viewer.dropped} chunks not shown (the live view behind)"
             if viewer is not None and viewer.dropped else ""), file=out, flush=True)
    if recorder is not None and record:
        try:
            written = recorder.close()
        except OSError as e:
            print(f"{PROG}: error: cannot write {record}: {e}", file=err)
            return 1
        runs = f"{len(written)} run" + ("" if len(written) == 1 else "s")
        files = ", ".join(path for path, _s in written) or "no file (no data seen)"
        print(f"recorded {recorder.samples} samples from {runs} to {files}", file=out,
              flush=True)
    return code


def _report(out: TextIO, at: float, elapsed: float, stats: Any,
            per_carrier: dict[tuple[int, str], list[int]],
            shown: dict[tuple[int, str], list[int]]) -> None:
    print(f"[{at:7.1f}s] total: {stats.frames} frames, {stats.chunks} chunks, tap gaps "
          f"{stats.gaps}, chunk gaps {stats.chunk_gaps}", file=out, flush=True)
    for key, (chunks, samples) in sorted(per_carrier.items()):
        c0, s0 = shown.get(key, (0, 0))
        shown[key] = [chunks, samples]
        print(f"[{at:7.1f}s] carrier {key[0]} {key[1]}: {(chunks - c0) / elapsed:.1f} "
              f"chunks/s, {(samples - s0) / elapsed:.1f} samples/s, chunks {chunks}",
              file=out, flush=True)

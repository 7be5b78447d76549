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

from pybrid.monitor.decode import MonitorChunk
from pybrid.monitor.record import Recorder, is_h5
from pybrid.version import install_hint

PROG = "pybrid-monitor"


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


class WebThread:
    """``--web`` beside the blocking loop: a reactor in a thread serving the live view
    (:class:`~pybrid.monitor.web.MonitorLive`); the loop hands it events by
    ``callFromThread`` — chunks only while a viewer watches."""

    def __init__(self, description: str) -> None:
        import threading

        from twisted.internet import reactor, threads

        from pybrid.monitor.web import MonitorLive

        self.reactor: Any = reactor
        self.live = MonitorLive(reactor)
        self.thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                       name="pybrid-monitor-web", daemon=True)
        self.thread.start()
        port = threads.blockingCallFromThread(
            self.reactor, self.live.listen, description)  # type: ignore[arg-type]
        self.url = f"http://{port.getHost().host}:{port.getHost().port}/live"

    def event(self, event: Any) -> None:
        from pybrid.monitor.decode import MonitorRun
        from pybrid.monitor.shm import ShmCarrierEnd, ShmChunk, ShmRunStart

        if isinstance(event, ShmChunk):
            if self.live.watchers and not event.end:
                self.reactor.callFromThread(self.live.chunk, as_monitor_chunk(event))
        elif isinstance(event, ShmRunStart):
            self.reactor.callFromThread(self.live.run, MonitorRun(
                "run-start", event.run_id, {"run": event.run, **event.record}, event.seq))
        elif isinstance(event, ShmCarrierEnd):
            self.reactor.callFromThread(self.live.run, MonitorRun(
                "run-end", event.run_id, {"state": event.state}, event.seq))

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
        for event in reader.events(timeout=min(interval, 0.25)):
            now = time.monotonic()
            if viewer is not None and event is not None:
                viewer.event(event)
            clock.advance(now - start - clock.seconds())
            if isinstance(event, ShmChunk):
                key = (event.carrier, event.carrier_path)
                counts = per_carrier.setdefault(key, [0, 0])
                counts[0] += 1
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
          f"tap gaps {stats.gaps}, chunk gaps {stats.chunk_gaps}", file=out, flush=True)
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

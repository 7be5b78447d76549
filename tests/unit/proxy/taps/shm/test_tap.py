"""The shared-memory tap's state machine, synchronous on task.Clock with a fake ring."""

from __future__ import annotations

from typing import Any

import attrs
from support.shm import require_shm
from twisted.internet import task

require_shm()

from pybrid.proxy.taps.shm.ring import (  # noqa: E402
    BufferFullException,
    BufferNotFound,
    ReaderDeadException,
    WriterAlreadyConnectedException,
)
from pybrid.proxy.taps.shm.tap import ShmTap  # noqa: E402
from pybrid.wire import shm_frames as F  # noqa: E402


@attrs.define
class FakeRing:
    reader_pid: int = 4242
    payload_size: int = 1000
    free_bytes: int = 1000
    metadata_written: bool = False
    sequence: int = 1
    metadata: list[bytes] = attrs.Factory(list)
    closed: bool = False

    def set_metadata(self, data: bytes) -> None:
        self.metadata.append(data)
        self.metadata_written = True

    def close(self) -> None:
        self.closed = True


@attrs.define
class FakeWriter:
    ring: FakeRing
    report: Any
    accept: int = 10**9
    frames: list[Any] = attrs.Factory(list)
    stopped: bool = False
    frames_written: int = 0
    bytes_written: int = 0
    queued: int = 0
    refused: int = 0

    def submit(self, frame: Any) -> bool:
        if len(self.frames) >= self.accept:
            self.refused += 1
            return False
        self.frames.append(frame)
        self.frames_written += 1
        self.bytes_written += len(frame[0])
        self.ring.sequence += 1
        return True

    def stop(self) -> None:
        self.stopped = True

    def discard(self) -> int:
        return 0


class Rig:
    def __init__(self, replay: list[Any] | None = None) -> None:
        self.clock = task.Clock()
        self.outcomes: list[Any] = []
        self.writers: list[FakeWriter] = []
        self.connects: list[int] = []
        self.tap = ShmTap("t", self.clock, lambda f, *a: f(*a), lambda: b"META",
                          replay=lambda: list(replay or []), poll_interval=0.5,
                          connect=self.connect, make_writer=self.make_writer)

    def connect(self, name: str) -> Any:
        self.connects.append(1)
        outcome = self.outcomes.pop(0) if self.outcomes else BufferNotFound("none")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def make_writer(self, ring: Any, report: Any, timeout: float, name: str) -> FakeWriter:
        writer = FakeWriter(ring, report)
        self.writers.append(writer)
        return writer


def frame(n: int) -> F.Frame:
    return F.whole_frame(bytes([n]) * 48)


def test_waits_quietly_then_attaches_and_writes_metadata_once():
    rig = Rig(replay=[frame(1), frame(2)])
    rig.tap.start()
    assert rig.tap.state == "waiting" and len(rig.connects) == 1
    rig.tap.submit(frame(9))
    assert rig.tap.status().dropped_detached == 1
    ring = FakeRing()
    rig.outcomes.append(ring)
    rig.clock.advance(0.5)
    assert rig.tap.state == "attached" and ring.metadata == [b"META"]
    writer = rig.writers[0]
    assert writer.frames == [frame(1), frame(2)]  # the current run's opening frames first
    rig.tap.submit(frame(3))
    assert writer.frames[-1] == frame(3)
    rig.clock.advance(5)  # attached: no more connects
    assert len(rig.connects) == 2
    status = rig.tap.status()
    assert status.attaches == 1 and status.frames_written == 3 and status.reader_pid == 4242


def test_metadata_already_in_the_buffer_is_not_rewritten():
    rig = Rig()
    ring = FakeRing(metadata_written=True)
    rig.outcomes.append(ring)
    rig.tap.start()
    assert rig.tap.state == "attached" and ring.metadata == []


def test_buffer_full_detaches_and_reattaches_only_when_the_reader_caught_up():
    rig = Rig()
    ring = FakeRing()
    rig.outcomes.append(ring)
    rig.tap.start()
    writer = rig.writers[0]
    for n in range(4):
        rig.tap.submit(frame(n))
    rig.tap.writer_failed(BufferFullException("full"), 7)
    status = rig.tap.status()
    assert status.state == "waiting" and status.buffer_full == 1 and status.detaches == 1
    assert status.dropped_lost == 7 and status.frames_written == 4
    assert writer.ring.sequence == 5
    rig.tap.submit(frame(5))
    assert rig.tap.status().dropped_detached == 1
    behind = FakeRing(free_bytes=100)  # the same reader, still behind
    rig.outcomes.append(behind)
    rig.clock.advance(0.5)
    assert rig.tap.state == "waiting" and behind.closed
    caught_up = FakeRing(free_bytes=600)
    rig.outcomes.append(caught_up)
    rig.clock.advance(0.5)
    assert rig.tap.state == "attached"
    assert caught_up.sequence == 5  # the ZeroBuffer sequence continues for the same reader
    assert rig.tap.status().attaches == 2 and rig.tap.status().frames_written == 4


def test_reader_dead_detaches_and_a_new_reader_starts_at_sequence_one():
    rig = Rig()
    rig.outcomes.append(FakeRing(reader_pid=999_999_999))
    rig.tap.start()
    rig.tap.submit(frame(1))
    rig.tap.writer_failed(ReaderDeadException("gone"), 0)
    status = rig.tap.status()
    assert status.reader_dead == 1 and status.state == "waiting"
    assert "ReaderDead" in status.last_error
    new = FakeRing(reader_pid=777, sequence=1)
    rig.outcomes.append(new)
    rig.clock.advance(0.5)
    assert rig.tap.state == "attached" and new.sequence == 1


def test_another_writer_is_refused_logged_once_and_retried():
    rig = Rig()
    logged: list[dict[str, Any]] = []
    from twisted.logger import globalLogPublisher

    globalLogPublisher.addObserver(logged.append)
    try:
        rig.outcomes.extend([WriterAlreadyConnectedException("another writer (pid 1)")] * 3)
        rig.tap.start()
        rig.clock.advance(0.5)
        rig.clock.advance(0.5)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert rig.tap.status().refused == 3 and rig.tap.state == "waiting"
    texts = [e for e in logged if "one writer per ZeroBuffer" in e.get("log_format", "")]
    assert len(texts) == 1
    rig.outcomes.append(FakeRing())
    rig.clock.advance(0.5)
    assert rig.tap.state == "attached"


def test_a_full_hand_off_is_counted_not_raised():
    rig = Rig()
    rig.outcomes.append(FakeRing())
    rig.tap.start()
    rig.writers[0].accept = 2
    for n in range(5):
        rig.tap.submit(frame(n))
    status = rig.tap.status()
    assert status.frames_written == 2 and status.dropped_queue == 3
    assert status.frames_dropped == 3


def test_the_poll_survives_its_own_exceptions():
    rig = Rig()
    rig.outcomes.extend([RuntimeError("boom"), FakeRing()])
    rig.tap.start()  # logs the failure, keeps polling
    assert rig.tap.state == "waiting"
    rig.clock.advance(0.5)
    assert rig.tap.state == "attached"


def test_stop_ends_the_writer_and_the_polls():
    rig = Rig()
    rig.outcomes.append(FakeRing())
    rig.tap.start()
    rig.tap.submit(frame(1))
    rig.tap.stop()
    assert rig.writers[0].stopped and rig.tap.state == "stopped"
    assert rig.tap.status().frames_written == 1
    rig.clock.advance(10)
    assert len(rig.connects) == 1


def test_a_buffer_still_being_created_is_retried_quietly_and_warned_of_only_late():
    """Issue 21.9: the reader has made the segment but not yet its OIEB (all zeros)."""
    import posix_ipc
    from support.shm import buffer_name
    from twisted.logger import LogLevel, globalLogPublisher

    name = buffer_name()
    seg = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=4096)
    seg.close_fd()
    clock = task.Clock()
    tap = ShmTap(name, clock, lambda f, *a: f(*a), lambda: b"META", poll_interval=0.25)
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        tap.start()
        for _ in range(12):  # 3 s of polls: the reader is just slow to set up
            clock.advance(0.25)
        loud = [e for e in logged if e.get("log_namespace", "").startswith("pybrid.proxy.taps.shm")
                and (e["log_level"] >= LogLevel.warn or "log_failure" in e)]
        assert loud == [] and tap.state == "waiting"
        for _ in range(12):  # beyond the deadline: one warning, no traceback
            clock.advance(0.25)
    finally:
        globalLogPublisher.removeObserver(logged.append)
        tap.stop()
        seg.unlink()
    loud = [e for e in logged if e.get("log_namespace", "").startswith("pybrid.proxy.taps.shm")
            and (e["log_level"] >= LogLevel.warn or "log_failure" in e)]
    assert len(loud) == 1 and "log_failure" not in loud[0]
    assert loud[0]["log_level"] == LogLevel.warn and "still not set up" in loud[0]["log_format"]

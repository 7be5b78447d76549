"""Per-client back-pressure: the sender as a push producer with a bounded queue."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from support.frames import split_payloads
from twisted.internet import abstract, main, task
from twisted.internet.testing import StringTransport

from pybrid.proto import pb
from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.states import SenderState
from pybrid.proxy.sizes import TRANSPORT_BUFFER, Overflow
from pybrid.wire import messages


class Consumer(abstract.FileDescriptor):
    """Twisted's own write buffering, producer and close logic, with a socket that takes
    everything.

    ``flush()`` is the reactor calling ``doWrite`` once the socket is writable: Twisted writes
    its buffer, resumes a paused producer, or — when asked to close and nothing is left —
    finishes the close (``lost``).
    """

    connected = 1

    def __init__(self, clock: task.Clock) -> None:
        super().__init__(reactor=clock)  # type: ignore[arg-type]
        self.sent = b""
        self.lost = False
        self.aborted = False

    def startWriting(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass

    def stopReading(self) -> None:
        pass

    def writeSomeData(self, data: bytes) -> int:
        self.sent += bytes(data)
        return len(data)

    def flush(self) -> None:
        if self.lost or self.aborted:
            return
        if self.doWrite() is main.CONNECTION_DONE:
            self.lost = True
            self.connectionLost(None)

    @property
    def pending(self) -> int:
        return self._tempDataLen + len(self.dataBuffer) - self.offset

    def abortConnection(self) -> None:
        self.aborted = True
        self.connectionLost(None)

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


@attrs.define
class Hook:
    overflows: list[Overflow] = attrs.field(factory=list)

    def __call__(self, overflow: Overflow) -> None:
        self.overflows.append(overflow)


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


def make(clock: task.Clock, limit: int = 10_000, **kw: Any) -> tuple[ClientSender, Consumer]:
    consumer = Consumer(clock)
    sender = ClientSender(consumer, limit=limit, clock=clock, **kw)
    sender.attach()
    return sender, consumer


def payload(i: int, size: int = 1000) -> bytes:
    return i.to_bytes(4, "big") * (size // 4)


def test_attach_registers_a_streaming_producer_and_sizes_the_buffer(clock):
    sender, consumer = make(clock, limit=64 << 20)
    assert consumer.producer is sender and consumer.streamingProducer
    assert consumer.bufferSize == TRANSPORT_BUFFER
    assert consumer.SEND_LIMIT == TRANSPORT_BUFFER
    _small, consumer2 = make(clock, limit=256 << 10)
    assert consumer2.bufferSize == 256 << 10  # never more in Twisted's buffer than the limit


def test_frames_go_straight_through_while_not_paused(clock):
    sender, consumer = make(clock)
    sender.send_payload(b"abc")
    sender.send_payload(payload(1, 400))
    assert sender.queued == 0 and not sender.paused
    consumer.flush()
    assert split_payloads(consumer.sent) == [b"abc", payload(1, 400)]


def test_twisted_pauses_the_sender_when_its_buffer_fills_and_frames_queue(clock):
    sender, consumer = make(clock)
    consumer.bufferSize = 2500
    for i in range(3):  # 3 × 1002 bytes > 2500: Twisted calls pauseProducing
        sender.send_payload(payload(i))
    assert sender.paused and consumer.producerPaused
    sender.send_payload(payload(3))
    sender.send_payload(payload(4))
    assert sender.queued == 2 * 1002
    assert consumer.pending == 3 * 1002  # nothing more reached Twisted's buffer
    assert sender.counters.peak == 2004


def test_resume_drains_the_queue_in_order_until_twisted_pauses_again(clock):
    sender, consumer = make(clock)
    consumer.bufferSize = 2500
    for i in range(9):
        sender.send_payload(payload(i))
    assert sender.queued == 6 * 1002
    consumer.flush()  # Twisted wrote its buffer and resumes us: we refill it and pause again
    assert sender.paused and 0 < sender.queued < 6 * 1002
    for _ in range(5):
        consumer.flush()
    assert not sender.paused and sender.queued == 0
    sender.send_payload(payload(9))  # straight through again
    consumer.flush()
    assert split_payloads(consumer.sent) == [payload(i) for i in range(10)]
    assert sender.counters.pauses >= 2 and sender.counters.resumes >= 2


def test_pause_and_resume_are_idempotent(clock):
    sender, consumer = make(clock)
    sender.pauseProducing()
    sender.pauseProducing()
    assert sender.counters.pauses == 1
    sender.send_payload(b"x")
    sender.resumeProducing()
    sender.resumeProducing()
    assert sender.counters.resumes == 1
    consumer.flush()
    assert split_payloads(consumer.sent) == [b"x"]


def test_replies_keep_their_place_behind_queued_data(clock):
    sender, consumer = make(clock)
    sender.pauseProducing()
    sender.send_payload(payload(1))
    sender.send_envelope(messages.success(id="r"))
    sender.resumeProducing()
    consumer.flush()
    sent = split_payloads(consumer.sent)
    assert sent[0] == payload(1)
    assert messages.kind_of(pb.Envelope.FromString(sent[1])) == "success_message"


def test_overflow_discards_the_queue_reports_and_closes_with_a_clear_error(clock):
    hook = Hook()
    sender, consumer = make(clock, limit=5000, on_overflow=hook)
    sender.pauseProducing()
    for i in range(4):
        sender.send_payload(payload(i))  # 4 × 1002 = 4008 bytes queued
    sender.send_payload(payload(4))  # 5010 > 5000: overflow
    assert len(hook.overflows) == 1
    overflow = hook.overflows[0]
    assert (overflow.buffered, overflow.limit, overflow.incoming) == (4008, 5000, 1002)
    assert overflow.discarded_frames == 5 and overflow.discarded_bytes == 5010
    assert sender.counters.overflows == 1 and sender.counters.peak == 4008
    # nobody closed it in the hook: the sender closes itself with the message
    assert sender.closed
    sender.send_payload(payload(5))
    assert sender.counters.dropped == 1
    sender.resumeProducing()
    consumer.flush()
    sent = [pb.Envelope.FromString(f) for f in split_payloads(consumer.sent)]
    assert [messages.kind_of(e) for e in sent] == ["error_message"]
    text = sent[0].message_v1.error_message.description
    assert "client buffer overflow" in text and "4008 bytes" in text and "5000 bytes" in text
    assert not sent[0].message_v1.HasField("id")
    consumer.flush()
    assert consumer.lost  # loseConnection once the message is out


def test_overflow_handler_may_close_the_sender_itself(clock):
    sender, consumer = make(clock, limit=3000)

    def close_session(overflow: Overflow) -> None:
        sender.send_envelope(messages.error(overflow.describe(("run-7",))))
        sender.close()

    sender.on_overflow = close_session
    sender.pauseProducing()
    for i in range(4):
        sender.send_payload(payload(i))
    sender.resumeProducing()
    consumer.flush()
    sent = [pb.Envelope.FromString(f) for f in split_payloads(consumer.sent)]
    assert len(sent) == 1
    assert "run run-7 aborted" in sent[0].message_v1.error_message.description


def test_overflow_handler_errors_do_not_escape_into_the_data_path(clock):
    def broken(overflow: Overflow) -> None:
        raise RuntimeError("boom")

    sender, _consumer = make(clock, limit=1500, on_overflow=broken)
    sender.pauseProducing()
    sender.send_payload(payload(0))
    sender.send_payload(payload(1))  # overflow; the handler raises; still closed cleanly
    assert sender.closed and sender.counters.overflows == 1


def test_close_writes_what_is_queued_before_losing_the_connection(clock):
    sender, consumer = make(clock)
    sender.pauseProducing()
    sender.send_payload(payload(1))
    sender.close()
    assert not consumer.disconnecting  # the queue is not written yet
    sender.resumeProducing()
    assert consumer.disconnecting
    consumer.flush()
    assert split_payloads(consumer.sent) == [payload(1)] and consumer.lost


def test_close_while_twisted_has_us_paused_still_closes(clock):
    sender, consumer = make(clock)
    consumer.bufferSize = 1000
    sender.send_payload(payload(1, 2000))  # Twisted's buffer is full: it pauses us
    assert consumer.producerPaused
    sender.send_envelope(messages.error("bye"))
    sender.close()
    consumer.flush()  # Twisted resumes us; we write the error and let go of the transport
    assert consumer.producer is None and consumer.disconnecting
    consumer.flush()
    assert consumer.lost
    sent = split_payloads(consumer.sent)
    assert sent[0] == payload(1, 2000)
    assert pb.Envelope.FromString(sent[1]).message_v1.error_message.description == "bye"


def test_close_with_nothing_queued_while_paused_still_closes(clock):
    sender, consumer = make(clock)
    consumer.bufferSize = 1000
    sender.send_payload(payload(1, 2000))
    assert consumer.producerPaused and sender.queued == 0
    sender.close()
    consumer.flush()
    assert consumer.lost
    sender.connection_gone()  # what the front does when the protocol hears of it
    assert clock.getDelayedCalls() == []  # the grace timer went with the connection


def test_a_client_that_never_takes_its_last_bytes_is_aborted_after_the_grace(clock):
    sender, consumer = make(clock, close_grace=5.0)
    sender.pauseProducing()
    sender.send_payload(payload(1))
    sender.close()
    clock.advance(4.9)
    assert not consumer.aborted
    clock.advance(0.2)
    assert consumer.aborted and sender.counters.aborted == 1
    assert sender.counters.discarded_frames == 1 and sender.queued == 0


def test_disconnect_unregisters_stops_and_cancels_timers(clock):
    sender, consumer = make(clock)
    sender.pauseProducing()
    sender.send_payload(payload(1))
    sender.close()
    assert clock.getDelayedCalls()
    consumer.connectionLost(None)  # Twisted calls stopProducing and drops the producer
    sender.connection_gone()  # what the front does on connectionLost
    assert consumer.producer is None
    assert clock.getDelayedCalls() == []
    assert sender.counters.discarded_frames == 1
    sender.send_payload(b"late")
    assert sender.counters.dropped == 1
    sender.resumeProducing()  # a late resume does nothing


def test_connection_gone_unregisters_the_producer_from_a_live_transport(clock):
    transport = StringTransport()
    sender = ClientSender(transport)
    sender.attach()
    assert transport.producer is sender and transport.streaming
    sender.connection_gone()
    assert transport.producer is None
    sender.connection_gone()  # idempotent


def test_plain_string_transport_still_sees_every_frame():
    transport = StringTransport()
    sender = ClientSender(transport)
    sender.attach()
    sender.send_payload(b"\x01" * 300)
    sender.send_envelope(messages.success(id="x"))
    assert len(split_payloads(transport.value())) == 2
    sender.close()
    assert transport.disconnecting


def test_a_client_that_never_takes_bytes_already_in_twisteds_buffer_is_aborted(clock):
    sender, consumer = make(clock, close_grace=5.0)
    consumer.bufferSize = 1000
    sender.send_payload(payload(1, 2000))  # in Twisted's buffer, not our queue
    sender.close()  # nothing queued: unregistered and loseConnection at once
    assert consumer.disconnecting and consumer.producer is None
    assert sender.state is SenderState.RELEASED
    clock.advance(5.1)  # the client never read: Twisted never finished the close
    assert consumer.aborted and sender.counters.aborted == 1
    assert sender.state is SenderState.ABORTED
    sender.connection_gone()
    assert sender.state is SenderState.GONE and clock.getDelayedCalls() == []


def test_an_abort_during_the_linger_cancels_the_linger(clock):
    sender, consumer = make(clock, close_grace=1.0)
    sender.close(linger=5.0)
    assert sender.state is SenderState.LINGERING
    clock.advance(1.1)
    assert consumer.aborted and sender.counters.aborted == 1
    assert sender.state is SenderState.GONE  # Twisted's abort stops its producer at once
    assert clock.getDelayedCalls() == []  # no loseConnection later on an aborted transport

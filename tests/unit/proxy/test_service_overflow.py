"""Flow control through the whole proxy on a memory reactor: overflow fails the run cleanly."""

from __future__ import annotations

import uuid

import pytest
from support.proxy_fakes import FakeReactor, connect_client, device_bytes, make_proxy

from pybrid.proto import pb
from pybrid.proxy.sizes import TRANSPORT_BUFFER
from pybrid.wire import messages

C0 = "/00-00-00-00-00-00"
SPEC = pb.ExtractCommand(recursive=True, specification=True)


@pytest.fixture
def reactor():
    return FakeReactor()


def active_client(service, port=41000):
    client = connect_client(service, port)
    client.request("extract_command", SPEC)
    client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
    assert client.kinds() == ["extract_response", "udp_data_streaming_refused_response"]
    return client


def start_run(client, backend, run_id):
    command = pb.StartRunCommand()
    command.run.id = run_id
    client.request("start_run_command", command, id="start")
    sent = backend.take("start_run_command")
    backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert client.kinds() == ["start_run_response"]


def chunk(run_id, n, size=900):
    env = messages.v1("run_data_message")
    body = env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = n
    body.entity.path = C0
    body.data.data = b"\x00" * size
    return env.SerializeToString()


def udp(service, raw):
    service.lanes[0].intake.datagramReceived(device_bytes(service.router, raw),
                                             ("127.0.0.1", 33333))


def test_every_client_sender_is_a_registered_bounded_producer(reactor):
    service, _ = make_proxy(reactor, client_buffer=1 << 20)
    client = active_client(service)
    sender = client.proto.session.sender
    assert client.transport.producer is sender and client.transport.streaming
    assert sender.limit == 1 << 20 and sender.clock is reactor
    client.close()
    assert client.transport.producer is None  # unregistered on disconnect


def test_default_client_buffer_is_64_mib(reactor):
    service, _ = make_proxy(reactor)
    sender = active_client(service).proto.session.sender
    assert sender.limit == 64 << 20
    assert TRANSPORT_BUFFER == 1 << 20


def test_overflow_fails_the_run_stops_the_backend_and_hands_over(reactor):
    service, [backend] = make_proxy(reactor, client_buffer=8192)
    slow = active_client(service, 1)
    waiting = connect_client(service, 2)
    waiting.request("reset_command", id="queued")
    assert waiting.kinds() == ["busy_response"]
    run_id = str(uuid.uuid4())
    start_run(slow, backend, run_id)
    session = slow.proto.session
    udp(service, chunk(run_id, 0))
    assert slow.kinds() == ["run_data_message"]  # straight through while not paused

    session.sender.pauseProducing()  # the client's socket is full: Twisted pauses us
    for n in range(1, 9):  # 8 × ~950 bytes fit in 8 KiB …
        udp(service, chunk(run_id, n))
    assert session.sender.queued > 7000 and not session.closed
    assert slow.transport.value() == b""
    udp(service, chunk(run_id, 9))  # … the ninth does not
    assert session.closed
    assert service.scheduler.active is waiting.proto.session  # handed over at once
    backend.take("stop_run_command")  # the aborted run is stopped on the device
    assert session.sender.counters.overflows == 1
    assert session.sender.counters.peak <= 8192

    udp(service, chunk(run_id, 10))  # later data of the aborted run reaches nobody
    assert service.router.counters.foreign_run == 1

    session.sender.resumeProducing()  # the client reads again: the run's ERROR, the error
    state, error = slow.frames()
    change = state.message_v1.run_state_change_message
    assert (change.new_, change.run.id, change.entity.path) == (pb.ERROR, run_id, C0)
    text = error.message_v1.error_message.description
    assert change.reason == text
    assert not error.message_v1.HasField("id")
    assert f"run {run_id} aborted" in text
    assert f"{session.sender.overflow.buffered} bytes were buffered" in text
    assert "limit --client-buffer 8 KiB = 8192 bytes" in text
    assert not slow.closing  # the close lingers: the reference client drops states before it
    reactor.advance(service.config.timing.degrade_grace + 0.01)
    assert slow.closing

    waiting.request("reset_command", id="now")
    sent = backend.take("reset_command")
    backend.send(messages.v1("reset_response", id=sent.message_v1.id))
    assert waiting.kinds() == ["reset_response"]


def test_a_stuck_client_is_aborted_after_the_overflow_deadline(reactor):
    service, [backend] = make_proxy(reactor, client_buffer=4096)
    slow = active_client(service)
    run_id = str(uuid.uuid4())
    start_run(slow, backend, run_id)
    session = slow.proto.session
    session.sender.pauseProducing()
    for n in range(6):
        udp(service, chunk(run_id, n))
    assert session.closed and not slow.transport.disconnected
    reactor.advance(service.config.timing.overflow_close - 0.1)  # only the error frames wait
    assert not slow.transport.disconnected and session.sender.queued < 1024
    reactor.advance(0.2)  # it never read again
    assert slow.transport.disconnected  # StringTransport.abortConnection
    assert session.sender.counters.aborted == 1


def test_a_two_carrier_overflow_writes_an_error_per_carrier(reactor):
    carriers = ["00-00-00-00-00-00", "00-00-00-00-00-01"]
    service, [backend] = make_proxy(reactor, carriers=[carriers], client_buffer=4096)
    slow = active_client(service)
    run_id = str(uuid.uuid4())
    start_run(slow, backend, run_id)
    session = slow.proto.session
    session.sender.pauseProducing()
    for n in range(6):
        udp(service, chunk(run_id, n))
    assert session.closed
    session.sender.resumeProducing()
    frames = slow.frames()
    states = [f.message_v1.run_state_change_message for f in frames[:-1]]
    assert sorted(s.entity.path for s in states) == [f"/{c}" for c in carriers]
    assert {s.new_ for s in states} == {pb.ERROR}
    assert messages.kind_of(frames[-1]) == "error_message"
    backend.take("stop_run_command")


def test_the_intake_latches_the_devices_port_per_run(reactor):
    """A forged datagram from another port of the backend's host is dropped once the device's
    first datagram of the run latched its port; a new run may come from a new port."""
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    intake = service.lanes[0].intake
    for port, n in ((33333, 0), (44444, 1)):
        run_id = str(uuid.uuid4())
        start_run(client, backend, run_id)
        assert intake.latched is None  # released by the run's registration
        intake.datagramReceived(device_bytes(service.router, chunk(run_id, 0)), ("127.0.0.1", port))
        intake.datagramReceived(device_bytes(service.router, chunk(run_id, 1)),
                                ("127.0.0.1", 55555))  # forged
        intake.datagramReceived(device_bytes(service.router, chunk(run_id, 1)), ("127.0.0.1", port))
        assert intake.latched == ("127.0.0.1", port)
        assert intake.counters.foreign == n + 1
        frames = client.frames()
        chunks = [e.message_v1.run_data_message.run.chunk for e in frames]
        assert chunks == [0, 1]
        for carrier_done in (pb.OP_END, pb.DONE):
            change = pb.RunStateChangeMessage(new_=carrier_done)
            change.run.id = run_id
            intake.datagramReceived(
                device_bytes(service.router, messages.v1("run_state_change_message", change)
                             .SerializeToString()),
                ("127.0.0.1", port))
        client.frames()

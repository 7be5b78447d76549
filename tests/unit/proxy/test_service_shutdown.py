"""Stopping the proxy (SIGTERM, systemctl restart) mid-run: ERROR states, the message, close."""

from __future__ import annotations

import uuid

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy

from pybrid.proto import pb
from pybrid.proxy.service import SHUTTING_DOWN
from pybrid.wire import messages

CARRIERS = ["00-00-00-00-00-00", "00-00-00-00-00-01"]
SPEC = pb.ExtractCommand(recursive=True, specification=True)


@pytest.fixture
def reactor():
    return FakeReactor()


def running(reactor):
    service, [backend] = make_proxy(reactor, carriers=[CARRIERS])
    client = connect_client(service)
    client.request("extract_command", SPEC)
    command = pb.StartRunCommand()
    command.run.id = run_id = str(uuid.uuid4())
    client.request("start_run_command", command, id="start")
    sent = backend.take("start_run_command")
    backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert client.kinds() == ["extract_response", "start_run_response"]
    return service, backend, client, run_id


def test_stop_mid_run_sends_error_states_per_carrier_then_the_message_then_closes(reactor):
    service, backend, client, run_id = running(reactor)
    queued = connect_client(service, 41001)
    queued.request("reset_command", id="q")
    assert queued.kinds() == ["busy_response"]
    stopped = service.stopService()
    states = client.frames()
    assert [s.message_v1.run_state_change_message.entity.path for s in states] == [
        f"/{c}" for c in CARRIERS]
    for s in states:
        change = s.message_v1.run_state_change_message
        assert (change.new_, change.run.id, change.reason) == (pb.ERROR, run_id, SHUTTING_DOWN)
    backend.take("stop_run_command")  # the device stops the run too
    assert not client.closing  # the states get a moment before the close
    reactor.advance(service.config.timing.degrade_grace + 0.01)
    assert not client.closing  # … until the client closes, or shutdown_grace
    reactor.advance(service.config.timing.shutdown_grace)
    [error] = client.frames()
    assert error.message_v1.error_message.description == SHUTTING_DOWN
    assert client.closing
    [told] = queued.frames()
    assert told.message_v1.error_message.description == SHUTTING_DOWN
    assert queued.closing
    assert not stopped.called  # waits for the connections to go (bounded)
    client.close()
    queued.close()
    reactor.advance(0)
    assert stopped.called


def test_a_client_slow_to_handle_its_error_states_is_not_closed_on_them(reactor):
    """A busy host: the reference client handles the ERROR states seconds late (and drops
    them if the close comes first); the proxy waits for it to close, up to shutdown_grace."""
    service, _backend, client, _run_id = running(reactor)
    stopped = service.stopService()
    timing = service.config.timing
    assert timing.shutdown_grace >= 5.0
    reactor.advance(3.0)
    assert not client.closing and not stopped.called
    client.close()  # it handled the states and closed, as the reference client does
    reactor.advance(0)
    reactor.advance(timing.shutdown_flush)
    assert stopped.called


def test_stop_is_bounded_when_a_client_never_takes_its_last_bytes(reactor):
    service, _backend, client, _run_id = running(reactor)
    stopped = service.stopService()
    timing = service.config.timing
    reactor.advance(timing.degrade_grace + 0.01)
    reactor.advance(timing.shutdown_grace)
    assert client.closing and not stopped.called
    reactor.advance(timing.shutdown_flush)
    assert stopped.called


def test_stop_without_a_run_closes_at_once(reactor):
    service, _backends = make_proxy(reactor)
    client = connect_client(service)
    client.request("extract_command", SPEC)
    client.frames()
    service.stopService()
    [error] = client.frames()
    assert error.message_v1.error_message.description == SHUTTING_DOWN
    assert client.closing

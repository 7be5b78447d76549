"""Run ids as routing keys are the proxy's own (issue 15, point 1): the takeover scenario."""

from __future__ import annotations

import itertools
import uuid

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy
from support.proxy_multi import active_client, start_command

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.layout import new_run_id

C0 = "/00-00-00-00-00-00"
VICTIM = "5e1f0000-0000-4000-8000-000000000001"


@pytest.fixture
def reactor():
    return FakeReactor()


def proxy_ids():
    """Deterministic proxy run ids for the test (the service's default is random)."""
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def device_data(run_id: str, chunk: int) -> bytes:
    """A run data datagram as the device streams it: with the id it was given."""
    env = messages.v1("run_data_message", id=messages.new_id())
    body = env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = C0
    body.data.data = b"\x01\x02\x03\x04" * 8
    return env.SerializeToString()


def start(client, backend, run_id):
    client.frames()
    client.request("start_run_command", start_command(run_id), id="start")
    sent = backend.take("start_run_command")
    backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert client.kinds() == ["start_run_response"]
    return sent.message_v1.start_run_command.run.id


def test_the_device_gets_the_proxys_id_and_the_client_its_own_back(reactor):
    service, [backend] = make_proxy(reactor)
    service.dispatcher.new_run_id = proxy_ids()
    client = active_client(service)
    device_id = start(client, backend, VICTIM)
    assert device_id == "00000000-0000-4000-8000-000000000001"
    intake = service.lanes[0].intake
    raw = device_data(device_id, 0)
    intake.datagramReceived(raw, ("127.0.0.1", 33333))
    intake.datagramReceived(device_data(device_id, 1), ("127.0.0.1", 33333))  # fast path
    frames = client.frames()
    assert [f.message_v1.run_data_message.run.id for f in frames] == [VICTIM, VICTIM]
    assert [f.message_v1.run_data_message.run.chunk for f in frames] == [0, 1]
    # byte for byte the device's datagram but for the 36 bytes of the run id
    assert frames[0].SerializeToString() == raw.replace(device_id.encode(), VICTIM.encode())
    change = pb.RunStateChangeMessage(new_=pb.DONE)
    change.run.id = device_id
    backend.send(messages.v1("run_state_change_message", change))
    [done] = client.frames()
    assert done.message_v1.run_state_change_message.run.id == VICTIM
    assert service.router.counters.foreign_run == 0


def test_a_queued_client_naming_the_active_run_gets_none_of_it_after_the_takeover(reactor):
    """The issue's takeover: a queued client keeps sending start_run with the active run's id
    (it is on the status page); the active client dies mid-run; the next session receives
    none of the dead session's data, and its own run (same client id) is a new run."""
    service, [backend] = make_proxy(reactor)
    victim = active_client(service, 1)
    victim_device_id = start(victim, backend, VICTIM)
    intruder = connect_client(service, 2)
    for _ in range(3):
        intruder.request("start_run_command", start_command(VICTIM), id="steal")
    assert intruder.kinds() == ["busy_response"] * 3
    intake = service.lanes[0].intake
    intake.datagramReceived(device_data(victim_device_id, 0), ("127.0.0.1", 33333))
    assert victim.kinds() == ["run_data_message"]
    victim.close()  # dies mid-run
    backend.take("stop_run_command")
    assert intruder.proto.session is service.scheduler.active
    intruder.frames()
    intruder.request("start_run_command", start_command(VICTIM), id="steal")
    sent = backend.take("start_run_command")
    intruder_device_id = sent.message_v1.start_run_command.run.id
    assert intruder_device_id not in (VICTIM, victim_device_id)
    backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert intruder.kinds() == ["start_run_response"]
    # the device still streams the dead session's run, then its end, then its DONE
    for chunk in range(1, 29):
        intake.datagramReceived(device_data(victim_device_id, chunk), ("127.0.0.1", 33333))
    end = messages.v1("run_data_end_message")
    end.message_v1.run_data_end_message.run.id = victim_device_id
    end.message_v1.run_data_end_message.entity.path = C0
    backend.send(end)
    for state in (pb.OP_END, pb.DONE):
        change = pb.RunStateChangeMessage(new_=state)
        change.run.id = victim_device_id
        backend.send(messages.v1("run_state_change_message", change))
    assert intruder.frames() == []
    assert service.router.counters.foreign_run == 28 + 1 + 2
    # the intruder's own run is not marked finished by the victim's DONE ...
    assert intruder.proto.session.runs == {VICTIM}
    # ... and its own data reaches it, under the id it named
    intake.datagramReceived(device_data(intruder_device_id, 0), ("127.0.0.1", 33333))
    [own] = intruder.frames()
    assert own.message_v1.run_data_message.run.id == VICTIM


def test_the_proxys_run_ids_are_uuid4_from_the_random_source():
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 and len(i) == 36 for i in ids)
    assert new_run_id(lambda n: b"\x00" * n) == "00000000-0000-4000-8000-000000000000"

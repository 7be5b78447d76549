"""The last runs that ended (issue 21): one frozen record per run, in a bounded history, from
the coordinator on a memory reactor through the status snapshot."""

from __future__ import annotations

import attrs
import pytest
from support.proxy_fakes import FakeReactor, make_proxy
from support.proxy_multi import active_client, start_run, state, udp

from pybrid.proto import pb
from pybrid.proxy.runs.history import RunHistory, RunRecord
from pybrid.proxy.status.collect import StatusCollector
from pybrid.wire import messages

A0, A1, B0 = "/aa-00-00-00-00-00", "/aa-00-00-00-00-01", "/bb-00-00-00-00-00"
CARRIERS = [["aa-00-00-00-00-00", "aa-00-00-00-00-01"], ["bb-00-00-00-00-00"]]


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def proxy(reactor):
    service, backends = make_proxy(reactor, carriers=CARRIERS)
    client = active_client(service)
    return service, backends, client


def data(run_id: str, chunk: int, carrier: str):
    msg = pb.RunDataMessage()
    msg.run.id = run_id
    msg.run.chunk = chunk
    msg.entity.path = carrier
    msg.data.data = b"\x00" * 16
    return messages.v1("run_data_message", msg)


def history(service) -> tuple[RunRecord, ...]:
    return service.dispatcher.coordinator.history.records()


def test_a_run_that_ends_leaves_a_record_with_its_numbers(reactor, proxy):
    service, (a, b), client = proxy
    reactor.advance(1.0)
    started = reactor.seconds()
    start_run(client, (a, b), "run-1")
    proxy_id = service.router.runs["run-1"].run_id
    for chunk in (0, 1, 2, 5):  # chunks 3 and 4 of A0 never come
        udp(service, data("run-1", chunk, A0), lane=0)
    udp(service, data("run-1", 0, B0), lane=1)
    reactor.advance(2.5)
    assert history(service) == ()  # still running
    udp(service, state("run-1", pb.DONE), lane=0)
    udp(service, state("run-1", pb.DONE), lane=1)
    [record] = history(service)
    assert record == RunRecord(
        id="run-1", proxy_id=proxy_id, session=client.proto.session.id, peer="127.0.0.1:41000",
        started=started, ended=started + 2.5, carriers=3, chunks=7, missing=2, result="done")
    assert record.duration == 2.5 and proxy_id != "run-1"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.result = "error"  # type: ignore[misc]


def test_an_error_names_the_carrier_and_its_reason(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, state("run-1", pb.ERROR, entity=B0, reason="overload"), lane=1)
    udp(service, state("run-1", pb.DONE), lane=0)
    [record] = history(service)
    assert record.result == "error"
    assert record.reason == "carrier /bb-00-00-00-00-00 of backend 127.0.0.1:6001: overload"


def test_a_session_that_ends_mid_run_aborts_it(proxy):
    service, (a, b), client = proxy
    start_run(client, (a, b))
    udp(service, data("run-1", 0, A1), lane=0)
    client.close()
    [record] = history(service)
    assert (record.result, record.reason) == ("aborted", "the session ended during the run")
    assert record.chunks == 1 and record.missing == 0


def test_a_refused_start_is_recorded_as_not_started(proxy):
    service, (a, b), client = proxy
    client.frames()
    from support.proxy_multi import start_command

    client.request("start_run_command", start_command("run-9"), id="s")
    sent = a.take("start_run_command")
    a.send(messages.error("device busy", id=sent.message_v1.id))
    sent = b.take("start_run_command")
    b.send(messages.v1("start_run_response", id=sent.message_v1.id))
    [record] = history(service)
    assert record.id == "run-9" and record.result == "aborted"
    assert record.reason is not None and record.reason.startswith("not started: ")


def test_the_history_is_bounded_and_reaches_the_snapshot(reactor, proxy):
    service, (a, b), client = proxy
    for i in range(12):
        start_run(client, (a, b), f"run-{i}")
        udp(service, state(f"run-{i}", pb.DONE), lane=0)
        udp(service, state(f"run-{i}", pb.DONE), lane=1)
    assert [r.id for r in history(service)] == [f"run-{i}" for i in range(2, 12)]
    assert service.dispatcher.coordinator.history.total == 12
    status = StatusCollector(service, reactor).snapshot()
    assert status.recent_runs == history(service)
    data = status.to_json()["recent_runs"]
    assert data[-1]["id"] == "run-11" and data[-1]["result"] == "done"
    assert data[-1]["duration"] == 0.0 and data[-1]["peer"] == "127.0.0.1:41000"


def test_a_history_keeps_at_least_one_run():
    record = RunRecord(id="r", proxy_id="p", session="s", peer="h:1", started=1.0, ended=0.5,
                       carriers=1, chunks=0, missing=0, result="done")
    assert record.duration == 0.0  # a clock that went back is no negative duration
    one = RunHistory(capacity=1)
    one.add(record)
    one.add(attrs.evolve(record, id="r2"))
    assert [r.id for r in one.records()] == ["r2"] and one.total == 2
    with pytest.raises(ValueError, match="at least one"):
        RunHistory(capacity=0)

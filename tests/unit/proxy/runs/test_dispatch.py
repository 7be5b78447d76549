"""The active session's requests on a memory reactor: id rewriting, fan-out, merge, runs."""

from __future__ import annotations

import pytest
from support.proxy_fakes import FakeReactor, connect_client, make_proxy

from pybrid.proto import pb
from pybrid.wire import messages

C0, C1, C2 = "/00-00-00-00-00-00", "/00-00-00-00-00-01", "/bb-00-00-00-00-00"
SPEC = pb.ExtractCommand(recursive=True, specification=True)


@pytest.fixture
def reactor():
    return FakeReactor()


def active_client(service, port=41000):
    """Discovery, then the UDP request that claims the device (as the reference client does)."""
    client = connect_client(service, port)
    client.request("extract_command", SPEC)
    client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=1))
    assert client.kinds() == ["extract_response", "udp_data_streaming_refused_response"]
    assert client.proto.session is service.scheduler.active
    return client


def test_request_id_is_rewritten_and_restored(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    client.request("reset_command", pb.ResetCommand(keep_calibration=True), id="client-1")
    sent = backend.take("reset_command")
    assert sent.message_v1.id != "client-1"
    assert sent.message_v1.reset_command.keep_calibration
    backend.send(messages.v1("reset_response", id=sent.message_v1.id))
    [reply] = client.frames()
    assert messages.kind_of(reply) == "reset_response"
    assert reply.message_v1.id == "client-1"


def test_request_without_id_gets_a_reply_without_id(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    client.request("get_system_ident_command", id=None)
    sent = backend.take("get_system_ident_command")
    backend.send(messages.v1("get_system_ident_response", id=sent.message_v1.id))
    [reply] = client.frames()
    assert not reply.message_v1.HasField("id")


def test_udp_streaming_is_refused_with_316(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    client.request("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=9), id="u")
    [reply] = client.frames()
    assert messages.kind_of(reply) == "udp_data_streaming_refused_response"
    assert reply.message_v1.id == "u"
    assert reply.message_v1.udp_data_streaming_refused_response.reason
    assert backend.received() == []


def test_unknown_kind_is_forwarded_with_its_content_and_answered(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    # MessageV1 with id "u-1" and an undeclared field 777 (bytes "hello")
    inner = b"\x0a\x03u-1" + b"\xca\x30\x05hello"
    raw = b"\xaa\x06" + bytes([len(inner)]) + inner
    client.proto.dataReceived(bytes([len(raw)]) + raw)
    [sent] = backend.received()
    assert sent.message_v1.WhichOneof("kind") is None
    assert sent.message_v1.id != "u-1"
    assert b"hello" in sent.SerializeToString()
    backend.send(messages.success(id=sent.message_v1.id))
    [reply] = client.frames()
    assert messages.kind_of(reply) == "success_message" and reply.message_v1.id == "u-1"


def test_unanswered_request_becomes_an_error_after_the_timeout(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    client.request("stop_run_command", id="s1")
    backend.take("stop_run_command")
    for _ in range(9):  # the backend stays alive (pongs), it just never answers stop_run
        reactor.advance(0.5)
        backend.send(messages.generic_pong())
        assert client.frames() == []
    reactor.advance(0.6)
    [reply] = client.frames()
    assert reply.message_v1.id == "s1"
    text = reply.message_v1.error_message.description
    assert "127.0.0.1:6000" in text and "stop_run_command" in text


def test_fan_out_to_every_backend_and_one_merged_reply(reactor):
    service, backends = make_proxy(reactor, carriers=[["00-00-00-00-00-00"], ["bb-00-00-00-00-00"]])
    client = active_client(service)
    client.request("get_overload_status_command", id="o")
    status = []
    for i, backend in enumerate(backends):
        sent = backend.take("get_overload_status_command")
        reply = pb.GetOverloadStatusResponse()
        reply.status.global_overload = i == 1
        reply.status.elements.add(idx=i, overload=i == 1).entity.path = f"/c{i}"
        status.append(client.frames())
        backend.send(messages.v1("get_overload_status_response", reply, id=sent.message_v1.id))
    assert status == [[], []]  # nothing until every backend answered
    [merged] = client.frames()
    result = merged.message_v1.get_overload_status_response.status
    assert merged.message_v1.id == "o"
    assert result.global_overload
    assert [e.idx for e in result.elements] == [0, 1]


def test_an_error_from_one_backend_is_the_answer(reactor):
    service, backends = make_proxy(reactor, carriers=[["00-00-00-00-00-00"], ["bb-00-00-00-00-00"]])
    client = active_client(service)
    client.request("reset_command", id="r")
    a = backends[0].take("reset_command")
    b = backends[1].take("reset_command")
    backends[0].send(messages.v1("reset_response", id=a.message_v1.id))
    backends[1].send(messages.error("broken", id=b.message_v1.id))
    [reply] = client.frames()
    assert reply.message_v1.error_message.description == "backend 127.0.0.1:6001: broken"


def test_config_is_split_by_carrier_path(reactor):
    service, backends = make_proxy(
        reactor, carriers=[["00-00-00-00-00-00", "00-00-00-00-00-01"], ["bb-00-00-00-00-00"]]
    )
    client = active_client(service)
    command = pb.ConfigCommand(reset_before=True)
    for path in (C0 + "/0/M0", C2 + "/0/U", C1 + "/0/C"):
        command.module.items.add().entity.path = path
    client.request("config_command", command, id="cfg")
    first = backends[0].take("config_command").message_v1.config_command
    second = backends[1].take("config_command").message_v1.config_command
    assert [i.entity.path for i in first.module.items] == [C0 + "/0/M0", C1 + "/0/C"]
    assert [i.entity.path for i in second.module.items] == [C2 + "/0/U"]
    assert first.reset_before and second.reset_before


def test_config_for_an_unknown_carrier_is_an_error(reactor):
    service, backends = make_proxy(reactor, carriers=[["00-00-00-00-00-00"], ["bb-00-00-00-00-00"]])
    client = active_client(service)
    command = pb.ConfigCommand()
    command.module.items.add().entity.path = "/ff-ff/0/M0"
    client.request("config_command", command, id="cfg")
    [reply] = client.frames()
    assert "no backend found for entity path" in reply.message_v1.error_message.description
    assert all(b.received() == [] for b in backends)


def start_run(client, backend, run_id="run-1"):
    command = pb.StartRunCommand()
    command.run.id = run_id
    client.request("start_run_command", command, id="start")
    sent = backend.take("start_run_command")
    assert sent.message_v1.start_run_command.run.id == run_id
    backend.send(messages.v1("start_run_response", id=sent.message_v1.id))
    assert client.kinds() == ["start_run_response"]


def udp(service, env, lane=0):
    intake = service.lanes[lane].intake
    intake.datagramReceived(env.SerializeToString(), ("127.0.0.1", 33333))


def state(run_id, new):
    change = pb.RunStateChangeMessage(new_=new)
    change.run.id = run_id
    return messages.v1("run_state_change_message", change, id=messages.new_id())


def data(run_id, chunk, path=C0):
    env = messages.v1("run_data_message", id=messages.new_id())
    body = env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = path
    return env


def test_run_traffic_reaches_the_session_stamped_per_carrier(reactor):
    service, [backend] = make_proxy(reactor, carriers=[["00-00-00-00-00-00", "00-00-00-00-00-01"]])
    client = active_client(service)
    start_run(client, backend)
    udp(service, state("run-1", pb.TAKE_OFF))
    raw = data("run-1", 0)
    udp(service, raw)
    frames = client.frames()
    assert [messages.kind_of(f) for f in frames] == ["run_state_change_message"] * 2 + [
        "run_data_message"
    ]
    stamps = [f.message_v1.run_state_change_message.entity.path for f in frames[:2]]
    assert stamps == [C0, C1]
    assert frames[2].SerializeToString() == raw.SerializeToString()


def test_refused_udp_backend_run_traffic_by_tcp(reactor):
    service, [backend] = make_proxy(reactor, accept_udp=False)
    client = active_client(service)
    start_run(client, backend)
    backend.send(state("run-1", pb.TAKE_OFF))
    backend.send(data("run-1", 0))
    frames = client.frames()
    assert [messages.kind_of(f) for f in frames] == ["run_state_change_message",
                                                     "run_data_message"]
    assert frames[0].message_v1.run_state_change_message.entity.path == C0


def test_killed_session_mid_run_stops_the_run_and_its_data_does_not_leak(reactor):
    service, [backend] = make_proxy(reactor)
    first = active_client(service, 1)
    second = connect_client(service, 2)
    second.request("reset_command", id="queued")
    assert second.kinds() == ["busy_response"]
    start_run(first, backend, "run-A")
    udp(service, data("run-A", 0))
    assert first.kinds() == ["run_data_message"]
    first.close()
    backend.take("stop_run_command")
    second.frames()
    udp(service, data("run-A", 1))
    udp(service, state("run-A", pb.DONE))
    assert second.frames() == []
    assert service.router.counters.foreign_run == 2
    start_run(second, backend, "run-B")
    udp(service, data("run-B", 0))
    assert second.kinds() == ["run_data_message"]


def test_a_refused_start_unregisters_the_run(reactor):
    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    command = pb.StartRunCommand()
    command.run.id = "bad"
    client.request("start_run_command", command)
    sent = backend.take("start_run_command")
    backend.send(messages.error("no", id=sent.message_v1.id))
    assert client.kinds() == ["error_message"]
    udp(service, data("bad", 0))
    assert client.frames() == []
    assert client.proto.session.runs == set()


def test_backend_lost_mid_session_degrades_and_closes(reactor):
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    service, [backend] = make_proxy(reactor)
    client = active_client(service)
    backend.proto.connectionLost(Failure(ConnectionLost()))
    [reply] = client.frames()
    assert reply.message_v1.error_message.description.startswith("Cluster degraded")
    assert not reply.message_v1.HasField("id")
    assert client.closing
    waiting = connect_client(service, 2)
    waiting.request("reset_command", id="r")
    assert waiting.kinds() == ["busy_response"]  # not promoted while a backend is down
    reactor.advance(0.5)
    from support.proxy_fakes import connect_backend

    connect_backend(reactor).handshake()
    waiting.request("reset_command", id="r2")
    assert waiting.frames() == []  # forwarded now
    assert service.scheduler.active is waiting.proto.session


def test_a_start_refused_by_one_backend_is_stopped_on_the_others(reactor):
    service, backends = make_proxy(reactor, carriers=[["00-00-00-00-00-00"], ["bb-00-00-00-00-00"]])
    client = active_client(service)
    command = pb.StartRunCommand()
    command.run.id = "half"
    client.request("start_run_command", command, id="s")
    a = backends[0].take("start_run_command")
    b = backends[1].take("start_run_command")
    backends[0].send(messages.v1("start_run_response", id=a.message_v1.id))
    backends[1].send(messages.error("cannot", id=b.message_v1.id))
    [reply] = client.frames()
    assert reply.message_v1.error_message.description == "backend 127.0.0.1:6001: cannot"
    backends[0].take("stop_run_command")
    assert [messages.kind_of(e) for e in backends[1].received()] == []

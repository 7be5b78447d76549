"""The simulated device's answers to everything but runs (task.Clock + StringTransport)."""

from __future__ import annotations

from support.device_harness import Harness, kinds

from pybrid.device import DeviceConfig
from pybrid.proto import pb
from pybrid.wire import messages


def _adc(path: str, *channels: tuple[int, float, float, int]) -> pb.Item:
    item = pb.Item()
    item.entity.path = path
    for idx, gain, offset, probe in channels:
        item.adc_config.channels.add(idx=idx, gain=gain, offset=offset, probe=probe)
    return item


def test_extract_one_carrier_is_a_carrier_root() -> None:
    h = Harness()
    reply = h.reply("extract_command", pb.ExtractCommand(recursive=True, specification=True))
    items = reply.message_v1.extract_response.module.items
    assert len(items) == 1
    root = items[0].entity_specification.entity
    assert (root.id, root.class_) == ("/00-00-00-00-00-01", pb.Entity.CARRIER)
    assert root.location_v0.carrier == 0
    children = {c.id: c for c in root.children}
    assert set(children) == {"/0", "/CTRL", "/FP"}
    assert children["/FP"].class_ == pb.Entity.FRONT_PANEL
    assert [b.id for b in children["/0"].children] == ["/M0", "/M1", "/U", "/C", "/I", "/SH"]
    assert h.device.carrier_paths == ("/00-00-00-00-00-01",)


def test_extract_three_carriers_is_a_device_root() -> None:
    h = Harness(DeviceConfig(carriers=3, first_mac="AA-BB-CC-DD-EE-FF"))
    root = h.reply("extract_command", pb.ExtractCommand(specification=True)) \
        .message_v1.extract_response.module.items[0].entity_specification.entity
    assert root.class_ == pb.Entity.DEVICE
    carriers = list(root.children)
    assert [c.id for c in carriers] == ["/AA-BB-CC-DD-EE-FF", "/AA-BB-CC-DD-EF-00",
                                        "/AA-BB-CC-DD-EF-01"]
    assert all(c.class_ == pb.Entity.CARRIER for c in carriers)
    assert [c.location_v0.carrier for c in carriers] == [0, 1, 2]
    assert all("/T" in {x.id for x in c.children} for c in carriers)
    assert root.id == carriers[0].id


def test_replies_carry_the_request_id() -> None:
    h = Harness()
    rid = h.request("get_overload_status_command")
    (reply,) = h.received()
    assert messages.request_id(reply) == rid
    status = reply.message_v1.get_overload_status_response.status
    assert reply.message_v1.HasField("get_overload_status_response")
    assert not status.global_overload


def test_generic_ping_and_v1_ping() -> None:
    h = Harness()
    h.clock.advance(2.5)
    h.send(messages.generic_ping())
    (pong,) = h.received()
    assert pong.generic.HasField("ping_response")
    assert pong.generic.ping_response.micros == 2_500_000
    assert kinds([h.reply("ping_command")]) == ["success_message"]


def test_unknown_commands_get_an_error_naming_the_kind() -> None:
    h = Harness()
    for kind in ("get_system_ident_command", "stand_by_command", "calibrate_init_command"):
        reply = h.reply(kind)
        assert reply.message_v1.error_message.description == f"unsupported command: {kind}"
    assert h.device.counters.unknown_requests == 3
    # a response sent by the client is not a request: no reply
    h.send(messages.success(id="x"))
    assert h.received() == []


def test_request_without_id_is_executed_but_not_answered() -> None:
    h = Harness(DeviceConfig(carriers=1))
    cfg = pb.ConfigCommand()
    cfg.module.items.append(_adc("/00-00-00-00-00-01/0", (3, 2.0, 0.5, 7)))
    h.send(messages.v1("config_command", cfg))
    assert h.received() == []
    assert h.device.adc_channels(0)[0].probe == 7


def test_config_keeps_adc_channels_per_carrier() -> None:
    h = Harness(DeviceConfig(carriers=2))
    cfg = pb.ConfigCommand()
    cfg.module.items.extend([
        _adc("/00-00-00-00-00-01/0", (0, 1.5, 0.0, 0), (5, 1.0, -0.5, 1)),
        _adc("/00-00-00-00-00-02", (2, 1.0, 0.0, 2)),
    ])
    cfg.module.items.add().entity.path = "/00-00-00-00-00-02/0/M0"
    reply = h.reply("config_command", cfg)
    assert reply.message_v1.HasField("config_response")
    assert [(c.idx, c.gain, c.offset, c.probe) for c in h.device.adc_channels(0)] == [
        (0, 1.5, 0.0, 0), (5, 1.0, -0.5, 1)]
    assert [c.probe for c in h.device.adc_channels(1)] == [2]
    # extract{configuration} returns kept items filtered by path prefix
    ext = h.reply("extract_command", pb.ExtractCommand(
        configuration=True, entity=pb.EntityId(path="/00-00-00-00-00-02")))
    paths = [i.entity.path for i in ext.message_v1.extract_response.module.items]
    assert sorted(paths) == ["/00-00-00-00-00-02", "/00-00-00-00-00-02/0/M0"]


def test_config_with_unknown_carrier_is_refused_and_changes_nothing() -> None:
    h = Harness(DeviceConfig(carriers=2))
    good = pb.ConfigCommand()
    good.module.items.append(_adc("/00-00-00-00-00-01", (0, 1.0, 0.0, 0)))
    h.reply("config_command", good)
    bad = pb.ConfigCommand()
    bad.module.items.extend([_adc("/00-00-00-00-00-02", (1, 1.0, 0.0, 9)),
                             _adc("/00-00-00-00-00-01X", (1, 1.0, 0.0, 9))])
    reply = h.reply("config_command", bad)
    assert "unknown entity path '/00-00-00-00-00-01X'" in reply.message_v1.error_message.description
    assert [c.probe for c in h.device.adc_channels(0)] == [0]
    assert h.device.adc_channels(1) == ()


def test_reset_clears_config_and_echoes_entity() -> None:
    h = Harness()
    cfg = pb.ConfigCommand()
    cfg.module.items.append(_adc("/00-00-00-00-00-01", (0, 1.0, 0.0, 0)))
    h.reply("config_command", cfg)
    h.reply("calibration_command", pb.CalibrationCommand())
    assert h.device.calibrated
    reply = h.reply("reset_command", pb.ResetCommand(
        entity=pb.EntityId(path="/00-00-00-00-00-01"), keep_calibration=True))
    assert reply.message_v1.reset_response.entity.path == "/00-00-00-00-00-01"
    assert h.device.adc_channels(0) == ()
    assert h.device.calibrated
    h.reply("reset_command", pb.ResetCommand())
    assert not h.device.calibrated


def test_calibration_response() -> None:
    h = Harness()
    assert kinds([h.reply("calibration_command", pb.CalibrationCommand())]) == [
        "calibration_response"]


def test_udp_negotiation_accepted() -> None:
    h = Harness()
    reply = h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=41234))
    assert kinds([reply]) == ["success_message"]
    sender = h.udp()
    assert (sender.local, sender.peer, sender.port) == ("127.0.0.1", "127.0.0.1", 41234)
    # a second request replaces the lane
    h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=41235))
    assert sender.closed and h.udp().port == 41235
    h.transport.loseConnection()
    h.protocol.connectionLost(None)
    assert h.udp().closed


def test_udp_negotiation_refused() -> None:
    h = Harness(DeviceConfig(refuse_udp=True))
    reply = h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=41234))
    refusal = reply.message_v1.udp_data_streaming_refused_response
    assert reply.message_v1.HasField("udp_data_streaming_refused_response")
    assert "disabled" in refusal.reason
    assert h.senders == []
    assert h.device.counters.udp_refused == 1


def test_udp_port_zero_is_an_error() -> None:
    h = Harness()
    reply = h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=0))
    assert reply.message_v1.error_message.description == "invalid UDP port 0"


def test_stop_run_without_a_run_succeeds() -> None:
    h = Harness()
    assert kinds([h.reply("stop_run_command")]) == ["success_message"]


def test_garbage_frame_is_counted_and_the_connection_survives() -> None:
    h = Harness()
    h.protocol.dataReceived(b"\x03\xff\xff\xff")
    assert h.protocol.counters.unparseable == 1
    assert kinds([h.reply("ping_command")]) == ["success_message"]

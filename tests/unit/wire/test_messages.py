"""Our .proto matches the reference's wire format; unknown fields survive; correlation."""

from __future__ import annotations

import pytest
from twisted.internet import task

from pybrid.proto import pb
from pybrid.wire import RequestTimeout, RequestTracker, encode_varint
from pybrid.wire import messages as m


def _field(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _len_field(number: int, body: bytes) -> bytes:
    return _field(number, 2) + encode_varint(len(body)) + body


def test_udp_streaming_command_port_is_fixed32() -> None:
    env = m.v1("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=0x1234), id="i")
    expected = _len_field(
        101, _len_field(1, b"i") + _len_field(215, _field(1, 5) + (0x1234).to_bytes(4, "little"))
    )
    assert env.SerializeToString() == expected


def test_busy_response_with_request_id() -> None:
    env = m.busy(id="r1")
    assert env.SerializeToString() == _len_field(101, _len_field(1, b"r1") + _len_field(502, b""))


def test_start_run_field_numbers() -> None:
    cmd = pb.StartRunCommand()
    cmd.run.id = "R"
    cmd.run_config.op_time.value = 5
    cmd.run_config.op_time.prefix = pb.NANO
    cmd.daq_config.num_channels = 8
    body = (
        _len_field(1, _len_field(1, b"R"))
        + _len_field(2, _len_field(2, _field(1, 0) + b"\x05" + _field(2, 0) + b"\x03"))
        + _len_field(3, _field(1, 0) + b"\x08")
    )
    assert cmd.SerializeToString() == body


def test_unknown_fields_survive_a_round_trip() -> None:
    # An Envelope with a MessageV1 kind we do not declare (504, jit_command), an unknown field
    # inside a declared message, and an unknown top-level field.
    jit = _len_field(504, _len_field(7, b"opaque payload"))
    v1 = _len_field(1, b"req-1") + jit
    raw = _len_field(101, v1) + _len_field(77, b"future")
    env = pb.Envelope()
    env.ParseFromString(raw)
    assert m.kind_of(env) == "unknown"
    assert m.request_id(env) == "req-1"
    env.message_v1.id = "rewritten"
    out = env.SerializeToString()
    assert b"opaque payload" in out and b"future" in out
    again = pb.Envelope()
    again.ParseFromString(out)
    again.message_v1.id = "req-1"
    assert sorted(again.SerializeToString()) == sorted(raw)


def test_unknown_config_item_contents_survive() -> None:
    coef = _len_field(14, _len_field(1, b"\x01\x02") + _field(2, 0) + b"\x07")
    item = _len_field(1, _len_field(1, b"/00-00-00-00-00-01/0/C")) + coef
    module = pb.Module()
    module.ParseFromString(_len_field(1, item))
    assert module.items[0].WhichOneof("kind") == "coef_config"
    assert module.SerializeToString() == _len_field(1, item)


def test_tracker_resolves_by_id_and_times_out_on_the_clock() -> None:
    clock = task.Clock()
    tracker = RequestTracker(clock, timeout=5.0, peer="dev")
    got: list[pb.Envelope] = []
    failed: list[BaseException] = []
    tracker.expect("a", "reset_command").addCallback(got.append)
    tracker.expect("b", "extract_command").addErrback(lambda f: failed.append(f.value))
    assert tracker.resolve(m.success(id="zzz")) is False
    assert tracker.resolve(m.v1("reset_response", id="a")) is True
    assert len(got) == 1
    clock.advance(4.9)
    assert not failed
    clock.advance(0.2)
    [exc] = failed
    assert isinstance(exc, RequestTimeout)
    assert "extract_command" in str(exc) and "dev" in str(exc)
    assert tracker.outstanding() == 0
    assert not clock.getDelayedCalls()


def test_tracker_fail_all_and_duplicate_ids() -> None:
    clock = task.Clock()
    tracker = RequestTracker(clock)
    failures: list[BaseException] = []
    tracker.expect("a", "x").addErrback(lambda f: failures.append(f.value))
    with pytest.raises(ValueError):
        tracker.expect("a", "x")
    tracker.fail_all(ConnectionError("gone"))
    assert [type(f) for f in failures] == [ConnectionError]
    assert not clock.getDelayedCalls()


def test_tracker_cancel_forgets_the_request() -> None:
    clock = task.Clock()
    tracker = RequestTracker(clock)
    d = tracker.expect("a", "x")
    d.addErrback(lambda f: None)
    d.cancel()
    assert tracker.outstanding() == 0
    assert not clock.getDelayedCalls()


def test_run_kinds_and_final_states_are_the_protocol_s():
    run_fields = {f.name for f in pb.MessageV1.DESCRIPTOR.fields if f.name.startswith("run_")}
    assert m.RUN_KINDS == run_fields and len(m.RUN_KINDS) == 3
    assert m.FINAL_STATES == {pb.DONE, pb.ERROR}

"""Runs on the simulated device: state stream, chunk numbering, pacing, values, lanes."""

from __future__ import annotations

import numpy as np
import pytest
from support.device_harness import (
    Harness,
    data_messages,
    kinds,
    split_frames,
    start_run_command,
    states,
)

from pybrid import samples
from pybrid.device import DeviceConfig, Faults, expected, expected_decoded
from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import MAX_DATAGRAM

C1, C2 = "/00-00-00-00-00-01", "/00-00-00-00-00-02"


def _values(msgs: list[pb.RunDataMessage], path: str) -> np.ndarray:
    return np.concatenate([samples.decode(m.data) for m in msgs if m.entity.path == path])


def test_tcp_run_order_numbering_and_values() -> None:
    h = Harness(DeviceConfig(carriers=2))
    h.request("start_run_command", start_run_command(channels=3, rate=10_000, op_ns=25_000_000))
    first = h.received()
    assert kinds(first)[0] == "start_run_response"
    assert states(first) == [
        ("NEW", "TAKE_OFF", C1), ("NEW", "TAKE_OFF", C2),
        ("TAKE_OFF", "IC", C1), ("TAKE_OFF", "IC", C2),
        ("IC", "OP", C1), ("IC", "OP", C2),
    ]
    h.clock.advance(0.030)
    rest = h.received()
    data = data_messages(rest)
    assert [(m.entity.path, m.run.chunk) for m in data] == [
        (p, j) for j in range(3) for p in (C1, C2)]  # 250 samples: 100, 100, 50
    assert [m.data.sample_count for m in data[::2]] == [100, 100, 50]
    for i, path in enumerate((C1, C2)):
        assert np.array_equal(_values(data, path), expected(i, 3, 0, 250).astype(np.float64))
    ch = data[1].data.channels
    assert [(c.idx, c.gain, c.offset, c.probe) for c in ch] == [
        (0, 1.0, 0.0, 3), (1, 1.0, 0.0, 4), (2, 1.0, 0.0, 5)]
    tail = [k for k in kinds(rest) if k != "run_data_message"]
    assert tail == ["run_state_change_message"] * 2 + ["run_data_end_message"] * 2 + [
        "run_state_change_message"] * 2
    assert states(rest) == [("OP", "OP_END", C1), ("OP", "OP_END", C2),
                            ("OP_END", "DONE", C1), ("OP_END", "DONE", C2)]
    ends = [e.message_v1.run_data_end_message for e in rest
            if messages.kind_of(e) == "run_data_end_message"]
    assert [e.entity.path for e in ends] == [C1, C2]
    assert np.array_equal(samples.decode(ends[1].data), expected(1, 3, 250, 1))
    assert h.device.run is None and h.clock.getDelayedCalls() == []
    assert h.device.counters.runs_done == 1


def test_pacing_follows_the_clock_from_op_start() -> None:
    h = Harness(DeviceConfig(tick=0.0001))  # chunks may be up to one tick late
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=100_000_000,
                                                     ic_ns=5_000_000))
    h.received()
    h.clock.advance(0.004)  # still in IC
    assert states(h.received()) == []
    h.clock.advance(0.001)
    assert states(h.received()) == [("IC", "OP", C1)]
    seen = []
    for step, total in ((0.0099, 0), (0.0002, 1), (0.0397, 4), (0.0004, 5), (0.0499, 10)):
        h.clock.advance(step)
        seen += data_messages(h.received())
        assert len(seen) == total
    assert [m.run.chunk for m in seen] == list(range(10))
    assert h.device.run is None  # op_time elapsed with the last chunk


def test_high_rates_batch_chunks_per_timer_call() -> None:
    h = Harness(DeviceConfig(tick=0.002))
    calls = []
    real = h.clock.callLater

    def counting(delay, f, *a, **kw):
        calls.append(delay)
        return real(delay, f, *a, **kw)

    h.clock.callLater = counting  # type: ignore[method-assign]
    h.request("start_run_command", start_run_command(channels=8, rate=3_500_000,
                                                     op_ns=100_000_000))
    for _ in range(50):
        h.clock.advance(0.002)
    assert h.device.counters.chunks_sent == 3500
    assert h.device.run is None
    assert len(calls) <= 52  # one timer per tick, not one per chunk
    assert len(h.clock.getDelayedCalls()) == 0


def test_sample_count_follows_the_reference_formula() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(channels=1, rate=33_333, op_ns=7_000_000))
    h.clock.advance(1)
    data = data_messages(h.received())
    assert sum(m.data.sample_count for m in data) == int(7_000_000 * 33_333 / 1e9) == 233


def test_udp_lane_carries_states_and_data_tcp_carries_replies() -> None:
    h = Harness()
    h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=5000))
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=20_000_000))
    h.clock.advance(0.05)
    assert kinds(h.received()) == ["start_run_response"]
    dgrams = h.udp().envelopes()
    assert kinds(dgrams) == (["run_state_change_message"] * 3 + ["run_data_message"] * 2
                             + ["run_state_change_message", "run_data_end_message",
                                "run_state_change_message"])
    assert all(len(d) <= MAX_DATAGRAM for d in h.udp().datagrams)
    assert h.device.counters.datagrams_sent == len(dgrams)


def test_udp_send_errors_are_counted_not_raised() -> None:
    h = Harness()
    h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=5000))
    h.udp().fail = ConnectionRefusedError(111, "refused")
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=20_000_000))
    h.clock.advance(0.05)
    assert h.device.counters.datagram_errors == 8  # 5 states, 2 chunks, 1 end message
    assert h.device.counters.runs_done == 1


def test_kept_adc_config_fills_channels() -> None:
    h = Harness(DeviceConfig(dtype="i16"))
    cfg = pb.ConfigCommand()
    item = cfg.module.items.add()
    item.entity.path = C1 + "/0"
    item.adc_config.channels.add(idx=4, gain=2.0, offset=0.5, probe=1)
    item.adc_config.channels.add(idx=9, gain=0.0, offset=0.0, probe=0)  # gain 0 = unset = 1.0
    h.reply("config_command", cfg)
    h.request("start_run_command", start_run_command(channels=3, rate=10_000, op_ns=10_000_000))
    h.clock.advance(0.02)
    data = data_messages(h.received())
    ch = data[0].data.channels
    assert [(c.idx, c.gain, c.offset, c.probe) for c in ch] == [
        (4, 2.0 * 2**-15, 0.5, 1), (9, 2**-15, 0.0, 0), (2, 2**-15, 0.0, 2)]
    assert data[0].data.type.integer.bitwidth == 16
    got = _values(data, C1)
    want = expected_decoded(0, 3, 0, 100, "i16") * np.array([2.0, 1.0, 1.0]) + [0.5, 0, 0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", ["f32", "f64", "i16", "u16"])
def test_every_dtype_decodes_to_expected(dtype: str) -> None:
    h = Harness(DeviceConfig(dtype=dtype))
    h.request("start_run_command", start_run_command(channels=4, rate=10_000, op_ns=20_000_000))
    h.clock.advance(0.05)
    got = _values(data_messages(h.received()), C1)
    assert np.array_equal(got, expected_decoded(0, 4, 0, 200, dtype))


def test_sampling_flags() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(sample_op=False, op_ns=10_000_000))
    h.clock.advance(0.02)
    got = kinds(h.received())
    assert "run_data_message" not in got and got.count("run_data_end_message") == 1
    h.request("start_run_command", start_run_command(run_id="r2", sample_op_end=False))
    h.clock.advance(0.02)
    got = kinds(h.received())
    assert got.count("run_data_message") == 1 and "run_data_end_message" not in got
    h.request("start_run_command", start_run_command(run_id="r3", channels=0))
    h.clock.advance(0.02)
    got = kinds(h.received())
    assert "run_data_message" not in got and "run_data_end_message" not in got
    assert h.device.counters.runs_done == 3


def test_unstamped_state_stream_like_the_reference_mock() -> None:
    h = Harness(DeviceConfig(carriers=2, stamp_state_entity=False))
    h.request("start_run_command", start_run_command(op_ns=1_000_000))
    h.clock.advance(0.01)
    assert [s[2] for s in states(h.received())] == [""] * 5


def test_busy_device_refuses_a_second_run() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(op_ns=1_000_000_000))
    other, other_transport = h.connect()
    rid, env = messages.request("start_run_command", start_run_command(run_id="second"))
    h.send(env, other)
    (reply,) = split_frames(other_transport.value())
    assert messages.request_id(reply) == rid
    assert reply.message_v1.error_message.description == (
        "device busy: run run-0001 is in progress")
    assert h.device.run is not None and h.device.run.plan.run_id == "run-0001"


@pytest.mark.parametrize("cmd,error", [
    (start_run_command(rate=0), "sample_rate must be positive"),
    (start_run_command(channels=5000), "exceeds the simulator's maximum"),
    (start_run_command(run_id=""), "no run id"),
])
def test_bad_start_run_is_refused(cmd: pb.StartRunCommand, error: str) -> None:
    h = Harness()
    reply = h.reply("start_run_command", cmd)
    assert error in reply.message_v1.error_message.description
    assert h.device.run is None


def test_stop_run_ends_early_with_done() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=1_000_000_000))
    h.clock.advance(0.0305)
    h.received()
    rid = h.request("stop_run_command")
    after = h.received()
    assert kinds(after[:1]) == ["success_message"] and messages.request_id(after[0]) == rid
    assert states(after) == [("OP", "OP_END", C1), ("OP_END", "DONE", C1)]
    end = next(e for e in after if messages.kind_of(e) == "run_data_end_message")
    assert np.array_equal(samples.decode(end.message_v1.run_data_end_message.data),
                          expected(0, 2, 300, 1))
    assert h.device.run is None and h.clock.getDelayedCalls() == []
    assert h.device.counters.runs_stopped == 1


def test_client_disconnect_aborts_the_run_and_cancels_timers() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(op_ns=1_000_000_000))
    h.clock.advance(0.05)
    h.protocol.connectionLost(None)
    assert h.device.run is None
    assert h.clock.getDelayedCalls() == []
    assert h.device.counters.runs_aborted == 1


def test_tcp_backpressure_pauses_and_resumes_emission() -> None:
    h = Harness()
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=100_000_000))
    h.clock.advance(0.02)
    assert h.device.counters.chunks_sent == 2
    h.protocol.pauseProducing()
    h.clock.advance(0.05)
    assert h.device.counters.chunks_sent == 2
    h.protocol.resumeProducing()
    h.clock.advance(0)
    assert h.device.counters.chunks_sent == 7  # the backlog goes out at once
    h.clock.advance(0.05)
    data = data_messages(h.received())
    assert [m.run.chunk for m in data] == list(range(10))
    assert h.device.counters.runs_done == 1


def test_backpressure_during_ic_and_stall_does_not_lose_the_run() -> None:
    h = Harness(DeviceConfig(faults=Faults(stall_after_chunks=1, stall_seconds=0.05)))
    h.protocol.pauseProducing()  # paused before the run even starts
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=30_000_000,
                                                     ic_ns=1_000_000))
    h.clock.advance(0.001)  # OP begins (task.Clock runs timers at the end of an advance)
    h.clock.advance(0.02)
    assert h.device.counters.chunks_sent == 0
    h.protocol.resumeProducing()
    h.clock.advance(0)
    assert h.device.counters.chunks_sent == 1  # then the stall begins
    h.protocol.pauseProducing()
    h.clock.advance(0.06)  # the stall ends while paused
    h.protocol.resumeProducing()
    h.clock.advance(0.1)
    assert [m.run.chunk for m in data_messages(h.received())] == [0, 1, 2]
    assert h.device.counters.runs_done == 1 and h.clock.getDelayedCalls() == []


def test_wide_runs_split_chunks_to_fit_a_datagram() -> None:
    h = Harness(DeviceConfig(dtype="f64"))
    h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=5000))
    h.request("start_run_command", start_run_command(channels=200, rate=10_000,
                                                     op_ns=10_000_000))
    h.clock.advance(0.02)
    datagrams = h.udp().datagrams
    assert max(len(d) for d in datagrams) <= MAX_DATAGRAM
    data = data_messages(h.udp().envelopes())
    assert 0 < data[0].data.sample_count < 100
    assert np.array_equal(_values(data, C1), expected(0, 200, 0, 100, "f64"))

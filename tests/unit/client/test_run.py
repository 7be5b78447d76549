"""The run collector on a fake clock: chunk order and gaps, carriers and states, settling,
errors, deadlines and the per-chunk callback."""

import numpy as np
import pytest
from support.client_fakes import data, state
from twisted.internet import task
from twisted.python.failure import Failure

from pybrid.client.errors import RunError, RunTimeout
from pybrid.client.results import RunSpec, expected_samples
from pybrid.client.run import RunCollector
from pybrid.proto import pb

A, B = "00-00-00-00-00-0A", "00-00-00-00-00-0B"


def block(start, count, channels=2):
    n = np.arange(start, start + count, dtype=np.float32)[:, None]
    return n + np.arange(channels, dtype=np.float32)[None, :] / 10


def collector(carriers=(A,), *, op_time=0.03, rate=10_000, channels=2, timeout=10.0,
              settle=0.25, on_chunk=None):
    clock = task.Clock()
    spec = RunSpec(op_time=op_time, channels=channels, sample_rate=rate)
    c = RunCollector(clock, "run-1", spec, list(carriers), timeout, settle, on_chunk)
    out = []
    c.done.addBoth(out.append)
    return clock, c, out


def feed(c, env):
    c.envelope(env)


def finish_states(c, carrier=None):
    for old, new in [(pb.NEW, pb.TAKE_OFF), (pb.TAKE_OFF, pb.IC), (pb.IC, pb.OP),
                     (pb.OP, pb.OP_END), (pb.OP_END, pb.DONE)]:
        feed(c, state("run-1", old, new, carrier))


def test_expected_samples_counts_like_the_reference_mock():
    assert expected_samples(10_000_000, 10_000) == 100
    assert expected_samples(1_000, 10) == 1  # at least one
    assert expected_samples(25_000_000, 100_000) == 2500
    assert expected_samples(10_000_000, 0) == 0
    assert RunSpec(op_time=0.01, channels=0).expected_samples == 0
    assert RunSpec(op_time=0.01, sample_op=False).expected_samples == 0


def test_chunks_are_assembled_in_chunk_order_whatever_the_arrival_order():
    _clock, c, out = collector()
    for n in (2, 0, 1):
        feed(c, data("run-1", n, block(100 * n, 100)))
    feed(c, data("run-1", 0, block(0, 100), final=True))
    finish_states(c)
    assert out == [None]  # complete: no settle wait
    r = c.result(None, "udp")[A]
    np.testing.assert_array_equal(r.samples, block(0, 300))
    assert (r.chunks, r.chunk_gaps, r.duplicate_chunks) == (3, 0, 0)
    assert r.states == ("TAKE_OFF", "IC", "OP", "OP_END", "DONE")
    assert r.probes == (0, 1)
    assert r.complete


def test_gaps_and_duplicates_are_counted_and_the_settle_time_bounds_the_wait():
    clock, c, out = collector(settle=0.25)
    for n in (0, 2, 2, 4):
        feed(c, data("run-1", n, block(100 * n, 100)))
    feed(c, data("run-1", 0, block(0, 1), final=True))
    finish_states(c)
    assert out == []  # chunks 1 and 3 may still be in flight
    clock.advance(0.24)
    assert out == []
    clock.advance(0.02)
    assert out == [None]
    r = c.result(None, "udp")[A]
    assert (r.chunks, r.chunk_gaps, r.missing_chunks, r.duplicate_chunks) == (3, 2, (1, 3), 1)
    assert r.samples.shape == (300, 2)
    assert not r.complete
    np.testing.assert_array_equal(r.samples[100:200], block(200, 100))


def test_stragglers_after_done_finish_the_run_as_soon_as_it_is_complete():
    clock, c, out = collector(op_time=0.02)
    feed(c, data("run-1", 1, block(100, 100)))
    finish_states(c)
    assert out == []
    feed(c, data("run-1", 0, block(0, 100)))
    assert out == []  # the final values are still missing
    feed(c, data("run-1", 0, block(0, 1), final=True))
    assert out == [None]
    assert clock.seconds() == 0
    np.testing.assert_array_equal(c.result(None, "udp").samples, block(0, 200))


def test_final_values_are_the_last_row_of_the_end_message():
    _clock, c, _out = collector(op_time=0.01)
    feed(c, data("run-1", 0, block(0, 100)))
    feed(c, data("run-1", 0, np.array([[0.5, -0.25]]), final=True))
    finish_states(c)
    np.testing.assert_array_equal(c.result(None, "tcp")[A].final, [0.5, -0.25])


def test_state_without_entity_applies_to_every_carrier():
    _clock, c, out = collector((A, B), op_time=0.01, channels=0)
    finish_states(c)
    assert out == [None]
    r = c.result(None, "tcp")
    assert r[A].states == r[B].states == ("TAKE_OFF", "IC", "OP", "OP_END", "DONE")


def test_stamped_states_need_done_from_every_carrier():
    _clock, c, out = collector((A, B), op_time=0.01, channels=0)
    finish_states(c, A)
    assert out == []
    assert c.result(None, "tcp")[B].states == ()
    finish_states(c, B)
    assert out == [None]


def test_error_on_one_carrier_fails_the_run_with_its_reason():
    _clock, c, out = collector((A, B))
    feed(c, state("run-1", pb.NEW, pb.TAKE_OFF, A))
    feed(c, state("run-1", pb.OP, pb.ERROR, B, reason="overload on M0"))
    assert isinstance(out[0], Failure) and out[0].check(RunError)
    err = out[0].value
    assert (err.carrier, err.reason, err.run_id) == (B, "overload on M0", "run-1")
    feed(c, state("run-1", pb.OP_END, pb.DONE, A))  # ignored after the failure
    assert len(out) == 1


def test_deadline_names_the_carriers_that_did_not_finish():
    clock, c, out = collector((A, B), timeout=3.0, channels=0)
    clock.advance(100)  # before the start was accepted, no deadline runs
    assert out == []
    c.accepted()
    finish_states(c, A)
    clock.advance(2.9)
    assert out == []
    clock.advance(0.2)
    assert out[0].check(RunTimeout)
    assert out[0].value.waiting == [B]
    assert B in str(out[0].value) and "DONE" in str(out[0].value)


def test_on_chunk_sees_every_chunk_in_arrival_order():
    seen = []
    _clock, c, _out = collector(on_chunk=seen.append)
    feed(c, data("run-1", 1, block(100, 100)))
    feed(c, data("run-1", 0, block(0, 100)))
    feed(c, data("run-1", 0, block(0, 1), final=True))
    assert [(ch.carrier, ch.number, ch.final, ch.values.shape) for ch in seen] == [
        (A, 1, False, (100, 2)), (A, 0, False, (100, 2)), (A, 0, True, (1, 2))]
    np.testing.assert_array_equal(seen[0].values, block(100, 100))


def test_a_raising_on_chunk_fails_the_run_with_its_exception():
    def boom(chunk):
        raise ValueError("consumer broke")

    _clock, c, out = collector(on_chunk=boom)
    feed(c, data("run-1", 0, block(0, 100)))
    assert out[0].check(ValueError)
    assert c.phase == "failed"


def test_malformed_and_mismatched_chunks_are_counted_not_kept():
    _clock, c, _out = collector()
    bad = data("run-1", 0, block(0, 100))
    bad.message_v1.run_data_message.data.data = b"\x00" * 7
    feed(c, bad)
    feed(c, data("run-1", 1, block(100, 100, channels=2)))
    feed(c, data("run-1", 2, block(200, 100, channels=3)))
    r = c.result(None, "udp")
    assert r.malformed == 2
    assert r[A].chunks == 1


def test_data_for_an_unlisted_carrier_is_kept_but_not_waited_for():
    _clock, c, out = collector((A,), op_time=0.01)
    feed(c, data("run-1", 0, block(0, 100), "EE-EE-EE-EE-EE-EE"))
    feed(c, data("run-1", 0, block(0, 100), A))
    feed(c, data("run-1", 0, block(0, 1), A, final=True))
    finish_states(c)
    assert out == [None]
    r = c.result(None, "udp")
    assert set(r.carriers) == {A, "EE-EE-EE-EE-EE-EE"}
    assert r["EE-EE-EE-EE-EE-EE"].samples.shape == (100, 2)


def test_states_overtaking_nothing_and_history_is_recorded():
    clock, c, _out = collector((A,), channels=0)
    clock.advance(0.5)
    feed(c, state("run-1", pb.NEW, pb.TAKE_OFF, A))
    (h,) = c.result(None, "tcp").states
    assert (h.at, h.carrier, h.old, h.new) == (0.5, A, "NEW", "TAKE_OFF")


def test_cancel_stops_timers_and_ignores_later_input():
    clock, c, out = collector()
    c.cancel()
    clock.advance(100)
    feed(c, data("run-1", 0, block(0, 100)))
    assert out == [] and c.phase == "cancelled"
    assert clock.getDelayedCalls() == []


def test_run_spec_builds_the_reference_start_command():
    spec = RunSpec(op_time=0.002, ic_time=100e-6, channels=4, sample_rate=100_000)
    cmd = spec.command("rid", "00-00-00-00-00-0A")
    assert cmd.run.id == "rid" and cmd.run.chunk == 0
    assert (cmd.run_config.op_time.value, cmd.run_config.op_time.prefix) == (2_000_000, pb.NANO)
    assert cmd.run_config.ic_time.value == 100_000
    assert cmd.run_config.write_run_state_changes and cmd.run_config.streaming
    assert (cmd.daq_config.num_channels, cmd.daq_config.sample_rate) == (4, 100_000)
    assert cmd.daq_config.sample_op and cmd.daq_config.sample_op_end
    assert cmd.sync_config.enabled and cmd.sync_config.master.path == "00-00-00-00-00-0A"


@pytest.mark.parametrize("kwargs", [{"op_time": 0}, {"op_time": -1}, {"op_time": 1, "channels": -1},
                                    {"op_time": 1, "ic_time": -1}])
def test_run_spec_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        RunSpec(**kwargs)

"""Fault injection of the simulated device: drop, reorder, stall, disconnect, error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.device_harness import Harness, data_messages, kinds, start_run_command, states

from pybrid import samples
from pybrid.device import DeviceConfig, Faults, expected
from pybrid.proto import pb

C1, C2 = "/00-00-00-00-00-01", "/00-00-00-00-00-02"


def _udp_run(faults: Faults, *, carriers: int = 1, op_ns: int = 100_000_000) -> Harness:
    h = Harness(DeviceConfig(carriers=carriers, faults=faults, tick=0.0001))
    h.reply("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=5000))
    h.request("start_run_command", start_run_command(rate=10_000, op_ns=op_ns))
    return h


def _chunks(h: Harness, path: str = C1) -> list[int]:
    return [m.run.chunk for m in data_messages(h.udp().envelopes()) if m.entity.path == path]


def test_drop_withholds_a_seeded_counted_fraction() -> None:
    runs = []
    for seed in (7, 7, 8):
        h = _udp_run(Faults(drop=0.3, seed=seed), carriers=2, op_ns=1_000_000_000)
        h.clock.advance(1.1)
        c = h.device.counters
        got = _chunks(h, C1) + [j + 1000 for j in _chunks(h, C2)]
        assert c.chunks_sent + c.chunks_dropped == 200
        assert c.chunks_sent == len(got)
        assert 30 < c.chunks_dropped < 90
        assert states(h.udp().envelopes())[-1][1] == "DONE"
        for m in data_messages(h.udp().envelopes()):  # what arrives is still right
            idx = 0 if m.entity.path == C1 else 1
            assert np.array_equal(samples.decode(m.data),
                                  expected(idx, 2, m.run.chunk * 100, 100))
        runs.append(got)
    assert runs[0] == runs[1]  # same seed, same losses
    assert runs[0] != runs[2]


def test_reorder_swaps_neighbours_and_loses_nothing() -> None:
    h = _udp_run(Faults(reorder=0.2, seed=3), op_ns=1_000_000_000)
    h.clock.advance(1.1)
    got = _chunks(h)
    assert sorted(got) == list(range(100))
    assert got != list(range(100))
    swaps = sum(1 for a, b in itertools.pairwise(got) if b < a)
    assert swaps == h.device.counters.chunks_reordered > 0
    assert max(abs(pos - j) for pos, j in enumerate(got)) == 1


def test_stall_pauses_emission_then_resumes() -> None:
    h = _udp_run(Faults(stall_after_chunks=3, stall_seconds=0.5), op_ns=100_000_000)
    h.clock.advance(0.05)
    assert _chunks(h) == [0, 1, 2]
    h.clock.advance(0.47)  # still inside the stall (0.03 … 0.53)
    assert _chunks(h) == [0, 1, 2]
    h.clock.advance(0.0502)  # pacing resumed, shifted by the stall
    assert _chunks(h) == [0, 1, 2, 3, 4]
    h.clock.advance(0.1)
    assert _chunks(h) == list(range(10))
    assert states(h.udp().envelopes())[-1][1] == "DONE"
    assert h.device.counters.stalls == 1


def test_disconnect_mid_run_aborts_connection_and_run() -> None:
    h = _udp_run(Faults(disconnect_after_chunks=4))
    h.clock.advance(0.2)
    assert _chunks(h) == [0, 1, 2, 3]
    assert h.transport.disconnecting  # loseConnection after the 4th chunk
    h.protocol.connectionLost(None)
    assert h.device.run is None
    assert h.clock.getDelayedCalls() == []
    c = h.device.counters
    assert (c.disconnects, c.runs_aborted, c.runs_done) == (1, 1, 0)


@pytest.mark.parametrize("after", [0, 5])
def test_error_mid_run_goes_to_error_with_a_reason(after: int) -> None:
    h = _udp_run(Faults(error_after_chunks=after), carriers=2)
    h.clock.advance(0.2)
    envs = h.udp().envelopes()
    assert _chunks(h, C2) == list(range(after))
    assert states(envs)[-2:] == [("OP", "ERROR", C1), ("OP", "ERROR", C2)]
    last = envs[-1].message_v1.run_state_change_message
    assert last.reason == f"simulated fault: error after {after} chunks"
    assert "run_data_end_message" not in kinds(envs)
    assert h.device.run is None and h.device.counters.runs_failed == 1


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="drop must be a fraction"):
        Faults(drop=1.5)
    with pytest.raises(ValueError, match="needs a positive stall_seconds"):
        Faults(stall_after_chunks=3)
    with pytest.raises(ValueError, match="needs stall_after_chunks"):
        Faults(stall_seconds=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        Faults(error_after_chunks=-1)

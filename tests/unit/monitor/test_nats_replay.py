"""A run's NATS messages → the client's RunResult (pybrid.monitor.nats_replay.RunAssembler)."""

from __future__ import annotations

import numpy as np

from pybrid.monitor.nats_replay import RunAssembler
from pybrid.recording.npz import NpzRecorder
from pybrid.wire import nats_format as N

PATH = "/00-00-00-00-00-07/0"
MAC = "00-00-00-00-00-07"


def start() -> bytes:
    return N.encode_json({"format": N.FORMAT, "version": 1, "run_id": "r", "proxy": "p",
                          "carriers": ["/" + MAC]})


def layout(gains=(1.0, 1.0), offsets=(0.0, 0.0)) -> bytes:
    return N.encode_json({"carrier": 0, "path": PATH, "dtype": "<i2", "channels": 2,
                          "gains": list(gains), "offsets": list(offsets), "probes": [5, 6]})


def chunk(number: int, n: int = 4, flags: int = 0, gain: float = 0.5,
          offset: float = 0.0) -> bytes:
    raw = (np.arange(n * 2, dtype="<i2") + 10 * number).reshape(n, 2)
    return N.chunk_header(0, number, n, 2, 3, gain, offset, flags) + raw.tobytes()


def end(condition: str = "complete") -> bytes:
    return N.encode_json({"run_id": "r", "condition": condition, "reason": "", "missing": {},
                          "export_dropped": 0, "tap_gaps": 0})


def test_chunks_are_placed_by_number_with_nan_rows_for_missing_ones():
    a = RunAssembler("r")
    for kind, data in (("start", start()), ("layout", layout()), ("chunk", chunk(2)),
                       ("chunk", chunk(0)), ("chunk", chunk(3, n=1)), ("chunk", chunk(0))):
        assert not a.add(kind, data)
    assert a.add("state", N.encode_json({"path": "/" + MAC, "state": "DONE", "reason": ""})) \
        is False
    assert a.add("chunk", chunk(9, n=1, flags=N.FLAG_END_MESSAGE))  is False
    assert a.add("end", end("incomplete"))
    r = a.result()
    c = r[MAC]
    assert c.samples.dtype == np.float32 and c.samples.shape == (13, 2)
    np.testing.assert_array_equal(c.samples[:4], np.arange(8).reshape(4, 2) * 0.5)
    assert np.isnan(c.samples[4:8]).all()
    np.testing.assert_array_equal(c.samples[8:12], (np.arange(8).reshape(4, 2) + 20) * 0.5)
    assert c.missing_chunks == (1,) and c.duplicate_chunks == 1 and c.chunks == 3
    assert c.probes == (5, 6) and c.states == ("DONE",)
    np.testing.assert_array_equal(c.final, [45.0, 45.5])
    assert r.meta.extra["condition"] == "incomplete" and r.run_id == "r"


def test_per_channel_gains_come_from_the_layout():
    a = RunAssembler("r")
    a.add("start", start())
    a.add("layout", layout(gains=(1.0, 2.0), offsets=(0.0, 1.0)))
    a.add("chunk", chunk(0, n=1, flags=N.FLAG_PER_CHANNEL))
    np.testing.assert_array_equal(a.result()[MAC].samples, [[0.0, 3.0]])


def test_a_malformed_chunk_is_counted_not_placed():
    a = RunAssembler("r")
    a.add("start", start())
    a.add("chunk", b"PBC1 short")
    assert a.malformed == 1 and a.result().carriers == {}


def test_a_recorder_sink_gets_the_run(tmp_path):
    path = tmp_path / "r.npz"
    a = RunAssembler("r", NpzRecorder(str(path)))
    for kind, data in (("start", start()), ("layout", layout()), ("chunk", chunk(0)),
                       ("end", end())):
        a.add(kind, data)
    a.finish()
    with np.load(path) as f:
        np.testing.assert_array_equal(f[f"{MAC}/samples"], np.arange(8).reshape(4, 2) * 0.5)


def test_a_message_of_several_chunk_records_places_each():
    a = RunAssembler("r")
    a.add("start", start())
    a.add("layout", layout())
    a.add("chunk", chunk(1) + chunk(0))
    np.testing.assert_array_equal(a.result()[MAC].samples[4:],
                                  (np.arange(8).reshape(4, 2) + 10) * 0.5)


def test_subscribing_retries_while_the_cluster_elects_a_leader():
    import asyncio

    import nats.errors
    import pytest

    from pybrid.monitor.nats_replay import subscribe

    class Js:
        calls = 0

        async def subscribe(self, subject, **kw):
            self.calls += 1
            if self.calls < 3:
                raise nats.errors.TimeoutError
            return ("sub", subject, kw["deliver_policy"])

    js = Js()
    assert asyncio.run(subscribe(js, "pybrid.>", "all", patience=5)) == ("sub", "pybrid.>",
                                                                          "all")
    assert js.calls == 3
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(subscribe(Js(), "pybrid.>", "all", patience=0))


def test_the_start_configuration_gives_the_rate_and_trailing_nan_rows():
    a = RunAssembler("r")
    body = dict(N.decode_json(start()), sample_rate=1000, channels=2, op_time_ns=20_000_000,
                expected_samples=20, proxy_run_id="p1")
    a.add("start", N.encode_json(body))
    a.add("layout", layout())
    a.add("chunk", chunk(0))
    a.add("chunk", chunk(1))  # chunks 2 … 4 (20 samples of 4) never came
    a.add("end", end("incomplete"))
    r = a.result()
    c = r[MAC]
    assert r.sample_rate == 1000 and c.expected_samples == 20
    assert c.samples.shape == (20, 2) and np.isnan(c.samples[8:]).all()
    assert c.missing_chunks == (2, 3, 4) and not c.complete
    assert r.meta.extra["op_time_ns"] == 20_000_000 and r.meta.extra["proxy_run_id"] == "p1"


def test_state_changes_before_the_first_chunk_are_the_carriers_too():
    a = RunAssembler("r")
    a.add("start", start())
    a.add("layout", layout())
    for state in ("IC", "OP"):
        a.add("state", N.encode_json({"path": "/" + MAC, "state": state, "reason": ""}))
    a.add("chunk", chunk(0))
    a.add("state", N.encode_json({"path": "/" + MAC, "state": "DONE", "reason": ""}))
    a.add("end", end())
    r = a.result()
    assert r[MAC].states == ("IC", "OP", "DONE")
    assert [(s.carrier, s.new) for s in r.states] == [(MAC, "IC"), (MAC, "OP"), (MAC, "DONE")]

"""Live view frames round trip; view requests are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pybrid.recording.envelope import Envelope, envelope
from pybrid.wire import live_frames as frames


def test_a_frame_round_trips_with_times_in_seconds_and_nan_gaps():
    data = np.arange(40, dtype=np.float64).reshape(20, 2)
    data[4:8] = np.nan
    env = envelope(data, 10, first_row=100)
    raw = frames.encode(env, 1000, {"run": {"id": "r<1>"}}, 5.0, 4.5, math.nan, frames.FLAG_ENDED)
    fr = frames.decode(raw)
    assert (fr.t0, fr.t1, fr.sent_at, fr.arrived_at) == (0.1, 0.12, 5.0, 4.5)
    assert math.isnan(fr.end_t) and fr.flags == frames.FLAG_ENDED
    assert fr.meta == {"run": {"id": "r<1>"}}
    assert fr.lo.shape == (2, 10)
    np.testing.assert_allclose(fr.lo[0], env.lo[:, 0], rtol=0, atol=fr.step[0])
    np.testing.assert_allclose(fr.hi[1], env.hi[:, 1], rtol=0, atol=fr.step[1])
    assert np.isnan(fr.lo[:, 2:4]).all() and np.isnan(fr.hi[:, 2:4]).all()
    assert not np.isnan(fr.lo[:, 4:]).any()


def test_codes_never_shorten_a_stroke_and_lengthen_it_by_at_most_a_step():
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((5000, 3)) * [1.0, 1e-3, 1e4] + [0.0, 7.0, -3e5]
    rows[100] = [40.0, 7.5, 2e5]  # one-sample spikes
    env = envelope(rows, 1000)
    fr = frames.decode(frames.encode(env, 1000, {}, 0.0, 0.0, math.nan, 0))
    for k in range(3):
        assert (fr.lo[k] <= env.lo[:, k]).all() and (fr.hi[k] >= env.hi[:, k]).all()
        assert (env.lo[:, k] - fr.lo[k] <= fr.step[k] * 1.0001).all()
        assert (fr.hi[k] - env.hi[:, k] <= fr.step[k] * 1.0001).all()
        assert np.isclose(fr.hi[k].max(), env.hi[:, k].max(), rtol=1e-12, atol=0)
        assert np.isclose(fr.lo[k].min(), env.lo[:, k].min(), rtol=1e-12, atol=0)
    assert len(frames.encode(env, 1000, {}, 0.0, 0.0, math.nan, 0)) < 2 * 1000 * 3 * 2 + 200


def test_constant_empty_and_infinite_channels_encode():
    lo = np.array([[1.5, np.nan, -np.inf], [1.5, np.nan, 0.0], [1.5, np.nan, 1.0]])
    hi = np.array([[1.5, np.nan, 2.0], [1.5, np.nan, np.inf], [1.5, np.nan, 1.0]])
    env = Envelope(np.arange(3), np.arange(1, 4), lo, hi, 1)
    fr = frames.decode(frames.encode(env, 10, {}, 0.0, 0.0, math.nan, 0))
    np.testing.assert_array_equal(fr.lo[0], [1.5] * 3)  # constant: exact
    assert np.isnan(fr.lo[1]).all() and np.isnan(fr.hi[1]).all()  # no value at all: a gap
    assert fr.lo[2, 0] == 0.0 and fr.hi[2, 1] == 2.0  # ±inf: clipped to the finite range


@pytest.mark.parametrize("text", ["nope", "[1]", '{"columns": 0}', '{"columns": "x"}',
                                  '{"channels": []}', '{"window": -1}', '{"window": "nan"}',
                                  '{"channels": [5000]}'])
def test_bad_requests_are_refused(text):
    with pytest.raises(frames.BadRequest):
        frames.ViewRequest.parse(text)


def test_a_request_parses():
    req = frames.ViewRequest.parse('{"carrier": "/a", "channels": [1, 3], "window": 0.01,'
                                   ' "columns": 900, "paused": true}')
    assert req == frames.ViewRequest("", "/a", (1, 3), 0.01, 900, True)

"""Live view frames round trip; view requests are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pybrid.recording.envelope import envelope
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
    np.testing.assert_array_equal(fr.lo[0], env.lo[:, 0].astype(np.float32))
    np.testing.assert_array_equal(fr.hi[1], env.hi[:, 1].astype(np.float32))
    assert np.isnan(fr.lo[:, 2:4]).all()


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

"""A lane's vocabulary: its transition table (walked through a real lane) and the reconnect
backoff as a pure function."""

from __future__ import annotations

import pytest
from support.machines import walk

from pybrid.proxy.backend.lane import BackendLane
from pybrid.proxy.backend.model import LANE, LaneState, backoff_delay
from pybrid.proxy.backendfile import Backend


def test_lane_table_walk(reactor, events):
    def make(state):
        lane = BackendLane(Backend("127.0.0.1", 5999), reactor, events, events)
        lane.state = state
        return lane

    refused = walk(LANE, LaneState, make=make, fire=lambda lane, event: lane._to(event),
                   read=lambda lane: lane.state)
    assert refused == 5 * 8 - 12  # 12 transitions out of 5 states × (7 events + 1 unknown)


def test_backoff_grows_by_the_factor_up_to_the_cap():
    delays = [backoff_delay(n, 0.5, 1.5, 5.0) for n in range(1, 10)]
    assert delays[:4] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert delays[-1] == 5.0 and delays == sorted(delays)
    assert max(delays) == 5.0


def test_backoff_of_a_backend_down_for_days_stays_at_the_cap():
    assert backoff_delay(100_000, 0.5, 1.5, 5.0) == 5.0  # 1.5 ** 99999 overflows a float


def test_backoff_jitter_spreads_around_the_delay():
    assert backoff_delay(1, 2.0, 2.0, 10.0, jitter=0.5, random_value=0.0) == 1.0
    assert backoff_delay(1, 2.0, 2.0, 10.0, jitter=0.5, random_value=0.5) == 2.0
    assert backoff_delay(1, 2.0, 2.0, 10.0, jitter=0.5, random_value=1.0) == 3.0
    assert backoff_delay(9, 2.0, 2.0, 10.0, jitter=0.1, random_value=1.0) == pytest.approx(11.0)
    assert backoff_delay(3, 2.0, 2.0, 10.0, random_value=0.9) == 8.0  # no jitter: no change


@pytest.mark.parametrize("args", [
    (0, 0.5, 1.5, 5.0), (1, 0.0, 1.5, 5.0), (1, 0.5, 0.9, 5.0), (1, 0.5, 1.5, -1.0),
    (1, 0.5, 1.5, 5.0, 1.5), (1, 0.5, 1.5, 5.0, 0.1, 2.0), (1, float("nan"), 1.5, 5.0),
])
def test_backoff_refuses_bad_arguments(args):
    with pytest.raises(ValueError, match="backoff"):
        backoff_delay(*args)

"""pybrid.monitor.shm_console: the ``--web`` hand-off from the reading loop to the web thread."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from pybrid.monitor import shm_console as C
from pybrid.monitor.decode import MonitorRun
from pybrid.monitor.shm import ShmChunk


class _Live:
    """Records what the web thread hands the live view (blocks and run boundaries)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.watchers = 1

    def block(self, run_id: str, path: str, number: int, values: np.ndarray, at: float,
              chunks: int = 1) -> None:
        self.calls.append(("block", run_id, path, number, values.copy(), at, chunks))

    def run(self, run: MonitorRun) -> None:
        self.calls.append(("run", run.event))


def _thread() -> Any:
    web = object.__new__(C.WebThread)  # no reactor thread: _take is called directly
    web.live = _Live()
    web.pending = collections.deque()
    web.queued = 0
    web.dropped = 0
    return web


def _chunk(web: Any, number: int, path: str = "/c0", at: float = 0.0,
           gain: Any = None, offset: Any = None) -> None:
    raw = np.full((2, 3), number, np.float32)
    web.pending.append((C._CHUNK, "run-a", path, number, raw, gain, offset, at, 1))
    web.queued += 1


def test_consecutive_chunks_of_a_carrier_reach_the_store_as_one_block_in_order() -> None:
    web = _thread()
    gain, offset = np.full(3, 2.0), np.full(3, 1.0)
    web.pending.append((C._RUN, MonitorRun("run-start", "run-a", {}, 1)))
    for n in (0, 1, 2):
        _chunk(web, n, at=10.0 + n, gain=gain, offset=offset)
    _chunk(web, 4, at=14.0, gain=gain, offset=offset)  # chunk 3 lost: a new block
    _chunk(web, 5, path="/c1", at=15.0, gain=gain, offset=offset)  # another carrier
    web.pending.append((C._RUN, MonitorRun("run-end", "run-a", {}, 9)))

    web._take()

    calls = web.live.calls
    assert [c[0] for c in calls] == ["run", "block", "block", "block", "run"]
    assert calls[0][1] == "run-start" and calls[-1][1] == "run-end"
    _k, run_id, path, number, values, at, chunks = calls[1]
    assert (run_id, path, number, chunks, at) == ("run-a", "/c0", 0, 3, 12.0)
    assert values.shape == (6, 3)  # gain and offset applied once to the whole block
    np.testing.assert_array_equal(values[:, 0], [1, 1, 3, 3, 5, 5])
    assert calls[2][2:4] == ("/c0", 4) and calls[2][6] == 1
    assert calls[3][2:4] == ("/c1", 5)
    assert not web.pending and web.queued == 0


def test_a_format_change_starts_a_new_block_and_a_full_queue_counts_what_it_drops() -> None:
    web = _thread()
    g1, g2, off = np.ones(3), np.full(3, 3.0), np.zeros(3)
    _chunk(web, 0, gain=g1, offset=off)
    _chunk(web, 1, gain=g2, offset=off)  # other gains (another format): not one block
    web._take()
    assert [(c[3], c[6]) for c in web.live.calls] == [(0, 1), (1, 1)]
    np.testing.assert_array_equal(web.live.calls[1][4][:, 0], [3, 3])

    web.queued = C.HANDOFF_MAX  # the web thread that far behind
    web.event(ShmChunk(run=1, run_id="run-a", carrier=0, carrier_path="/c0", chunk=7,
                       raw=np.zeros((2, 3), np.float32), gain=g1, offset=off, probes=(),
                       end=False, seq=3))
    assert web.dropped == 1 and not web.pending

"""Chunk accounting (pybrid.proxy.data.sequence) and the router's bounded logging of drops."""

from __future__ import annotations

import uuid

import attrs
import pytest
from twisted.logger import globalLogPublisher

from pybrid.proto import pb
from pybrid.proxy.data.router import RouterCounters, RunRouter
from pybrid.proxy.data.sequence import REORDER_WINDOW, ChunkHoles, RunChunks
from pybrid.wire import messages

C0, C1 = "/00-00-00-00-00-0a", "/00-00-00-00-00-0b"


@attrs.define
class Target:
    session_id: str = "s1"
    delivered: list = attrs.field(factory=list)

    def deliver(self, payload):
        self.delivered.append(payload)

    def run_ended(self, run_id, state):
        pass


@attrs.define
class Lane:
    name: str = "127.0.0.1:5732"
    carriers: tuple = (C0,)


@pytest.fixture
def captured():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def data(run_id, chunk, path=C0):
    env = messages.v1("run_data_message")
    body = env.message_v1.run_data_message
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = path
    body.data.data = b"\x01" * 40
    body.data.sample_count = 10
    return env.SerializeToString()


def done(run_id):
    change = pb.RunStateChangeMessage(old=pb.OP_END, new_=pb.DONE)
    change.run.id = run_id
    return messages.v1("run_state_change_message", change).SerializeToString()


def play(order, window=REORDER_WINDOW):
    """Feed chunk numbers in ``order``; return (lost, reordered, late) after the close."""
    chunks = RunChunks("r", RouterCounters(), {})
    chunks.holes[b"c"] = ChunkHoles(window=window)
    expected = 0
    for n in order:
        if n == expected:
            expected += 1
            continue
        chunks.out_of_order(b"c", expected, n)
        expected = max(expected, n + 1)
    chunks.close()
    return chunks.lost.get("c", 0), chunks.reordered, chunks.late


@pytest.mark.parametrize(("order", "lost", "reordered", "late"), [
    ([0, 1, 2, 3], 0, 0, 0),
    ([0, 2, 1, 3], 0, 1, 0),  # swapped: reordered, not lost
    ([0, 3, 1, 2], 0, 2, 0),
    ([0, 3], 2, 0, 0),  # 1 and 2 never came
    ([0, 3, 1], 1, 1, 0),
    ([0, 1, 1, 2], 0, 0, 1),  # a duplicate
    ([0, 2, 1, 1], 0, 1, 1),
    ([5, 0, 1, 2, 3, 4], 0, 5, 0),
])
def test_gaps_are_the_chunks_never_received_and_nothing_counts_twice(order, lost, reordered,
                                                                      late):
    assert play(order) == (lost, reordered, late)


def test_a_chunk_later_than_the_window_is_late_and_stays_counted_lost():
    order = [0, 2, 3, 9, *range(4, 9), *range(10, 20), 1]  # chunk 1 comes 18 chunks late
    assert play(order, window=8) == (1, 5, 1)  # 1 aged out at the skip to 9
    assert play(order, window=32) == (0, 6, 0)


def test_settle_ages_holes_the_in_order_path_passed():
    chunks = RunChunks("r", RouterCounters(), {})
    chunks.holes[b"c"] = ChunkHoles(window=8)
    chunks.out_of_order(b"c", 1, 2)  # 1 skipped; then 3 … 19 arrive in order
    chunks.settle({b"c": 9})  # highest 8: 1 is only 7 behind
    assert chunks.totals.gaps == 0
    chunks.settle({b"c": 20})
    assert chunks.totals.gaps == 1 and chunks.gaps_by_carrier == {"c": 1}
    assert not chunks.out_of_order(b"c", 20, 1) and chunks.late == 1


def test_holes_stay_bounded_however_large_the_jump():
    holes = ChunkHoles(window=16)
    assert holes.skipped(0, 2**32 - 1) == 2**32 - 1 - 15  # the older ones are lost at once
    assert len(holes.open) == 15
    assert holes.arrived_late(2**32 - 2) and not holes.arrived_late(5)
    assert holes.close() == 14 and not holes.open


def test_the_router_counts_gaps_at_the_end_of_the_run_and_per_carrier():
    run_id = str(uuid.uuid4())
    router = RunRouter()
    router.register_run(run_id, Target(), [C0, C1])
    for n in (0, 2, 1, 5, 3):  # 4 never comes
        router.route_datagram(Lane(carriers=(C0, C1)), data(run_id, n))
    for n in (0, 1, 3):  # 2 never comes
        router.route_datagram(Lane(carriers=(C0, C1)), data(run_id, n, C1))
    assert router.counters.gaps == 0  # they may still come
    router.route_datagram(Lane(carriers=(C0, C1)), done(run_id))
    assert router.gaps_by_carrier == {C0: 1, C1: 1}
    assert (router.counters.gaps, router.counters.reordered, router.counters.late) == (2, 2, 0)
    router.route_datagram(Lane(carriers=(C0, C1)), data(run_id, 4))  # after the end: late
    assert (router.counters.gaps, router.counters.late) == (2, 1)


def test_gap_warnings_are_aggregated(captured):
    run_id = str(uuid.uuid4())
    router = RunRouter()
    router.register_run(run_id, Target(), [C0])
    for n in range(0, 6000, 2):  # every other chunk lost: 2 999 skips
        router.route_datagram(Lane(), data(run_id, n))
    router.forget_run(run_id)
    assert router.counters.gaps == 2999
    lines = [e for e in captured if e.get("run") == run_id]
    assert [e["skips"] for e in lines if "skips" in e] == [1, 1000, 2000]
    [summary] = [e for e in lines if "lost" in e]
    assert summary["lost"] == 2999 and summary["by_carrier"] == {C0: 2999}


@pytest.mark.parametrize("kind", ["unparseable", "unexpected", "foreign"])
def test_a_flood_from_the_backend_is_counted_exactly_but_logged_sparingly(captured, kind):
    router = RunRouter()
    router.register_run(str(uuid.uuid4()), Target(), [C0])
    for n in range(3000):
        if kind == "unparseable":
            raw = b"\xff" + n.to_bytes(2, "big")
        elif kind == "unexpected":
            raw = messages.success(id=str(n)).SerializeToString()
        else:
            raw = data(str(uuid.uuid4()), n)  # a new unknown run id every time
        router.route_datagram(Lane(), raw)
    counters = router.counters
    count = {"unparseable": counters.unparseable, "unexpected": counters.unexpected_kind,
             "foreign": counters.foreign_run}[kind]
    assert count == 3000 and counters.forwarded == 0
    lines = [e for e in captured if "count" in e and e.get("log_namespace", "").endswith(
        "RunRouter")]
    assert [e["count"] for e in lines] == [1, 2, 3, 1000, 2000, 3000]
    # a new run starts the count for the log afresh: the next drop is logged again
    router.register_run(str(uuid.uuid4()), Target(), [C0])
    router.route_datagram(Lane(), b"\xff\xff" if kind == "unparseable" else raw)
    if kind != "foreign":
        assert len([e for e in captured if e.get("count") == 3001]) == 1

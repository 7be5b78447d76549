"""The run router: run-id filtering, per-carrier state stamping, chunk gaps, run end."""

from __future__ import annotations

import attrs
import pytest

from pybrid.proto import pb
from pybrid.proxy.data.router import RunRouter, carrier_of
from pybrid.wire import messages

C0, C1 = "/00-00-00-00-00-00", "/00-00-00-00-00-01"


@attrs.define
class Target:
    session_id: str = "s1"
    delivered: list = attrs.field(factory=list)
    ended: list = attrs.field(factory=list)

    def deliver(self, payload):
        self.delivered.append(payload)

    def run_ended(self, run_id, state):
        self.ended.append((run_id, state))

    def envelopes(self):
        out = []
        for raw in self.delivered:
            env = pb.Envelope()
            env.ParseFromString(raw)
            out.append(env)
        return out


@attrs.define
class Lane:
    name: str = "127.0.0.1:5732"
    carriers: tuple = (C0, C1)


def data(run_id, chunk, path=C0, end=False):
    kind = "run_data_end_message" if end else "run_data_message"
    env = messages.v1(kind, id=messages.new_id())
    body = getattr(env.message_v1, kind)
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = path
    body.data.data = b"\x00" * 32
    return env.SerializeToString()


def state(run_id, old, new, entity=None):
    change = pb.RunStateChangeMessage(old=old, new_=new)
    change.run.id = run_id
    if entity is not None:
        change.entity.path = entity
    return messages.v1("run_state_change_message", change, id=messages.new_id()).SerializeToString()


@pytest.fixture
def router():
    return RunRouter()


def test_data_of_a_registered_run_is_forwarded_byte_for_byte(router):
    target = Target()
    router.register_run("r1", target, [C0, C1])
    raw = data("r1", 0)
    router.route_datagram(Lane(), raw)
    assert target.delivered == [raw]
    assert router.counters.forwarded == 1


def test_data_of_unregistered_runs_is_dropped_and_counted(router):
    target = Target()
    router.register_run("mine", target, [C0])
    router.route_datagram(Lane(), data("dead-client-run", 0))
    router.route_datagram(Lane(), data("dead-client-run", 1))
    router.route_datagram(Lane(), state("dead-client-run", pb.OP, pb.OP_END))
    assert target.delivered == []
    assert router.counters.foreign_run == 3


def test_released_session_gets_nothing_more_and_unfinished_runs_are_reported(router):
    a, b = Target("a"), Target("b")
    router.register_run("ra", a, [C0])
    router.register_run("rb", b, [C0])
    router.route_datagram(Lane(carriers=(C0,)), state("rb", pb.OP_END, pb.DONE))
    assert router.release(a) == ["ra"]
    assert router.release(b) == []  # rb ended
    router.route_datagram(Lane(), data("ra", 0))
    assert a.delivered == []


def test_state_change_without_entity_becomes_one_stream_per_carrier(router):
    target = Target()
    router.register_run("r1", target, [C0, C1])
    router.route_datagram(Lane(), state("r1", pb.NEW, pb.TAKE_OFF))
    envs = target.envelopes()
    assert [e.message_v1.run_state_change_message.entity.path for e in envs] == [C0, C1]
    assert all(e.message_v1.run_state_change_message.new_ == pb.TAKE_OFF for e in envs)
    assert all(e.message_v1.run_state_change_message.run.id == "r1" for e in envs)


def test_state_change_with_entity_passes_unchanged(router):
    target = Target()
    router.register_run("r1", target, [C0, C1])
    raw = state("r1", pb.NEW, pb.TAKE_OFF, entity=C1 + "/0")
    router.route_datagram(Lane(), raw)
    assert target.delivered == [raw]


def test_run_ends_when_every_carrier_is_done(router):
    target = Target()
    router.register_run("r1", target, [C0, C1, "/other-backend"])
    router.route_datagram(Lane(), state("r1", pb.OP_END, pb.DONE))
    assert target.ended == []
    router.route_datagram(Lane(carriers=("/other-backend",)), state("r1", pb.OP_END, pb.DONE))
    assert target.ended == [("r1", pb.DONE)]


def test_run_ends_in_error_if_any_carrier_failed(router):
    target = Target()
    router.register_run("r1", target, [C0, C1])
    router.route_datagram(Lane(), state("r1", pb.OP, pb.ERROR, entity=C0))
    router.route_datagram(Lane(), state("r1", pb.OP_END, pb.DONE, entity=C1))
    assert target.ended == [("r1", pb.ERROR)]


def test_a_carrier_that_reached_its_final_state_gets_no_later_states(router):
    """The device's own states after the proxy's ERROR (a shutdown) are not delivered: a
    TAKE_OFF after ERROR means nothing, and the reference client tearing the run down when it
    arrives can hang (tests/interop/test_errors_reference.py)."""
    target = Target()
    router.register_run("r1", target, [C0, C1])
    router.route_datagram(Lane(), state("r1", pb.OP, pb.ERROR, entity=C0))
    router.route_datagram(Lane(), state("r1", pb.NEW, pb.TAKE_OFF))  # both carriers
    router.route_datagram(Lane(), state("r1", pb.TAKE_OFF, pb.IC, entity=C0))
    paths = [(e.message_v1.run_state_change_message.entity.path,
              e.message_v1.run_state_change_message.new_) for e in target.envelopes()]
    assert paths == [(C0, pb.ERROR), (C1, pb.TAKE_OFF)]
    assert router.counters.late_states == 2
    router.route_datagram(Lane(), state("r1", pb.OP, pb.ERROR, entity=C1))
    router.route_datagram(Lane(), state("r1", pb.TAKE_OFF, pb.OP))
    assert len(target.delivered) == 3 and router.counters.late_states == 4
    assert target.ended == [("r1", pb.ERROR)]


def test_chunk_gaps_are_counted_per_carrier(router):
    target = Target()
    router.register_run("r1", target, [C0, C1])
    for chunk in (0, 1, 4, 5):
        router.route_datagram(Lane(), data("r1", chunk, C0))
    for chunk in (0, 2, 1, 1):
        router.route_datagram(Lane(), data("r1", chunk, C1))
    # chunks 2 and 3 of C0 may still come: not lost yet; C1's chunk 1 came late, in time
    assert router.counters.gaps == 0 and router.gaps_by_carrier == {}
    assert router.counters.reordered == 1 and router.counters.late == 1  # and a duplicate
    assert len(target.delivered) == 8  # gaps are counted, nothing is held back
    router.route_datagram(Lane(), state("r1", pb.OP_END, pb.DONE))  # the run is over
    assert router.gaps_by_carrier == {C0: 2}
    assert router.counters.gaps == 2
    assert router.counters.reordered == 1 and router.counters.late == 1


def test_data_end_is_forwarded_without_touching_the_sequence(router):
    target = Target()
    router.register_run("r1", target, [C0])
    router.route_datagram(Lane(), data("r1", 0, end=True))
    router.route_datagram(Lane(), data("r1", 0))
    assert router.counters.gaps == 0 and len(target.delivered) == 2


def test_garbage_and_unexpected_kinds_are_counted(router):
    router.route_datagram(Lane(), b"\xff\xff\xff")
    router.route_datagram(Lane(), messages.success(id="x").SerializeToString())
    assert router.counters.unparseable == 1
    assert router.counters.unexpected_kind == 1


def test_carrier_of():
    assert carrier_of("/aa-bb/0/M0") == "/aa-bb"
    assert carrier_of("aa-bb") == "/aa-bb"
    assert carrier_of("/") == ""

"""The router's hot path (header match instead of a protobuf parse) and its monitor tap."""

from __future__ import annotations

import uuid

import attrs
import numpy as np
import pytest

from pybrid.device.encoding import ChunkEncoder, WireChannel
from pybrid.proto import pb
from pybrid.proxy.data import router as router_module
from pybrid.proxy.data.router import FLAG_TCP_LANE, RunRouter
from pybrid.proxy.data.sequence import REORDER_WINDOW
from pybrid.wire import messages
from pybrid.wire.layout import DATA_HEAD, chunk_number, layout_of
from pybrid.wire.monitor_header import FLAG_TCP_LANE as MONITOR_FLAG_TCP_LANE

C0, C1 = "/00-00-00-00-00-0a", "/00-00-00-00-00-0b"


@attrs.define
class Target:
    session_id: str = "s1"
    delivered: list = attrs.field(factory=list)
    ended: list = attrs.field(factory=list)

    def deliver(self, payload):
        self.delivered.append(payload)

    def run_ended(self, run_id, state):
        self.ended.append((run_id, state))


@attrs.define
class Lane:
    name: str = "127.0.0.1:5732"
    carriers: tuple = (C0, C1)
    index: int = 3


@attrs.define
class FakeTap:
    """A RunTap that records its events."""

    events: list = attrs.field(factory=list)

    def run_started(self, run):
        self.events.append(("start", run))

    def chunk(self, run, lane, lay, number, payload, flags):
        self.events.append(("chunk", run.client_id, lane, lay is not None, number, payload,
                            flags))

    def state_changed(self, run, lane, path, state, reason, payload, flags):
        self.events.append(("state", run.client_id, lane, path, state, payload, flags))

    def run_ended(self, run, end):
        self.events.append(("end", run.client_id, end.state))


def data(run_id, chunk, path=C0, end=False, msg_id=None, samples=b"\x01" * 64):
    kind = "run_data_end_message" if end else "run_data_message"
    env = messages.v1(kind, id=msg_id)
    body = getattr(env.message_v1, kind)
    body.run.id = run_id
    body.run.chunk = chunk
    body.entity.path = path
    body.data.data = samples
    body.data.sample_count = 1
    return env.SerializeToString()


def state(run_id, old, new, entity=None):
    change = pb.RunStateChangeMessage(old=old, new_=new)
    change.run.id = run_id
    if entity is not None:
        change.entity.path = entity
    return messages.v1("run_state_change_message", change).SerializeToString()


def outcome(router: RunRouter, target: Target) -> tuple:
    return (target.delivered, target.ended, attrs.asdict(router.counters),
            router.gaps_by_carrier)


CHUNKS = [0, 1, 2, 5, 4, 127, 128, 129, 16383, 16384, 16390, 2**21 + 5, 2**28 + 1]


def traffic(run_id: str) -> list[bytes]:
    out = [state(run_id, pb.NEW, pb.TAKE_OFF)]
    for chunk in CHUNKS:
        out.append(data(run_id, chunk, C0))
        out.append(data(run_id, chunk, C1, msg_id=str(uuid.uuid4())))
    out.append(data(run_id, 0, C0, end=True))
    out.append(data(str(uuid.uuid4()), 7))  # somebody else's run
    out.append(data("short-id", 3))  # not a UUID: the slow path
    out.append(b"\xaa\x06\x05garbage")
    out.append(state(run_id, pb.OP_END, pb.DONE))
    return out


def test_fast_path_matches_the_layout_of_serialized_data_messages():
    run_id = str(uuid.uuid4())
    for chunk in CHUNKS:
        for msg_id in (None, str(uuid.uuid4())):
            for end in (False, True):
                raw = data(run_id, chunk, C1, end=end, msg_id=msg_id)
                lay = layout_of(raw)
                assert lay is not None, (chunk, msg_id, end)
                assert raw[lay.run_at : lay.run_at + 36] == run_id.encode()
                assert lay.path == C1.encode() and lay.length == len(raw)
                assert lay.tag == (0x9A if end else 0x92)
                varint = raw[lay.chunk_at : lay.chunk_at + lay.chunk_len]
                assert (chunk_number(varint) if varint else 0) == chunk
                assert (lay.id_at >= 0) == (msg_id is not None)
                if msg_id is not None:
                    assert raw[lay.id_at : lay.id_at + 36] == msg_id.encode()
                daq = pb.DaqData(sample_count=1)
                assert lay.tail == daq.SerializeToString()  # what follows the samples
    assert DATA_HEAD.match(state(run_id, pb.OP, pb.DONE)) is None
    assert DATA_HEAD.match(data("r1", 1)) is None


def test_fast_path_matches_the_simulated_devices_chunks():
    run_id = str(uuid.uuid4())
    wire = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(8))
    encoder = ChunkEncoder(run_id, C0, wire, "i16", 2)
    raw = np.zeros((100, 8), dtype="<i2").tobytes()
    assert layout_of(encoder.encode(300, raw, 100)) is not None
    target, router = Target(), RunRouter()
    router.register_run(run_id, target, [C0])
    for chunk in (0, 1, 2, 300, 299):
        router.route_datagram(Lane(), encoder.encode(chunk, raw, 100))
    assert router.counters.forwarded == 5
    # 3 … 298 are missing; those REORDER_WINDOW below 300 are already counted lost
    assert router.gaps_by_carrier == {C0: 300 - REORDER_WINDOW - 3 + 1}
    assert router.counters.reordered == 1  # 299 came after 300, in time
    router.forget_run(run_id)
    assert router.gaps_by_carrier == {C0: 296} and router.counters.gaps == 296
    assert router.counters.reordered == 1 and router.counters.late == 0


def _both_paths(monkeypatch, run_id: str, sent: list[bytes]) -> list[tuple]:
    results = []
    with monkeypatch.context() as patch:
        for fast in (True, False):
            if not fast:
                patch.setattr(router_module, "layout_of", lambda payload: None)
            target, router = Target(), RunRouter()
            router.register_run(run_id, target, [C0, C1])
            for raw in sent:
                router.route_datagram(Lane(), raw)
            router.forget_run(run_id)
            results.append(outcome(router, target))
    return results


def test_fast_and_slow_paths_give_the_same_result(monkeypatch):
    run_id = str(uuid.uuid4())
    results = _both_paths(monkeypatch, run_id, traffic(run_id))
    assert results[0] == results[1]
    _delivered, ended, counters, gaps = results[0]
    assert counters["forwarded"] == 2 * len(CHUNKS) + 1
    assert counters["foreign_run"] == 2 and counters["unparseable"] == 1
    assert ended == [(run_id, pb.DONE)]
    assert gaps[C0] == gaps[C1] > 0


def _damaged(raw: bytes) -> list[bytes]:
    """Every cut of ``raw``, one byte more, and every byte flipped in three ways."""
    out = [raw[:n] for n in range(len(raw))] + [raw + b"\x00", raw + b"\x08\x01"]
    for at in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(raw)
            damaged[at] ^= mask
            out.append(bytes(damaged))
    return out


@pytest.mark.parametrize("msg_id", [None, "id"])
@pytest.mark.parametrize("chunk", [0, 5, 300])
def test_damaged_datagrams_get_the_full_parse_s_verdict(monkeypatch, chunk, msg_id):
    """Cut, lengthened or any byte flipped: forwarded only if protobuf parses it (exactly as
    the full parse would route it), else counted unparseable; never an unparseable frame to
    the client."""
    run_id = str(uuid.uuid4())
    wire = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(2))
    good = ChunkEncoder(run_id, C0, wire, "i16", 2).encode(chunk, bytes(range(40)), 10)
    if msg_id:  # with a MessageV1 id, as protobuf writes it
        env = pb.Envelope.FromString(good)
        env.message_v1.id = str(uuid.uuid4())
        good = env.SerializeToString()
    assert layout_of(good) is not None
    sent = [good, *_damaged(good), good]  # the layout is learned from the first one
    fast, slow = _both_paths(monkeypatch, run_id, sent)
    assert fast == slow
    delivered, _ended, counters, _gaps = fast
    assert counters["unparseable"] > 0
    for raw in delivered:
        pb.Envelope.FromString(raw)  # the client can parse everything it gets
    assert counters["forwarded"] + counters["unparseable"] + counters["foreign_run"] + \
        counters["unexpected_kind"] == len(sent) - counters["states"]


def test_a_layout_is_learned_only_from_a_datagram_protobuf_accepts():
    """The fast path trusts only layouts of parsed datagrams: a damaged tail that protobuf
    rejects is never learned, and later datagrams are matched byte for byte."""
    run_id = str(uuid.uuid4())
    wire = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(2))
    good = ChunkEncoder(run_id, C0, wire, "f32", 4).encode(1, bytes(80), 10)
    lay = layout_of(good)
    assert lay is not None
    bad = bytearray(good)
    bad[len(good) - len(lay.tail)] = 0x07  # the tail's first tag: wire type 7 does not exist
    assert layout_of(bytes(bad)) is not None  # the head alone is fine
    target, router = Target(), RunRouter()
    router.register_run(run_id, target, [C0])
    for raw in (bytes(bad), bytes(bad), good, good, bytes(bad)):
        router.route_datagram(Lane(), raw)
    assert router.counters.unparseable == 3 and router.counters.forwarded == 2
    assert target.delivered == [good, good]


@pytest.mark.parametrize(("varint", "value"), [
    (b"\x05", 5), (b"\x85\x01", 133), (b"\x80\x80\x01", 16384),
    (b"\xff\xff\xff\xff\x7f", 2**32 - 1), (b"\x80\x00", 0),
    (b"\x85", -1), (b"\x05\x01", -1), (b"\x85\x85\x05\x01", -1), (b"\x80\x80\x80", -1),
])
def test_chunk_varints_are_read_and_checked(varint, value):
    assert chunk_number(varint) == value
    if value >= 0:  # as protobuf reads it
        assert pb.Run.FromString(b"\x10" + varint).chunk == value


def test_tcp_lane_and_udp_lane_count_chunks_alike():
    run_id = str(uuid.uuid4())
    targets, routers = [], []
    for lane_kind in ("udp", "tcp"):
        target, router = Target(), RunRouter()
        router.register_run(run_id, target, [C0])
        for chunk in (0, 1, 3, 2, 4):
            raw = data(run_id, chunk)
            if lane_kind == "udp":
                router.route_datagram(Lane(), raw)
            else:
                router.route_message(Lane(), pb.Envelope.FromString(raw), raw)
        targets.append(target)
        routers.append(router)
    assert targets[0].delivered == targets[1].delivered
    assert routers[0].counters == routers[1].counters
    # chunk 2 came after 3, in time: reordered, not lost
    assert routers[0].counters.gaps == 0 and routers[0].counters.reordered == 1


def test_forget_and_release_stop_the_fast_path_too():
    run_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    target = Target()
    router = RunRouter()
    router.register_run(run_id, target, [C0])
    router.register_run(other, target, [C0])
    router.forget_run(run_id)
    router.route_datagram(Lane(), data(run_id, 0))
    assert router.release(target) == [other]
    router.route_datagram(Lane(), data(other, 0))
    assert target.delivered == [] and router.counters.foreign_run == 2


def test_a_run_registered_again_starts_a_fresh_sequence():
    run_id = str(uuid.uuid4())
    router = RunRouter()
    router.register_run(run_id, Target(), [C0])
    router.route_datagram(Lane(), data(run_id, 0))
    router.route_datagram(Lane(), data(run_id, 1))
    target = Target()
    router.register_run(run_id, target, [C0])
    router.route_datagram(Lane(), data(run_id, 0))
    assert router.counters.reordered == 0 and len(target.delivered) == 1


@pytest.mark.parametrize("same_id", [True, False])
def test_the_tap_gets_a_registered_runs_events_as_the_client_gets_them(same_id):
    tap = FakeTap()
    run_id = str(uuid.uuid4())
    client = run_id if same_id else str(uuid.uuid4())
    router = RunRouter(tap=tap)
    target = Target()
    router.register_run(run_id, target, [C0, C1], client_id=client,
                        meta={"sample_rate": 1000})
    for raw in traffic(run_id):
        router.route_datagram(Lane(index=3), raw)
    start = tap.events[0]
    assert start[0] == "start" and start[1].client_id == client and start[1].proxy_id == run_id
    assert start[1].carriers == (C0, C1) and start[1].meta == {"sample_rate": 1000}
    # every chunk and state the client got, in order, with the client's id; nothing else
    told = [e[-2] for e in tap.events if e[0] in ("chunk", "state")]
    assert told == target.delivered
    chunks = [e for e in tap.events if e[0] == "chunk"]
    assert all(e[1] == client and e[2] == 3 and e[6] == 0 for e in chunks)
    assert [e[4] for e in chunks[:4]] == [CHUNKS[0], CHUNKS[0], CHUNKS[1], CHUNKS[1]]
    assert any(e[3] for e in chunks)  # the fast path says where the samples are
    states = [e for e in tap.events if e[0] == "state"]
    assert [(e[3], e[4]) for e in states] == [(C0, pb.TAKE_OFF), (C1, pb.TAKE_OFF),
                                              (C0, pb.DONE), (C1, pb.DONE)]
    assert tap.events[-1] == ("end", client, pb.DONE)


def test_tcp_lane_messages_reach_the_tap_flagged():
    assert FLAG_TCP_LANE == MONITOR_FLAG_TCP_LANE
    tap = FakeTap()
    router = RunRouter(tap=tap)
    router.register_run("r1", Target(), [C0])
    raw = state("r1", pb.NEW, pb.TAKE_OFF, entity=C0)
    router.route_message(Lane(index=1), pb.Envelope.FromString(raw), raw)
    chunk = data("r1", 0)
    router.route_message(Lane(index=1), pb.Envelope.FromString(chunk), chunk)
    assert tap.events[1:] == [("state", "r1", 1, C0, pb.TAKE_OFF, raw, FLAG_TCP_LANE),
                              ("chunk", "r1", 1, False, 0, chunk, FLAG_TCP_LANE)]


def test_messages_the_proxy_writes_itself_and_foreign_runs_are_not_copied_to_the_tap():
    tap = FakeTap()
    router = RunRouter(tap=tap)
    target = Target()
    router.register_run("r1", target, [C0])
    raw = state("r1", pb.OP, pb.ERROR, entity=C0)
    router.route(Lane(), pb.Envelope.FromString(raw), raw)
    router.route_datagram(Lane(), data(str(uuid.uuid4()), 0))
    assert [e[0] for e in tap.events] == ["start", "end"] and target.delivered == [raw]


def test_a_run_released_unfinished_is_ended_for_the_tap_once():
    tap = FakeTap()
    router = RunRouter(tap=tap)
    target = Target()
    router.register_run("r1", target, [C0])
    router.release(target)
    router.release(target)
    assert tap.events[-1] == ("end", "r1", 0) and len(tap.events) == 2


def test_no_tap_no_emission():
    router = RunRouter()
    router.route_datagram(Lane(), data(str(uuid.uuid4()), 0))  # does not fail
    assert router.counters.foreign_run == 1


@pytest.mark.parametrize("chunk", [0, 1, 200, 70000])
def test_varint_chunk_decoding(chunk):
    run_id = str(uuid.uuid4())
    router = RunRouter()
    router.register_run(run_id, Target(), [C0])
    router.route_datagram(Lane(), data(run_id, chunk))
    assert router.counters.gaps == max(0, chunk - REORDER_WINDOW + 1)  # lost for sure
    router.forget_run(run_id)
    assert router.counters.gaps == chunk


def test_carriers_of_one_length_each_keep_their_layout(monkeypatch):
    """Two carriers whose datagrams have the same length: each layout is learned once, then
    both stay on the fast path (no full parse per datagram)."""
    calls = []
    real = router_module.layout_of
    monkeypatch.setattr(router_module, "layout_of", lambda p: calls.append(p) or real(p))
    run_id = str(uuid.uuid4())
    wire = tuple(WireChannel(i, 1.0, 0.0, i) for i in range(2))
    encoders = [ChunkEncoder(run_id, path, wire, "f32", 4) for path in (C0, C1)]
    target, router = Target(), RunRouter()
    router.register_run(run_id, target, [C0, C1])
    for chunk in range(1, 100):
        for encoder in encoders:
            router.route_datagram(Lane(), encoder.encode(chunk, bytes(80), 10))
    assert len(calls) == 2 and router.counters.forwarded == 198
    assert router.gaps_by_carrier == {} and router.counters.reordered == 0

"""One fuzz input against a whole in-memory proxy: the backend lane and the handshake.

The backend-side half of :mod:`support.fuzz_cases` (see its note for the checks):

* **backend lane** (:func:`backend_case`): random frames on the control connection and
  random datagrams (from the backend's address and from another one) while a client's run is
  in progress.  Every input lands in exactly one counter; the client gets exactly the messages
  of its run, byte for byte (state changes stamped per carrier); a framing violation — or a
  stream left inside a frame, which silences the backend — closes the lane, the client is told
  "Cluster degraded", the lane reconnects, and a full run works.
* **handshake** (:func:`handshake_case`): random answers to the start-up handshake.
"""

from __future__ import annotations

import random
import uuid

import attrs
from google.protobuf.message import DecodeError

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.framing import MAX_DATAGRAM, frame
from pybrid.wire.messages import FINAL_STATES
from pybrid.wire.paths import carrier_of
from support.fuzz_cases import MACS, Outcome, check_no_leftovers
from support.fuzz_inputs import (
    RUN_KINDS,
    Piece,
    StreamOracle,
    random_envelope,
    random_id,
    random_piece,
    split,
)
from support.fuzz_proxy import (
    AutoBackend,
    claim,
    close_client,
    data,
    full_run,
    lose_backend,
    proxy,
    reconnect,
    start_run_command,
    state,
)
from support.proxy_fakes import (
    FakeReactor,
    connect_backend,
    connect_client,
    device_bytes,
    spec_reply,
)

# -- the backend lane --------------------------------------------------------------------------


def _run_envelope(rnd: random.Random, run_id: str, paths: tuple[str, ...]) -> pb.Envelope:
    kind = rnd.choice(RUN_KINDS)
    rid = run_id if rnd.random() < 0.6 else rnd.choice(("", str(uuid.uuid4()), "x" * 300))
    path = rnd.choice(paths) if rnd.random() < 0.7 else rnd.choice(("", "/", "/zz/0", "//"))
    if kind == "run_state_change_message":
        env = state(rid, path, rnd.randrange(9), rnd.choice((pb.OP, pb.DONE, pb.ERROR, 77)))
        if rnd.random() < 0.3:
            env.message_v1.run_state_change_message.ClearField("entity")
        return env
    env = data(rid, path, rnd.choice((0, 1, 2, 7, 2**32 - 1)), rnd.choice((1, 2)),
               end=kind == "run_data_end_message")
    if rnd.random() < 0.2:
        env.message_v1.ClearField("id")
    return env


@attrs.define
class _Expect:
    """What the backend fuzz expects the proxy to count and forward."""

    registered: bool = True
    forwarded: int = 0
    states: int = 0
    foreign_run: int = 0
    unexpected: int = 0
    unparseable: int = 0
    foreign_addr: int = 0
    unsolicited: int = 0
    to_client: int = 0
    #: Carriers whose final state (DONE, ERROR) the client got: later states are not sent.
    finished: set[str] = attrs.Factory(set)
    ended: bool = False

    def route(self, env: pb.Envelope, run_id: str, paths: tuple[str, ...]) -> None:
        kind = env.message_v1.WhichOneof("kind")
        if kind not in RUN_KINDS:
            self.unexpected += 1
            return
        body = getattr(env.message_v1, kind)
        if not self.registered or body.run.id != run_id:
            self.foreign_run += 1
            return
        if kind == "run_state_change_message":
            self.states += 1
            stamped = body.HasField("entity") and body.entity.path
            targets = [carrier_of(body.entity.path)] if stamped else list(paths)
            kept = [p for p in targets if p not in self.finished]
            self.to_client += len(kept)
            if body.new_ in FINAL_STATES and not self.ended:
                self.finished.update(kept)
                self.ended = set(paths) <= self.finished
        else:
            self.forwarded += 1
            self.to_client += 1


def backend_case(rnd: random.Random, pieces: int = 16, full: bool = True,
                 damaged_heads: bool = True) -> Outcome:
    """One hostile backend during a client's run; see the module note.

    ``damaged_heads`` adds run data datagrams cut or damaged after their first 130 bytes
    (the router's fast path must leave them to the full parse: proxy/backend/test_lane_fuzz).
    """
    out = Outcome()
    reactor = FakeReactor()
    service, [backend] = proxy(reactor, carriers=[MACS])
    lane = service.lanes[0]
    paths = lane.carriers
    client = claim(service)
    run_id = str(uuid.uuid4())
    client.request("start_run_command", start_run_command(run_id), id="start")
    backend.pump()
    client_run, run_id = run_id, backend.device_ids[-1]  # the device streams the proxy's id
    client.frames()
    # a request in flight, so that the fuzz can answer (or not) the id the proxy gave it
    client.request("get_overload_status_command", id="pending")
    [pending] = [e for e in backend.fake.received()
                 if messages.kind_of(e) != "generic.ping_command"]
    backend.fake.inbox.clear()
    pending_id = pending.message_v1.id
    assert lane.intake is not None
    expect = _Expect()
    base = attrs.evolve(service.router.counters)
    base_frames = attrs.evolve(backend.fake.proto.counters)
    stream = bytearray()
    violated = False
    answered_pending = False
    for _ in range(pieces):
        roll = rnd.random()
        if roll < 0.45:  # a datagram
            if rnd.random() < 0.15:
                payload = rnd.randbytes(rnd.choice((0, 1, 50, MAX_DATAGRAM)))
                what = "datagram: random bytes"
            elif rnd.random() < 0.1:
                env = _run_envelope(rnd, run_id, paths)
                env.message_v1.run_data_message.data.data = rnd.randbytes(60_000)
                payload = env.SerializeToString()[:MAX_DATAGRAM]
                what = "datagram: near-maximum size"
            elif rnd.random() < 0.15:
                payload = random_envelope(rnd).SerializeToString()[:MAX_DATAGRAM]
                what = "datagram: random envelope"
            elif damaged_heads and rnd.random() < 0.15:
                good = bytearray(data(run_id, rnd.choice(paths), rnd.randrange(5), 2,
                                      end=rnd.random() < 0.2).SerializeToString())
                cut = rnd.randrange(130, len(good))
                if rnd.random() < 0.5:
                    del good[cut:]
                else:
                    good[cut] ^= 0xFF
                payload = bytes(good)
                what = "datagram: run data, damaged after its head"
            else:
                payload = _run_envelope(rnd, run_id, paths).SerializeToString()
                what = "datagram: run message"
            foreign = rnd.random() < 0.2
            out.inputs[what + (" from a foreign address" if foreign else "")] += 1
            if foreign:
                expect.foreign_addr += 1
                lane.intake.datagramReceived(payload, ("127.0.0.2", 40404))
                continue
            env = pb.Envelope()
            try:
                env.ParseFromString(payload)
            except DecodeError:
                expect.unparseable += 1
            else:
                expect.route(env, run_id, paths)
            lane.intake.datagramReceived(device_bytes(service.router, payload),
                                         (lane.intake.peer_host, 51000))
            continue
        if violated:
            continue
        if roll < 0.75:
            env = _run_envelope(rnd, run_id, paths)
            piece = Piece(frame(env.SerializeToString()), "frame: run message", env)
        elif roll < 0.85 and not answered_pending:
            env = random_envelope(rnd)
            if env.WhichOneof("kind") != "message_v1" or messages.kind_of(env) in RUN_KINDS:
                env = messages.v1(rnd.choice(("get_overload_status_response", "error_message",
                                              "busy_response", "extract_response")))
            env.message_v1.id = pending_id
            piece = Piece(frame(env.SerializeToString()), "frame: answer to a request", env)
        else:
            piece = random_piece(rnd)
            piece.what = "frame: " + piece.what
        out.inputs[piece.what] += 1
        before = len(stream)
        stream += piece.data
        oracle_before = StreamOracle.of(bytes(stream[:before]))
        oracle_after = StreamOracle.of(bytes(stream))
        for segment in split(rnd, piece.data, 3):
            backend.fake.proto.dataReceived(segment)
        for env in oracle_after.envelopes[len(oracle_before.envelopes):]:
            top = env.WhichOneof("kind")
            if top == "generic":
                continue
            msg = env.message_v1
            if msg.HasField("id") and msg.id == pending_id and not answered_pending:
                answered_pending = True
                continue
            if msg.WhichOneof("kind") in RUN_KINDS:
                expect.route(env, run_id, paths)
            else:
                expect.unsolicited += 1
        if oracle_after.oversized:
            violated = True
            assert backend.fake.transport.disconnecting, "a framing violation left the lane open"
            lose_backend(backend.fake)
            # the session is closed after a grace (its run's ERROR states go first); then its
            # run is released
            reactor.advance(service.config.timing.degrade_grace + 0.01)
            expect.registered = False
    oracle = StreamOracle.of(bytes(stream))
    assert oracle.matches(backend.fake.proto.counters, base_frames), (
        f"backend frame counters {backend.fake.proto.counters} != oracle {oracle}")
    got = attrs.evolve(service.router.counters)
    deltas = {
        "forwarded": (got.forwarded - base.forwarded, expect.forwarded),
        "states": (got.states - base.states, expect.states),
        "foreign_run": (got.foreign_run - base.foreign_run, expect.foreign_run),
        "unexpected_kind": (got.unexpected_kind - base.unexpected_kind, expect.unexpected),
        "unparseable": (got.unparseable - base.unparseable, expect.unparseable),
        "foreign address": (lane.intake.counters.foreign, expect.foreign_addr),
        "unsolicited": (lane.counters.unsolicited, expect.unsolicited),
    }
    spoken = 0
    if violated:
        # A backend lost mid-run: the proxy speaks for it, an ERROR state change per carrier
        # that had not finished (pybrid.proxy.runs.coordinator), routed like the backend's own.
        got_states, want_states = deltas.pop("states")
        spoken = got_states - want_states
        assert 0 <= spoken <= len(paths), f"states: got {got_states}, expected {want_states}"
    wrong = {k: v for k, v in deltas.items() if v[0] != v[1]}
    assert not wrong, f"counters (got, expected) differ: {wrong}"
    for name, (value, _) in deltas.items():
        out.results[name] += value
    received = client.frames()
    runs = [e for e in received if messages.kind_of(e) in RUN_KINDS]
    strangers = [e for e in runs if getattr(e.message_v1, messages.kind_of(e)).run.id != client_run]
    assert not strangers, f"the client received another run's traffic: {strangers[:2]}"
    assert expect.to_client <= len(runs) <= expect.to_client + spoken, (
        f"client got {len(runs)} run messages, expected {expect.to_client} (+{spoken})")
    replies = [e for e in received if messages.request_id(e) == "pending"]
    if not violated and oracle.leftover:
        # The stream stopped inside a frame: nothing more parses, pongs included.  The lane
        # must notice the silence, drop the connection and tell the client.
        out.inputs["frame: stream left inside a frame"] += 1
        for _ in range(10):
            reactor.advance(0.5)
            if backend.fake.transport.disconnecting:
                break
        assert backend.fake.transport.disconnecting, "a silent backend was not dropped"
        lose_backend(backend.fake)
        reactor.advance(service.config.timing.degrade_grace + 0.01)
        received += client.frames()
        violated = True
    if violated:
        assert any(messages.kind_of(e) == "error_message"
                   and "Cluster degraded" in e.message_v1.error_message.description
                   for e in received), "the client was not told the backend was lost"
        assert client.closing
        out.results["lane closed after violation"] += 1
        backend = reconnect(service, reactor, backend)
    else:
        if answered_pending:
            assert len(replies) == 1
        else:
            assert not replies
            backend.fake.send(messages.v1("get_overload_status_response", id=pending_id))
            assert [messages.request_id(e) for e in client.frames()] == ["pending"]
        close_client(client)
    check_no_leftovers(service, [backend])
    if full:
        full_run(service, reactor, [backend])
        out.results["full runs after"] += 1
    return out


# -- the handshake -------------------------------------------------------------------------


def handshake_case(rnd: random.Random, full: bool = True) -> Outcome:
    """Random answers to the lane's start-up handshake; then a good device reconnects."""
    out = Outcome()
    reactor = FakeReactor()
    from pybrid.proxy.backendfile import Backend
    from pybrid.proxy.config import ProxyConfig
    from pybrid.proxy.service import ProxyService

    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", 6000),),
                                       interface="127.0.0.1", port=0), reactor)
    service.startService()
    fake = connect_backend(reactor, 0, macs=MACS[:1])
    for step in ("extract_command", "reset_command", "udp_data_streaming_command"):
        frames = [e for e in fake.received() if messages.kind_of(e) == step]
        if not frames:
            break
        fake.inbox.clear()
        rid = frames[0].message_v1.id
        roll = rnd.random()
        if roll < 0.4:
            reply = random_envelope(rnd, rnd.choice(("extract_response", "error_message",
                                                     "success_message", "busy_response")))
            reply.message_v1.id = rid
            out.inputs[f"{step}: random reply"] += 1
        elif roll < 0.55:
            out.inputs[f"{step}: garbage frame"] += 1
            fake.proto.dataReceived(random_piece(rnd, allow_fatal=False).data)
            reply = spec_reply(rid, MACS[:1]) if step == "extract_command" else messages.success(
                id=rid)
        else:
            out.inputs[f"{step}: proper reply"] += 1
            reply = spec_reply(rid, MACS[:1]) if step == "extract_command" else messages.v1(
                "reset_response" if step == "reset_command" else "success_message", id=rid)
        if not fake.transport.disconnecting:
            fake.send(reply)
    client = connect_client(service, 41003)
    client.request("extract_command", pb.ExtractCommand(recursive=True, specification=True),
                   id=random_id(rnd) or "x")
    reactor.advance(0.01)
    kinds = [messages.kind_of(e) for e in client.frames()]
    assert kinds and kinds[0] in ("extract_response", "error_message"), kinds
    out.results["lane ready" if service.lanes[0].healthy else "lane not ready"] += 1
    close_client(client)
    if fake.transport.disconnecting or not service.lanes[0].healthy:
        if not fake.transport.disconnecting:
            fake.transport.loseConnection()
        lose_backend(fake)
        backend = reconnect(service, reactor, AutoBackend(fake))
    else:
        backend = AutoBackend(fake)
    if full:
        full_run(service, reactor, [backend])
        out.results["full runs after"] += 1
    return out


__all__ = ["backend_case", "handshake_case"]

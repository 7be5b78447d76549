"""Hostile inputs for the proxy's lanes, and an oracle saying what each one must do.

Design note
-----------
Two sources of inputs, one shape: a list of byte *segments* that a peer writes in order (a TCP
stream split anywhere, or one datagram per segment).

* :func:`random_envelope` walks the protobuf descriptors of ``pb.Envelope`` and fills a random
  selection of fields — any ``MessageV1`` kind (also undeclared field numbers), random ids
  (none, empty, UUIDs, long, odd Unicode), random scalars, repeated fields and nesting up to a
  depth, sometimes deeper than protobuf's recursion limit (100), which the parser refuses.
* :func:`random_stream` mixes such frames with hostile framing: empty frames, random bytes in
  a frame, declared lengths that lie, truncated and over-long varints, huge lengths, invalid
  UTF-8 in string fields, then splits the stream at random points.

:class:`StreamOracle` frames a byte stream exactly as :class:`~pybrid.wire.framing.
EnvelopeReceiver` must — so a test can compare the receiver's ``counters`` with what was
really sent — and lists the well-formed Envelopes, from which a test derives the replies a
client must get.  Everything is driven by a ``random.Random`` so that Hypothesis (which hands
out seeded ``Random`` objects and shrinks their choices) and the soak scripts (which want
millions of cheap inputs) use the same generator.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator

import attrs
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from pybrid.proto import pb
from pybrid.wire.framing import MAX_FRAME_LENGTH, encode_varint, frame

F = FieldDescriptor
V1_KINDS = tuple(f.name for f in pb.MessageV1.DESCRIPTOR.oneofs_by_name["kind"].fields)
#: Kinds the proxy treats specially get picked more often.
HOT_KINDS = (
    "start_run_command", "stop_run_command", "config_command", "extract_command",
    "reset_command", "auth_request", "ping_command", "udp_data_streaming_command",
    "get_overload_status_command", "run_data_message", "run_state_change_message",
    "run_data_end_message", "busy_response", "error_message", "success_message",
)
RUN_KINDS = ("run_data_message", "run_data_end_message", "run_state_change_message")


def random_id(rnd: random.Random) -> str | None:
    choice = rnd.randrange(8)
    if choice == 0:
        return None
    if choice == 1:
        return ""
    if choice <= 4:
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    if choice == 5:
        return "x" * rnd.choice((1, 37, 1000, 20_000))
    if choice == 6:
        return "".join(chr(rnd.choice((0x41, 0xE9, 0x2603, 0x1F600, 0x10FFFF, 0))) for _ in
                       range(rnd.randrange(1, 12)))
    return f"req-{rnd.randrange(4)}"  # few distinct values: duplicate ids


def _scalar(rnd: random.Random, field: FieldDescriptor) -> object:
    t = field.type
    if t == F.TYPE_BOOL:
        return rnd.random() < 0.5
    if t in (F.TYPE_STRING,):
        n = rnd.choice((0, 1, 5, 17, 100))
        if rnd.random() < 0.3:
            return "/" + "/".join(f"{rnd.getrandbits(48):012x}" for _ in range(rnd.randrange(4)))
        return "".join(chr(rnd.randrange(0x20, 0x250)) for _ in range(n))
    if t == F.TYPE_BYTES:
        return rnd.randbytes(rnd.choice((0, 1, 8, 400, 4000)))
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return rnd.choice((0.0, -1.5, 1e300 if t == F.TYPE_DOUBLE else 1e30, float("nan"),
                           float("inf"), rnd.random()))
    if t == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return rnd.choice(values) if rnd.random() < 0.8 else rnd.randrange(0, 1000)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return rnd.choice((0, 1, 99, 100, 2**31, 2**32 - 1, rnd.getrandbits(32)))
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return rnd.choice((0, 1, 2**63, 2**64 - 1, rnd.getrandbits(64)))
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return rnd.choice((0, -1, 2**31 - 1, -(2**31), rnd.randrange(-100, 100)))
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return rnd.choice((0, -1, 2**63 - 1, -(2**63)))
    raise AssertionError(f"unhandled field type {t}")


def fill(rnd: random.Random, msg: Message, depth: int, density: float = 0.35) -> None:
    """Set a random selection of ``msg``'s fields, nesting at most ``depth`` levels more."""
    desc: Descriptor = msg.DESCRIPTOR
    seen_oneofs: set[str] = set()
    for field in desc.fields:
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            if rnd.random() > density:
                continue
            seen_oneofs.add(oneof.name)
            field = rnd.choice(oneof.fields)
        elif rnd.random() > density:
            continue
        count = rnd.choice((1, 1, 2, 3)) if field.is_repeated else 1
        for _ in range(count):
            if field.type == F.TYPE_MESSAGE:
                if depth <= 0:
                    break
                if field.is_repeated:
                    child = getattr(msg, field.name).add()
                else:
                    child = getattr(msg, field.name)
                    child.SetInParent()
                fill(rnd, child, depth - 1, density)
            elif field.is_repeated:
                getattr(msg, field.name).append(_scalar(rnd, field))
            else:
                setattr(msg, field.name, _scalar(rnd, field))


def deep_entity(levels: int) -> pb.Entity:
    """An Entity whose children nest ``levels`` deep."""
    root = pb.Entity(id="/00-00-00-00-00-00")
    node = root
    for i in range(levels):
        node = node.children.add(id=f"/{i}")
    return root


def random_envelope(rnd: random.Random, kind: str | None = None, depth: int = 4) -> pb.Envelope:
    """A well-formed Envelope: generic ping/pong/empty, or a v1 message of ``kind`` (random)."""
    env = pb.Envelope()
    roll = rnd.random()
    if kind is None and roll < 0.08:
        which = rnd.choice(("ping_command", "ping_response", None))
        if which is None:
            env.generic.SetInParent()
        else:
            getattr(env.generic, which).SetInParent()
            if which == "ping_response":
                env.generic.ping_response.micros = rnd.getrandbits(64)
        return env
    if kind is None and roll < 0.1:
        if rnd.random() < 0.5:
            env.version.major = rnd.getrandbits(32)  # neither generic nor v1
        return env
    msg = env.message_v1
    rid = random_id(rnd)
    if rid is not None:
        msg.id = rid
    if kind is None:
        kind = rnd.choice(HOT_KINDS) if rnd.random() < 0.6 else rnd.choice(V1_KINDS)
    body = getattr(msg, kind)
    body.SetInParent()
    fill(rnd, body, depth)
    if kind == "extract_response" and rnd.random() < 0.2:
        item = body.module.items.add()
        item.entity_specification.entity.CopyFrom(deep_entity(rnd.choice((20, 90, 120))))
    return env


def max_size_envelope(rnd: random.Random, size: int = MAX_FRAME_LENGTH,
                      rid: str | None = None) -> pb.Envelope:
    """A request of exactly ``size`` serialized bytes (a short id: rewriting makes it longer)."""
    kind = rnd.choice(("config_command", "start_run_command", "reset_command"))
    env = pb.Envelope()
    env.message_v1.id = rnd.choice(("", "a", "req-0")) if rid is None else rid
    body = getattr(env.message_v1, kind)
    body.SetInParent()
    if kind == "config_command":
        holder = body.module.items.add().entity
        holder.path = "/00-00-00-00-00-00/"
    elif kind == "start_run_command":
        holder = body.run
        holder.id = ""
    else:
        holder = body.entity
        holder.path = "/"
    attr = "path" if kind != "start_run_command" else "id"
    while len(env.SerializeToString()) != size:
        gap = size - len(env.SerializeToString())
        text = getattr(holder, attr)
        setattr(holder, attr, text + "y" * max(1, gap - 4) if gap > 0 else text[:-1])
    return env


def unknown_kind_payload(rnd: random.Random, rid: str | None) -> bytes:
    """A MessageV1 with an undeclared field number (WhichOneof None) wrapped in an Envelope."""
    inner = b""
    if rid is not None:
        raw_id = rid.encode()
        inner += b"\x0a" + encode_varint(len(raw_id)) + raw_id
    number = rnd.choice((222, 600, 777, 9999, 2**20))
    content = rnd.randbytes(rnd.randrange(0, 20))
    inner += encode_varint(number << 3 | 2) + encode_varint(len(content)) + content
    return b"\xaa\x06" + encode_varint(len(inner)) + inner


def bad_utf8_payload() -> bytes:
    """A v1 message whose ``id`` is not UTF-8: protobuf refuses to parse it."""
    inner = b"\x0a\x02\xff\xfe" + b"\xc2\x31\x00"  # id = b'\xff\xfe', stop_run_command {}
    return b"\xaa\x06" + encode_varint(len(inner)) + inner


@attrs.define
class Piece:
    """One element of a generated stream: its bytes and what it is."""

    data: bytes
    what: str
    envelope: pb.Envelope | None = None


def random_piece(rnd: random.Random, *, allow_fatal: bool = True) -> Piece:
    """One frame (or framing violation) of a hostile stream."""
    roll = rnd.random()
    if roll < 0.45:
        env = random_envelope(rnd)
        return Piece(frame(env.SerializeToString()), "envelope", env)
    if roll < 0.52:
        return Piece(b"\x00", "empty frame")
    if roll < 0.62:
        junk = rnd.randbytes(rnd.choice((1, 2, 7, 64, 1000)))
        return Piece(frame(junk), "random bytes in a frame")
    if roll < 0.67:
        return Piece(frame(unknown_kind_payload(rnd, random_id(rnd))), "unknown kind")
    if roll < 0.70:
        return Piece(frame(bad_utf8_payload()), "invalid UTF-8")
    if roll < 0.75:
        # a valid frame whose bytes are damaged: flipped, cut or extended
        env = random_envelope(rnd)
        payload = bytearray(env.SerializeToString())
        if payload:
            for _ in range(rnd.randrange(1, 4)):
                payload[rnd.randrange(len(payload))] ^= 1 << rnd.randrange(8)
        if rnd.random() < 0.3 and len(payload) > 1:
            del payload[rnd.randrange(1, len(payload)):]
        return Piece(frame(bytes(payload)), "damaged envelope")
    if roll < 0.96:
        return Piece(rnd.randbytes(rnd.choice((1, 3, 16, 300))), "raw random bytes")
    if roll < 0.97:
        env = max_size_envelope(rnd)
        return Piece(frame(env.SerializeToString()), "maximum-size frame", env)
    if not allow_fatal:
        return Piece(frame(b"\x08\x01"), "version-only envelope")
    fatal = rnd.randrange(4)
    if fatal == 0:
        return Piece(b"\xff" * rnd.choice((10, 11, 30)), "over-long varint")
    if fatal == 1:
        n = rnd.choice((MAX_FRAME_LENGTH + 1, 2**31, 2**63))
        return Piece(encode_varint(n) + rnd.randbytes(8), "huge declared length")
    if fatal == 2:
        return Piece(b"\x80\x80\x80", "truncated varint")
    return Piece(encode_varint(rnd.choice((5000, 200_000))) + b"\x08", "length larger than sent")


def random_stream(rnd: random.Random, pieces: int, *, allow_fatal: bool = True) -> list[Piece]:
    return [random_piece(rnd, allow_fatal=allow_fatal) for _ in range(pieces)]


def split(rnd: random.Random, data: bytes, max_segments: int = 8) -> list[bytes]:
    """Cut ``data`` at random points (a TCP peer's segments)."""
    if not data:
        return []
    cuts = sorted({rnd.randrange(1, len(data)) for _ in range(rnd.randrange(max_segments))}
                  if len(data) > 1 else set())
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@attrs.define
class StreamOracle:
    """What :class:`EnvelopeReceiver` must make of a byte stream (see the module note)."""

    frames: int = 0
    empty: int = 0
    unparseable: int = 0
    oversized: int = 0
    envelopes: list[pb.Envelope] = attrs.field(factory=list)
    #: Bytes left unconsumed at the end (an incomplete frame).
    leftover: int = 0

    @classmethod
    def of(cls, data: bytes, max_length: int = MAX_FRAME_LENGTH) -> StreamOracle:
        oracle = cls()
        pos, end = 0, len(data)
        while pos < end:
            value, shift, i = 0, 0, pos
            complete = False
            while i < end:
                b = data[i]
                value |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    complete = True
                    break
                shift += 7
                if i - pos >= 10:
                    oracle.oversized += 1
                    return oracle
            if not complete:
                break
            if value > max_length:
                oracle.oversized += 1
                return oracle
            if i + value > end:
                break
            payload = data[i : i + value]
            pos = i + value
            oracle.frames += 1
            if not payload:
                oracle.empty += 1
                continue
            env = pb.Envelope()
            try:
                env.ParseFromString(payload)
            except DecodeError:
                oracle.unparseable += 1
                continue
            oracle.envelopes.append(env)
        oracle.leftover = end - pos
        return oracle

    def matches(self, counters: object, base: object = None) -> bool:
        """Do ``counters`` (minus ``base``, the counters before the stream) agree?"""

        def delta(name: str) -> int:
            return int(getattr(counters, name)) - (int(getattr(base, name)) if base else 0)

        return (delta("frames"), delta("empty"), delta("unparseable"), delta("oversized")) == (
            self.frames, self.empty, self.unparseable, self.oversized)


def iter_seeds(seed: int) -> Iterator[random.Random]:
    """Independent ``Random`` objects, one per input, from one master seed."""
    master = random.Random(seed)
    while True:
        yield random.Random(master.getrandbits(64))

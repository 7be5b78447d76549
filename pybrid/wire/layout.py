"""The router's fast path: a run data datagram's layout checked and read without protobuf.

Design note
-----------
Every protobuf serializer writes a ``run_data_message`` (or ``run_data_end_message``)
Envelope in the same order — fields by number, lengths as minimal varints — and a device
sends thousands of them that differ only in the message id, the chunk number and the samples.
What the router forwards is the device's datagram itself, so the fast path must accept a
datagram only if protobuf would parse it too (a datagram cut or damaged after its head must
be dropped as unparseable, never forwarded).  It does so in two steps:

1. :func:`layout_of` reads a datagram's :class:`Layout` with two compiled regular expressions:
   :data:`DATA_HEAD` (Envelope.message_v1, the optional MessageV1 id, the kind,
   ``run{id, chunk}``, ``entity{path}``) and :data:`DAQ_HEAD` (the DaqData field and its
   ``data`` bytes after the path), and checks everything the match relies on: the outer
   ``message_v1`` field, the data message and its DaqData each end exactly at the end of the
   datagram (nothing cut off, nothing after), ``run`` holds exactly the id and the chunk,
   ``entity`` exactly the path, the sample bytes end inside the datagram, the ids are 36
   ASCII bytes and the path is ASCII (protobuf rejects strings that are not UTF-8).  The rest
   of DaqData after the samples (type, channels, sample count, stride: the *tail*) is not
   checked here: the router learns a layout only from a datagram protobuf parsed.
2. The router keeps the layouts it learned (per backend and datagram length, a few each) and
   matches a datagram against them with ``startswith``/``endswith`` on the bytes in hand:
   every byte but the ids, the chunk varint and the samples must equal those of a datagram
   protobuf accepted, at the same positions.  Then every length is the same and consistent,
   and the datagram parses exactly when its variable parts are valid: the message id ASCII,
   the chunk a well-formed varint of the same length (:func:`chunk_number`), the run id
   registered (a registered id is valid UTF-8; an unknown one is checked before it is counted
   as foreign).  Samples are bytes: anything goes.

Anything else — other field orders, non-minimal varints, other id lengths, state changes,
damaged or truncated datagrams, garbage — takes the full protobuf parse, which is the
reference: both paths give the same result (unit tests check, byte by byte damaged), the fast
one in about the time a regular expression match alone takes.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

_VARINT = rb"[\x80-\xff]{0,4}[\x00-\x7f]"
#: A run_data_message / run_data_end_message Envelope's head as serializers lay it out; the
#: groups are the lengths and values named in the comments, the path follows the match.
DATA_HEAD = re.compile(
    rb"\xaa\x06(" + _VARINT + rb")"                      # 1 Envelope.message_v1: length
    + rb"(\x0a\x24[\x00-\x7f]{36})?"                     # 2 MessageV1.id (a UUID), optional
    + rb"([\x92\x9a])\x13(" + _VARINT + rb")"            # 3 kind: 0x92 data, 0x9a end; 4 length
    + rb"\x0a([\x00-\x7f])\x0a\x24[\x00-\x7f]{36}"       # 5 .run: length; .run.id
    + rb"(?:\x10(" + _VARINT + rb"))?"                   # 6 .run.chunk (absent: chunk 0)
    + rb"\x12([\x00-\x7f])\x0a([\x00-\x7f])",            # 7 .entity: length; 8 .path: length
    re.DOTALL,
)
#: After the path: the ``data`` field (DaqData) and its ``data`` bytes: 1, 2 their lengths.
DAQ_HEAD = re.compile(rb"\x1a(" + _VARINT + rb")\x0a(" + _VARINT + rb")")
#: The kind tag byte of run_data_message (0x9a: run_data_end_message).
DATA_TAG = 0x92


@attrs.frozen(eq=False)
class Layout:
    """Where the variable parts of one kind of data datagram are, and its fixed bytes.
    Compared and hashed by identity: a learned layout is one object, a cheap dict key."""

    #: Datagram length.
    length: int
    #: Kind tag byte (``DATA_TAG`` or the end message's).
    tag: int
    #: The carrier path (bytes, as in the datagram).
    path: bytes
    #: Bytes before the message id, or before the run id without a message id.
    head: bytes
    #: Offset of the 36-byte message id, -1 without one; bytes between it and the run id.
    id_at: int
    between: bytes
    #: Offset of the 36-byte run id; of the chunk varint and its length (0: chunk 0).
    run_at: int
    chunk_at: int
    chunk_len: int
    #: Bytes from the end of the chunk varint (``middle_at``) to the samples: the path and
    #: DaqData's lengths.
    middle_at: int
    middle: bytes
    #: DaqData after the samples: type, channels, sample count, stride.
    tail: bytes

    @property
    def samples_at(self) -> int:
        """Offset of the sample bytes (``DaqData.data``); they end where ``tail`` starts."""
        return self.middle_at + len(self.middle)


def layout_of(payload: bytes) -> Layout | None:
    """The :class:`Layout` of a datagram whose head is the expected one and consistent, else
    None; see the module note (the tail is not checked)."""
    m = DATA_HEAD.match(payload)
    if m is None:
        return None
    outer, msg_id, tag, body, run_len, chunk, entity_len, path_len = m.groups()
    at = m.end()
    end = at + path_len[0]
    d = DAQ_HEAD.match(payload, end)
    if d is None:
        return None
    daq, samples = d.groups()
    n = len(payload)
    tail = d.end() + _varint(samples)
    if (
        tail > n
        or _varint(daq) != n - d.end(1)
        or _varint(body) != n - m.end(4)
        or _varint(outer) != n - m.end(1)
        or entity_len[0] != path_len[0] + 2
        or run_len[0] != (38 if chunk is None else 39 + len(chunk))
    ):
        return None
    path = payload[at:end]
    if not path.isascii():
        return None
    run_at = m.start(5) + 3
    chunk_at = run_at + 36 + (0 if chunk is None else 1)
    chunk_len = 0 if chunk is None else len(chunk)
    id_at = -1 if msg_id is None else m.start(2) + 2
    head_end = run_at if msg_id is None else id_at
    return Layout(
        length=n, tag=tag[0], path=path,
        head=payload[:head_end], id_at=id_at,
        between=b"" if msg_id is None else payload[id_at + 36 : run_at],
        run_at=run_at, chunk_at=chunk_at, chunk_len=chunk_len, middle_at=chunk_at + chunk_len,
        middle=payload[chunk_at + chunk_len : d.end()], tail=payload[tail:],
    )


E = TypeVar("E")


@attrs.define(eq=False)
class LayoutTable(Generic[E]):
    """Layouts learned from datagrams protobuf parsed, each with an entry ``E`` (the layout
    itself, or what a reader keeps with it), per datagram length: at most ``per_length`` per
    length (the oldest goes) and ``lengths`` lengths (then all are forgotten).  The one
    learn/match rule of the router, the client's fast path and the taps."""

    lengths: int = 64
    per_length: int = 16
    _by_length: dict[int, list[tuple[Layout, E]]] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return sum(len(same) for same in self._by_length.values())

    def learn(self, lay: Layout, entry: E) -> None:
        same = self._by_length.get(lay.length)
        if same is None:
            if len(self._by_length) >= self.lengths:
                self._by_length.clear()
            same = self._by_length[lay.length] = []
        if len(same) >= self.per_length:
            del same[0]
        same.append((lay, entry))

    def match(self, payload: bytes) -> tuple[Layout, E, int] | None:
        """The learned layout whose fixed bytes ``payload`` has (the message id ASCII), its
        entry and the chunk number (:func:`read_chunk`, inline: the hot path), or None: then
        the full parse decides.  A chunk number of -1: not a varint protobuf reads the same."""
        for lay, entry in self._by_length.get(len(payload), ()):  # noqa: B007
            if (  # the middle first: it holds the carrier path
                payload.startswith(lay.middle, lay.middle_at)
                and payload.startswith(lay.head)
                and payload.endswith(lay.tail)
                and (lay.id_at < 0 or (payload.startswith(lay.between, lay.id_at + 36)
                                       and payload[lay.id_at : lay.id_at + 36].isascii()))
            ):
                break
        else:
            return None
        k = lay.chunk_len
        if k == 0:
            return lay, entry, 0
        at = lay.chunk_at
        if payload[at - 1] != 0x10:  # the tag is not among the fixed bytes
            return lay, entry, -1
        if k == 1:
            number = payload[at]
            return lay, entry, number if number < 0x80 else -1
        if k == 2:  # chunks 128 .. 16383
            b0 = payload[at]
            b1 = payload[at + 1]
            return lay, entry, (b0 & 0x7F) | b1 << 7 if b0 >= 0x80 > b1 else -1
        number = chunk_number(payload[at : at + k])
        return lay, entry, number if 0 <= number < 0x80**k else -1


def read_chunk(lay: Layout, payload: bytes) -> int:
    """The chunk number of a matched datagram; -1 if its varint is not one protobuf reads the
    same (the tag byte 0x10 is not among the fixed bytes, so it is checked here too)."""
    k = lay.chunk_len
    if k == 0:
        return 0
    at = lay.chunk_at
    if payload[at - 1] != 0x10:
        return -1
    number = payload[at] if k == 1 else chunk_number(payload[at : at + k])
    return number if 0 <= number < 0x80**k else -1


def chunk_number(data: bytes) -> int:
    """The value of a ``Run.chunk`` varint of one to five bytes; -1 if the bytes are not one
    varint (continuation bits wrong).  Protobuf keeps the low 32 bits."""
    k = len(data)
    if k == 2:
        b0, b1 = data
        return (b0 & 0x7F) | b1 << 7 if b0 >= 0x80 > b1 else -1
    if k == 3:
        b0, b1, b2 = data
        if b0 >= 0x80 and b1 >= 0x80 > b2:
            return (b0 & 0x7F) | (b1 & 0x7F) << 7 | b2 << 14
        return -1
    value = 0
    for shift, byte in enumerate(data):
        if (byte >= 0x80) != (shift < k - 1):
            return -1
        value |= (byte & 0x7F) << (7 * shift)
    return value & 0xFFFFFFFF


def _varint(data: bytes) -> int:
    value = 0
    for shift, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * shift)
    return value


def new_run_id(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh run id for the backends: a version-4 UUID (122 random bits of ``random(16)``)."""
    return str(uuid.UUID(bytes=random(16), version=4))


def with_run_id(payload: bytes, run_at: int, run_id: bytes) -> bytes:
    """``payload`` with the 36-byte run id at ``run_at`` replaced by ``run_id`` (36 bytes too:
    no length changes).  One copy of the datagram: the tail is joined from a memoryview."""
    return b"".join((payload[:run_at], run_id, memoryview(payload)[run_at + 36 :]))

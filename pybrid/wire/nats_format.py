"""The pybrid NATS JetStream format: subjects and messages of an exported run (no nats import).

Design note
-----------
Every message of one run goes to ``<prefix>.<proxy>.<run>.<kind>`` (:func:`subject`):
``prefix`` is the stream's subject root (default ``pybrid``), ``proxy`` names the exporting
proxy, ``run`` is the client's run id when it is a safe subject token, else ``=`` and its UTF-8
bytes in hex (:func:`run_token`), and ``kind`` is one of :data:`KINDS`.  One stream holds
``<prefix>.>``, so a consumer reads one run with the filter ``<prefix>.*.<run>.>`` in stream
order, or finds the newest run with ``<prefix>.*.*.start`` (deliver last).

``start``, ``layout``, ``state`` and ``end`` carry a UTF-8 JSON object (:func:`encode_json`);
``chunk`` carries one or more chunk records back to back (:func:`iter_chunks`; the exporter
puts what waits for NATS together, up to 64 records, so acknowledgements do not limit the
rate): each is :data:`CHUNK_HEADER` (40 bytes, little-endian) and then the device's raw
samples, sample-major, ``samples × channels`` of the layout's dtype:

====== ==== ===========================================================================
offset type field
====== ==== ===========================================================================
0      4s   magic ``PBC1``
4      u8   flags: 0x01 the run's final values (``run_data_end_message``), 0x02 per-channel
            gain/offset (take them from the carrier's ``layout`` message)
5      u8   dtype code (:data:`DTYPE_CODES`)
6      u16  carrier index (the ``layout`` message with this index names the carrier)
8      u32  chunk number (``Run.chunk``: 0, 1, 2 … per carrier)
12     u32  sample count
16     u16  channels
18..23      reserved (0)
24     f64  gain (all channels, unless flag 0x02)
32     f64  offset (likewise)
====== ==== ===========================================================================

Values are ``raw × gain + offset``.  The ``end`` message's ``condition`` is ``complete``,
``incomplete`` (``missing``: chunk numbers per carrier path the stream lacks) or ``error``
(``reason``).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

FORMAT = "pybrid-nats"
VERSION = 1
DEFAULT_PREFIX = "pybrid"
DEFAULT_STREAM = "PYBRID"

KINDS = ("start", "layout", "chunk", "state", "end")
MAGIC = b"PBC1"
CHUNK_HEADER = struct.Struct("<4sBBHIIH6xdd")
CHUNK_HEADER_SIZE = CHUNK_HEADER.size  # 40
FLAG_END_MESSAGE = 0x01
FLAG_PER_CHANNEL = 0x02

#: dtype code -> numpy dtype string (the codes of the shared-memory tap's frames).
DTYPE_CODES: dict[int, str] = {1: "<f4", 2: "<f8", 3: "<i2", 4: "<u2", 5: "<i1", 6: "<u1",
                               7: "<i4", 8: "<u4", 9: "<i8", 10: "<u8"}

CONDITIONS = ("complete", "incomplete", "error")
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOKEN = re.compile(r"[A-Za-z0-9_=-]+")


class NatsFormatError(ValueError):
    """A subject, name or message that is not in this format."""


def run_token(run_id: str) -> str:
    """The subject token of ``run_id``: itself when safe, else ``=`` + its UTF-8 in hex."""
    if _SAFE.fullmatch(run_id):
        return run_id
    return "=" + run_id.encode().hex()


def run_id_of(token: str) -> str:
    """Inverse of :func:`run_token`."""
    if token.startswith("="):
        try:
            return bytes.fromhex(token[1:]).decode()
        except ValueError:
            raise NatsFormatError(f"run token {token!r} is not = and hex of UTF-8") from None
    return token


def check_name(value: str, what: str) -> str:
    """A subject prefix or proxy name: letters, digits, ``_``, ``-`` (dots in a prefix)."""
    parts = value.split(".") if what == "prefix" else [value]
    if not value or not all(_SAFE.fullmatch(p) for p in parts):
        raise NatsFormatError(f"{what} {value!r}: use letters, digits, _ and -"
                              + (" (dots between parts)" if what == "prefix" else ""))
    return value


def subject(prefix: str, proxy: str, run_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise NatsFormatError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    return f"{prefix}.{proxy}.{run_token(run_id)}.{kind}"


def parse_subject(prefix: str, value: str) -> tuple[str, str, str]:
    """``(proxy, run_id, kind)`` of a subject of this format."""
    if not value.startswith(prefix + "."):
        raise NatsFormatError(f"subject {value!r} is not under {prefix!r}")
    parts = value[len(prefix) + 1:].split(".")
    if len(parts) != 3 or parts[2] not in KINDS or not _TOKEN.fullmatch(parts[1]):
        raise NatsFormatError(f"subject {value!r} is not <prefix>.<proxy>.<run>.<kind>")
    return parts[0], run_id_of(parts[1]), parts[2]


def stream_subjects(prefix: str) -> list[str]:
    return [f"{prefix}.>"]


def run_filter(prefix: str, run_id: str) -> str:
    """The filter subject of every message of ``run_id`` (any proxy)."""
    return f"{prefix}.*.{run_token(run_id)}.>"


def starts_filter(prefix: str) -> str:
    return f"{prefix}.*.*.start"


def encode_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def decode_json(data: bytes | memoryview) -> dict[str, Any]:
    try:
        body = json.loads(bytes(data))
    except ValueError as e:
        raise NatsFormatError(f"message is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise NatsFormatError("message is not a JSON object")
    return body


def chunk_header(carrier: int, chunk: int, samples: int, channels: int, dtype_code: int,
                 gain: float, offset: float, flags: int = 0) -> bytes:
    return CHUNK_HEADER.pack(MAGIC, flags, dtype_code, carrier, chunk, samples, channels,
                             gain, offset)


def parse_chunk(data: bytes | memoryview, at: int = 0) -> tuple[int, int, int, int, int, float,
                                                                float, np.ndarray, int]:
    """``(flags, carrier, chunk, samples, channels, gain, offset, raw, end)`` of the chunk
    record at byte ``at`` of a ``chunk`` message; ``raw`` is a read-only ``(samples,
    channels)`` view of ``data`` and the next record (if any) starts at ``end``."""
    if len(data) - at < CHUNK_HEADER_SIZE:
        raise NatsFormatError(f"chunk record of {len(data) - at} bytes is shorter than its "
                              "header")
    magic, flags, code, carrier, chunk, samples, channels, gain, offset = \
        CHUNK_HEADER.unpack_from(data, at)
    if magic != MAGIC:
        raise NatsFormatError(f"chunk record magic {magic!r} is not {MAGIC!r}")
    name = DTYPE_CODES.get(code)
    if name is None:
        raise NatsFormatError(f"unknown dtype code {code}")
    dt = np.dtype(name)
    end = at + CHUNK_HEADER_SIZE + samples * channels * dt.itemsize
    if end > len(data):
        raise NatsFormatError(f"chunk record of {len(data) - at} bytes is too short for "
                              f"{samples} samples x {channels} channels of {dt}")
    raw = np.frombuffer(data, dt, samples * channels, at + CHUNK_HEADER_SIZE)
    return (flags, carrier, chunk, samples, channels, gain, offset,
            raw.reshape(samples, channels), end)


def iter_chunks(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int, float,
                                                            float, np.ndarray, int]]:
    """Every chunk record of a ``chunk`` message (:func:`parse_chunk` of each)."""
    at = 0
    while at < len(data):
        record = parse_chunk(data, at)
        yield record
        at = record[-1]


def condition(states: dict[str, str], reasons: dict[str, str],
              missing: dict[str, list[int]]) -> tuple[str, str]:
    """``(condition, reason)`` of a run's ``end`` message from its carriers' final states,
    error reasons and the chunk numbers the stream lacks."""
    errors = [f"{path}: {reasons.get(path) or 'ERROR'}" for path, s in sorted(states.items())
              if s == "ERROR"]
    if errors:
        return "error", "; ".join(errors)
    lacking = {p: m for p, m in missing.items() if m}
    if lacking:
        return "incomplete", ", ".join(f"{p}: {len(m)} chunks missing"
                                       for p, m in sorted(lacking.items()))
    return "complete", ""

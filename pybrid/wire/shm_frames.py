"""The pybrid shared-memory frame format: what the proxy writes into a ZeroBuffer.

Design note
-----------
A ZeroBuffer frame is the ring's own 16-byte header (payload size, sequence number) followed
by our payload.  Our payload always starts with :data:`HEADER` (48 bytes, little-endian):

====== ======= ==========================================================================
offset type    field
====== ======= ==========================================================================
0      u8      kind: :data:`CHUNK`, :data:`RUN_START`, :data:`LAYOUT`, :data:`CARRIER_END`,
               :data:`STATE`
1      u8      flags: :data:`FLAG_END_MESSAGE`, :data:`FLAG_PER_CHANNEL` (chunks); the final
               run state (``CARRIER_END``: :data:`END_DONE` 2, :data:`END_ERROR` 1, the
               protobuf ``RunState`` numbers of docs/protocol.md); the new state (``STATE``)
2      u16     carrier index (the proxy's backend lane; 0xFFFF for run-wide frames)
4      u32     run number (counts the runs this proxy wrote, from 1)
8      u64     tap sequence: every frame the proxy *produced*, written or not (gap detection)
16     u32     chunk number (``Run.chunk`` of the data message)
20     u32     sample count
24     u16     channels (the channel stride)
26     u8      dtype code (:data:`DTYPE_CODES`)
27..31         reserved (0)
32     f64     gain   (all channels; with ``FLAG_PER_CHANNEL`` see the carrier's LAYOUT frame)
40     f64     offset (likewise)
====== ======= ==========================================================================

A ``CHUNK`` frame continues with the device's raw sample bytes (sample-major, little-endian,
``sample count × channels × itemsize``), zero-padded to a multiple of 16 so every frame and
every sample array stays 16-byte aligned in the ring: ``numpy.frombuffer`` on the frame gives a
zero-copy ``(samples, channels)`` view.  ``RUN_START``, ``LAYOUT``, ``CARRIER_END`` and ``STATE``
frames continue with a UTF-8 JSON object (:func:`encode_json`).  The buffer's metadata (written once
per writer connection) is a JSON object too: :func:`metadata`.  Every value is plain data so
the C++ and C# ZeroBuffer readers can decode the same bytes.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

#: Metadata ``format`` and the version of this layout.
FORMAT = "pybrid-shm"
VERSION = 1

HEADER = struct.Struct("<BBHIQIIHB5xdd")
HEADER_SIZE = HEADER.size  # 48

CHUNK = 1
RUN_START = 2
LAYOUT = 3
CARRIER_END = 4
#: A run state change that is not final (IC, OP …); readers that do not know it skip it.
STATE = 5
KIND_NAMES = {CHUNK: "chunk", RUN_START: "run-start", LAYOUT: "layout", CARRIER_END: "end",
              STATE: "state"}

FLAG_END_MESSAGE = 0x01  # the chunk came as run_data_end_message
FLAG_PER_CHANNEL = 0x02  # gain/offset differ per channel: use the LAYOUT frame's lists

RUN_WIDE = 0xFFFF

#: A CARRIER_END frame's flags byte: the final run state (protobuf ``RunState`` numbers).
END_DONE = 2
END_ERROR = 1
END_STATE_NAMES = {END_DONE: "DONE", END_ERROR: "ERROR"}

#: dtype code -> numpy dtype string (code 0 is "unknown").
DTYPE_CODES: dict[int, str] = {1: "<f4", 2: "<f8", 3: "<i2", 4: "<u2", 5: "<i1", 6: "<u1",
                               7: "<i4", 8: "<u4", 9: "<i8", 10: "<u8"}
CODE_OF_DTYPE = {np.dtype(v).str: k for k, v in DTYPE_CODES.items()}

_PAD = bytes(16)

#: A frame as handed to a writer: ``(head, seq, chunk, body, pad, length)``: ``head`` is our
#: 48-byte header (or a whole small frame) into which the writer patches ``seq`` and ``chunk``
#: at offsets 8 and 16 unless ``seq`` is 0 (already in ``head``); ``body`` (bytes or a
#: memoryview of the device's datagram) and ``pad`` zero bytes follow; ``length`` is the total.
Frame = tuple[bytes, int, int, Any, int, int]
#: The feed's template of one datagram layout's CHUNK frames (fast path), ``(layout, head,
#: head[:8], head[20:], start, end, pad, length)``: the samples are ``datagram[start:end]``.
Template = tuple[Any, bytes, bytes, bytes, int, int, int, int]
#: What the writer patches into a CHUNK frame's header: seq (u64) and chunk (u32).
SEQ_CHUNK = struct.Struct("<QI")


def whole_frame(head: bytes, body: Any = b"") -> Frame:
    """A frame whose header is complete (JSON frames, tests)."""
    n = len(head) + len(body)
    pad = pad_length(n)
    return (head, 0, 0, body, pad, n + pad)


def frame_bytes(frame: Frame) -> bytes:
    """The payload bytes a writer puts into the ring for ``frame``."""
    head, seq, chunk, body, pad, _ = frame
    if seq:
        head = head[:8] + SEQ_CHUNK.pack(seq, chunk) + head[20:]
    return bytes(head) + bytes(body) + bytes(pad)


class FrameFormatError(ValueError):
    """A frame or metadata blob that is not in this format."""


def pad_length(n: int) -> int:
    """Bytes of zero padding after ``n`` body bytes (frames are multiples of 16 bytes)."""
    return -n % 16


def chunk_header(carrier: int, run: int, seq: int, chunk: int, samples: int, channels: int,
                 dtype_code: int, gain: float, offset: float, flags: int = 0) -> bytes:
    return HEADER.pack(CHUNK, flags, carrier, run, seq, chunk, samples, channels, dtype_code,
                       gain, offset)


def encode_json(kind: int, carrier: int, run: int, seq: int, body: dict[str, Any],
                flags: int = 0) -> bytes:
    """A RUN_START, LAYOUT, CARRIER_END or STATE frame."""
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    head = HEADER.pack(kind, flags, carrier, run, seq, 0, 0, 0, 0, 0.0, 0.0)
    return head + data + _PAD[: pad_length(len(data))]


def metadata(carriers: list[dict[str, Any]], proxy_version: str) -> bytes:
    """The buffer metadata: format, version, the proxy and its carriers."""
    return json.dumps({"format": FORMAT, "version": VERSION, "proxy": proxy_version,
                       "carriers": carriers}, separators=(",", ":"), sort_keys=True).encode()


def parse_metadata(data: bytes | memoryview | None) -> dict[str, Any]:
    """Decode :func:`metadata`; raises :class:`FrameFormatError`."""
    if data is None or len(data) == 0:
        raise FrameFormatError("the buffer holds no metadata (no pybrid writer connected yet)")
    try:
        meta = json.loads(bytes(data).rstrip(b"\0"))
    except ValueError as e:
        raise FrameFormatError(f"metadata is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FrameFormatError("metadata is not from a pybrid proxy (format != pybrid-shm)")
    if meta.get("version") != VERSION:
        raise FrameFormatError(f"pybrid-shm version {meta.get('version')} is not {VERSION}")
    return meta


def parse_header(frame: memoryview | bytes) -> tuple[int, ...]:
    """``(kind, flags, carrier, run, seq, chunk, samples, channels, dtype, gain, offset)``."""
    if len(frame) < HEADER_SIZE:
        raise FrameFormatError(f"frame of {len(frame)} bytes is shorter than the header")
    return HEADER.unpack_from(frame)


def json_body(frame: memoryview | bytes) -> dict[str, Any]:
    try:
        body = json.loads(bytes(frame[HEADER_SIZE:]).rstrip(b"\0 "))
    except ValueError as e:
        raise FrameFormatError(f"frame body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise FrameFormatError("frame body is not a JSON object")
    return body


def samples_view(frame: memoryview | bytes, samples: int, channels: int,
                 dtype_code: int) -> np.ndarray:
    """The raw samples of a CHUNK frame as a zero-copy read-only ``(samples, channels)`` view."""
    dtype = DTYPE_CODES.get(dtype_code)
    if dtype is None:
        raise FrameFormatError(f"unknown dtype code {dtype_code}")
    dt = np.dtype(dtype)
    n = samples * channels
    if HEADER_SIZE + n * dt.itemsize > len(frame):
        raise FrameFormatError(f"chunk frame of {len(frame)} bytes is too short for {samples} "
                               f"samples x {channels} channels of {dt}")
    view = np.frombuffer(frame, dtype=dt, count=n, offset=HEADER_SIZE)
    return view.reshape(samples, channels)


def process_exists(pid: int) -> bool:
    """Whether the ZeroBuffer peer ``pid`` (from the OIEB) is alive: both ends' rule."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The live view's binary frames and what a viewer asks for.

A viewer sends JSON text messages (:class:`ViewRequest`): which run (empty: the current one),
carrier, channels, window (seconds back from the newest row; 0: the whole run), pixel columns,
paused.  The server answers with binary frames, little-endian::

    magic "PLV1" | columns u16 | channels u16 | meta_len u32 | flags u32
    sent_at f64 | arrived_at f64 | t0 f64 | t1 f64 | end_t f64      (seconds)
    meta (UTF-8 JSON, meta_len bytes) | zero padding to 4 bytes
    lo float32[channels][columns] | hi float32[channels][columns]

``sent_at`` is when the frame was made and ``arrived_at`` when the newest chunk in it arrived
(server clock): their difference is the server's latency.  ``t0``/``t1`` are the window's
times after the run began, ``end_t`` the run's end (NaN while it runs).  NaN in lo/hi: a gap.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from pybrid.recording.envelope import Envelope

MAGIC = b"PLV1"
HEAD = struct.Struct("<4sHHII5d")
#: flags: the run has ended; the view shows a run's overview (window 0).
FLAG_ENDED = 1
FLAG_OVERVIEW = 2
MAX_COLUMNS = 4096
MAX_CHANNELS = 64
#: Windows a viewer may pick, in seconds (0: the whole run).
WINDOWS = (0.01, 0.1, 1.0, 10.0, 0.0)


class BadRequest(ValueError):
    """A viewer's message that is not a view request."""


@attrs.frozen
class ViewRequest:
    run: str = ""
    carrier: str = ""
    channels: tuple[int, ...] = (0,)
    window: float = 0.1
    columns: int = 800
    paused: bool = False

    @classmethod
    def parse(cls, text: str) -> ViewRequest:
        """The request in a viewer's JSON; :class:`BadRequest` for anything else."""
        try:
            data = json.loads(text)
        except ValueError:
            raise BadRequest("not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("not a JSON object")
        try:
            channels = tuple(int(c) for c in data.get("channels", [0]))
            window = float(data.get("window", 0.1))
            columns = int(data.get("columns", 800))
            run, carrier = str(data.get("run", "")), str(data.get("carrier", ""))
        except (TypeError, ValueError):
            raise BadRequest("channels, window or columns are not numbers") from None
        if not 1 <= columns <= MAX_COLUMNS:
            raise BadRequest(f"columns must be 1 … {MAX_COLUMNS}")
        if not (0 < len(channels) <= MAX_CHANNELS and all(0 <= c < 1024 for c in channels)):
            raise BadRequest(f"1 … {MAX_CHANNELS} channels of 0 … 1023")
        if not (np.isfinite(window) and window >= 0):
            raise BadRequest("window must be 0 (the whole run) or more seconds")
        return cls(run, carrier, channels, window, columns, bool(data.get("paused", False)))


def encode(env: Envelope, rate: int, meta: Mapping[str, Any], sent_at: float,
           arrived_at: float, end_t: float, flags: int) -> bytes:
    """One frame of ``env`` (columns × channels, float64) for a run sampled at ``rate``."""
    scale = 1.0 / rate if rate > 0 else 1.0
    columns, channels = env.lo.shape if env.lo.ndim == 2 else (0, 0)
    t0 = float(env.start[0]) * scale if columns else 0.0
    t1 = float(env.stop[-1]) * scale if columns else 0.0
    body = json.dumps(dict(meta), separators=(",", ":")).encode("utf-8")
    pad = b"\0" * (-len(body) % 4)
    head = HEAD.pack(MAGIC, columns, channels, len(body), flags, sent_at, arrived_at, t0, t1,
                     end_t)
    lo = np.ascontiguousarray(env.lo.T, dtype="<f4")
    hi = np.ascontiguousarray(env.hi.T, dtype="<f4")
    return b"".join((head, body, pad, lo.tobytes(), hi.tobytes()))


@attrs.frozen
class Frame:
    """A decoded frame (tests, the benchmark)."""

    flags: int
    sent_at: float
    arrived_at: float
    t0: float
    t1: float
    end_t: float
    meta: dict[str, Any]
    lo: np.ndarray  # channels × columns
    hi: np.ndarray


def decode(data: bytes) -> Frame:
    magic, columns, channels, meta_len, flags, sent, arrived, t0, t1, end_t = \
        HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a live view frame")
    at = HEAD.size
    meta = json.loads(data[at : at + meta_len])
    at += meta_len + (-meta_len % 4)
    n = columns * channels
    arrays = np.frombuffer(data, "<f4", 2 * n, at).reshape(2, channels, columns)
    return Frame(flags, sent, arrived, t0, t1, end_t, meta, arrays[0], arrays[1])

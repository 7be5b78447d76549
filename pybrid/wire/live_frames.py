"""The live view's binary frames and what a viewer asks for.

A viewer sends JSON text messages (:class:`ViewRequest`): which run (empty: the current one),
carrier, channels, window (seconds back from the newest row; 0: the whole run), pixel columns,
paused.  The server answers with binary frames, little-endian::

    magic "PLV2" | columns u16 | channels u16 | meta_len u32 | flags u32
    sent_at f64 | arrived_at f64 | t0 f64 | t1 f64 | end_t f64      (seconds)
    meta (UTF-8 JSON, meta_len bytes) | zero padding to 8 bytes
    base f64[channels] | step f64[channels]
    lo u16[channels][columns] | hi u16[channels][columns]

``sent_at`` is when the frame was made and ``arrived_at`` when the newest chunk in it arrived
(server clock): their difference is the server's latency.  ``t0``/``t1`` are the window's
times after the run began, ``end_t`` the run's end (NaN while it runs).  A code ``c`` of
channel ``k`` is the value ``base[k] + c × step[k]``; ``NAN_CODE`` (65535) is a gap.  Per
frame and channel, codes 0 … 65534 span the smallest lo to the largest hi: lo is rounded
down and hi up, so a column's stroke never gets shorter (no spike hidden) and is at most one
step (1/65534 of the channel's range in the frame) longer — half the bytes of float32.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from pybrid.recording.envelope import Envelope

MAGIC = b"PLV2"
#: The code of a gap (no row in the column); values are codes 0 … NAN_CODE-1.
NAN_CODE = 0xFFFF
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
    pad = b"\0" * (-len(body) % 8)
    head = HEAD.pack(MAGIC, columns, channels, len(body), flags, sent_at, arrived_at, t0, t1,
                     end_t)
    lo = np.asarray(env.lo, np.float64).T.reshape(channels, columns)
    hi = np.asarray(env.hi, np.float64).T.reshape(channels, columns)
    base, step, lo_codes, hi_codes = _quantise(lo, hi)
    return b"".join((head, body, pad, base.astype("<f8").tobytes(), step.astype("<f8").tobytes(),
                     lo_codes.tobytes(), hi_codes.tobytes()))


def _quantise(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per channel (row): base, step and the u16 codes of lo (rounded down) and hi (up)."""
    with np.errstate(invalid="ignore", over="ignore"):
        both = np.concatenate([lo, hi], axis=1)  # ±inf: clipped to the ends, not the range
        both[~np.isfinite(both)] = np.nan
        base = np.fmin.reduce(both, axis=1, initial=np.inf)
        top = np.fmax.reduce(both, axis=1, initial=-np.inf)
        empty = ~np.isfinite(base)
        base[empty], top[empty] = 0.0, 0.0
        step = (top - base) / (NAN_CODE - 1)
        scale = np.where(step > 0, step, 1.0)[:, None]
        codes = []
        for arr, rounding in ((lo, np.floor), (hi, np.ceil)):
            c = np.clip(rounding((arr - base[:, None]) / scale), 0, NAN_CODE - 1)
            c[np.isnan(arr)] = NAN_CODE
            codes.append(c.astype("<u2"))
    return base, step, codes[0], codes[1]


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
    lo: np.ndarray  # channels × columns, float64 (NaN: a gap)
    hi: np.ndarray
    step: np.ndarray  # per channel: a code's value (lo/hi are at most this far out)


def decode(data: bytes) -> Frame:
    magic, columns, channels, meta_len, flags, sent, arrived, t0, t1, end_t = \
        HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a live view frame")
    at = HEAD.size
    meta = json.loads(data[at : at + meta_len])
    at += meta_len + (-meta_len % 8)
    base, step = np.frombuffer(data, "<f8", 2 * channels, at).reshape(2, channels, 1)
    codes = np.frombuffer(data, "<u2", 2 * columns * channels, at + 16 * channels)
    codes = codes.reshape(2, channels, columns)
    values = np.where(codes == NAN_CODE, np.nan, base + codes * step)
    return Frame(flags, sent, arrived, t0, t1, end_t, meta, values[0], values[1], step[:, 0])

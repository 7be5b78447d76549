"""Simulated backend traffic for monitor tests: the Envelopes one carrier sends in one run."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from pybrid import samples
from pybrid.proto import pb
from pybrid.wire import messages

RUN_STATES = [
    (pb.RunState.NEW, pb.RunState.TAKE_OFF),
    (pb.RunState.TAKE_OFF, pb.RunState.IC),
    (pb.RunState.IC, pb.RunState.OP),
]


def chunk_values(carrier: int, chunk: int, rows: int = 100, channels: int = 2) -> np.ndarray:
    """Deterministic raw values for one chunk, distinct per carrier, chunk, row and column."""
    base = carrier * 1_000_000 + chunk * rows
    rows_ = np.arange(base, base + rows, dtype=np.float64)[:, None]
    return (rows_ + np.arange(channels)[None, :] * 0.25).astype(np.float32)


def data_envelope(run_id: str, path: str, chunk: int, raw: np.ndarray, *, end: bool = False,
                  gains: list[float] | None = None) -> bytes:
    kind = "run_data_end_message" if end else "run_data_message"
    body_type = pb.RunDataEndMessage if end else pb.RunDataMessage
    daq = samples.encode(raw, "f32", gains=gains, probes=list(range(raw.shape[1])))
    body = body_type(run=pb.Run(id=run_id, chunk=chunk), entity=pb.EntityId(path=path), data=daq)
    return messages.v1(kind, body, id=messages.new_id()).SerializeToString()


def state_envelope(run_id: str, old: Any, new: Any, path: str | None = None) -> bytes:
    """A ``run_state_change_message``; ``old``/``new`` are ``pb.RunState`` values."""
    body = pb.RunStateChangeMessage(run=pb.Run(id=run_id, chunk=0), old=old, new_=new)
    if path is not None:
        body.entity.path = path
    return messages.v1("run_state_change_message", body).SerializeToString()


def simulated_run(run_id: str, path: str, carrier: int, chunks: int, channels: int = 2,
                  rows: int = 100) -> list[bytes]:
    """State changes, ``chunks`` data messages, the end message and OP→OP_END→DONE, in order."""
    out = [state_envelope(run_id, old, new) for old, new in RUN_STATES]
    for n in range(chunks):
        out.append(data_envelope(run_id, path, n, chunk_values(carrier, n, rows, channels)))
    out.append(state_envelope(run_id, pb.RunState.OP, pb.RunState.OP_END))
    final = chunk_values(carrier, chunks, 1, channels)
    out.append(data_envelope(run_id, path, 0, final, end=True))
    out.append(state_envelope(run_id, pb.RunState.OP_END, pb.RunState.DONE))
    return out


def expected_samples(carrier: int, chunks: int, channels: int = 2, rows: int = 100) -> np.ndarray:
    return np.concatenate([chunk_values(carrier, n, rows, channels) for n in range(chunks)]).astype(
        np.float64
    )


def free_udp_port() -> int:
    """A UDP port that was free a moment ago (for tools that cannot report the port they got)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

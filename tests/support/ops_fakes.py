"""Builders for the status page tests (issue 9, operations): a ready-made ProxyStatus."""

from __future__ import annotations

from typing import Any

import attrs

from pybrid.proxy.backend.intake import IntakeStatus
from pybrid.proxy.backend.model import Readiness
from pybrid.proxy.status.model import (
    BackendStatus,
    CarrierStatus,
    LogEntry,
    ProxyStatus,
    RunStatus,
    SessionStatus,
)


def backend(name: str = "10.0.0.7:5732", **kw: Any) -> BackendStatus:
    values: dict[str, Any] = dict(
        name=name, state="ready", healthy=True, location="0", carriers=("/00-00-5E-00-53-01",),
        data_mode="udp", connects=1,
        intake=IntakeStatus(address="10.0.0.1:40000", rcvbuf=8 << 20, datagrams=1000,
                            bytes=3_400_000, foreign=0, kernel_drops=2),
        datagram_rate=1000.0, byte_rate=3.4e6,
    )
    values.update(kw)
    return BackendStatus(**values)


def session(peer: str = "10.0.0.99:50000", state: str = "active", **kw: Any) -> SessionStatus:
    values: dict[str, Any] = dict(
        id="abcd1234", peer=peer, state=state, since=100.0, authenticated=False,
        runs=(RunStatus("d5e48838-df18-4faa-aae6-91e10f354b73", 2, 1, 500),), forwarded=3,
        busy_replies=0, frames=600, bytes=2_000_000, dropped=0, frame_rate=2000.0,
        byte_rate=6.8e6, buffered=4096, buffer_limit=64 << 20,
    )
    values.update(kw)
    return SessionStatus(**values)


def status(**kw: Any) -> ProxyStatus:
    values: dict[str, Any] = dict(
        now=160.0, version="1.2.3", started=40.0, listen="0.0.0.0:5732", auth=False, max_sessions=8,
        session_timeout=10.0, backends=(backend(),), wires=(("0/0", "1/0"),),
        carriers=(CarrierStatus("/00-00-5E-00-53-01", "10.0.0.7:5732", "0", 500, 1000.0, 3),),
        active=session(), queue=(session("10.0.0.98:40000", "queued", id="q1"),), idle=(),
        counters={"connections": 5, "dropped_foreign_run": 1, "handovers": 2},
        errors=(LogEntry(150.0, "warn", "pybrid.proxy.backend.lane.BackendLane", "backend lost"),),
        log_counts={"warn": 1}, readiness=Readiness(),
    )
    values.update(kw)
    return ProxyStatus(**values)


def evolve(status: ProxyStatus, **kw: Any) -> ProxyStatus:
    return attrs.evolve(status, **kw)

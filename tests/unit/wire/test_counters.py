"""Counters and status records declared once: every counter reaches the status record."""

from __future__ import annotations

import attrs
import pytest

from pybrid.proxy.backend.intake import IntakeCounters, IntakeStatus
from pybrid.proxy.clients.sender import SenderCounters, SenderStatus
from pybrid.wire.counters import snapshot


@pytest.mark.parametrize(("counters", "record", "now"), [
    (IntakeCounters, IntakeStatus, {"address": "127.0.0.1:5", "rcvbuf": None}),
    (SenderCounters, SenderStatus, {"buffered": 3, "limit": 9}),
])
def test_the_status_record_carries_every_counter_and_is_frozen(counters, record, now):
    values = counters(**{f.name: i + 1 for i, f in enumerate(attrs.fields(counters))})
    status = snapshot(record, values, **now)
    for f in attrs.fields(counters):
        assert getattr(status, f.name) == getattr(values, f.name)
    assert {k: getattr(status, k) for k in now} == now
    values.bytes += 100  # the record is a copy taken then
    assert status.bytes != values.bytes
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.bytes = 0

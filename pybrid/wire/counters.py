"""Counters and their status record declared once.

A part's counters are an ``attrs.define`` class of ints; its status record is an
``attrs.frozen(kw_only=True)`` subclass adding what is not a counter (addresses, sizes now).
:func:`snapshot` fills the record from the counters, so a new counter is one line.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

R = TypeVar("R")


def snapshot(record: type[R], counters: Any, **now: Any) -> R:
    """``record`` with every field of ``counters`` as it is now, plus ``now``."""
    return record(**attrs.asdict(counters, recurse=False), **now)

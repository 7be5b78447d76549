"""The proxy's shared-memory taps (``--shm-tap NAME``, repeatable), as one object.

:class:`ShmTaps` builds the :class:`~pybrid.proxy.taps.shm.feed.ShmFeed` and one
:class:`~.tap.ShmTap` per name.  The proxy gives the feed to the run router as one of its taps
(:class:`pybrid.proxy.taps.base.RunTap`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from pybrid.proxy.taps.common import lane_carriers
from pybrid.proxy.taps.shm.feed import YIELD_AT, ShmFeed
from pybrid.proxy.taps.shm.tap import ShmTap, ShmTapStatus, inline_writer
from pybrid.wire import shm_frames as F


@attrs.define(eq=False)
class ShmTaps:
    """Every ``--shm-tap`` of one proxy: the feed, the taps, their start/stop and status."""

    names: tuple[str, ...]
    reactor: Any
    carriers: Callable[[], list[dict[str, Any]]]
    proxy_version: str = ""
    write_timeout: float = 5.0
    poll_interval: float = 0.25
    #: "inline" (reactor thread, non-blocking ring writes) or "thread" (a writer thread).
    writer: str = "inline"
    #: The intakes' backlog, 0 … 1 (the feed yields above ``yield_at``), or None.
    backlog: Callable[[], float] | None = None
    yield_at: float = YIELD_AT
    feed: ShmFeed = attrs.field(init=False)
    taps: list[ShmTap] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.feed = ShmFeed(self.carriers, backlog=self.backlog, yield_at=self.yield_at)
        self.taps = [
            ShmTap(name, self.reactor, self.reactor.callFromThread, self._metadata,
                   self.feed.replay, poll_interval=self.poll_interval,
                   write_timeout=self.write_timeout)
            for name in self.names
        ]
        if self.writer == "inline":
            for tap in self.taps:
                tap.make_writer = inline_writer(self.reactor)
        self.feed.taps.extend(self.taps)

    def _metadata(self) -> bytes:
        return F.metadata(self.carriers(), self.proxy_version)

    def start(self) -> None:
        for tap in self.taps:
            tap.start()

    def stop(self) -> None:
        for tap in self.taps:
            tap.stop()

    def status(self) -> tuple[ShmTapStatus, ...]:
        yielded = self.feed.yielded  # every tap missed these
        return tuple(attrs.evolve(tap.status(), dropped_yielded=yielded) for tap in self.taps)


__all__ = ["ShmTaps", "lane_carriers"]

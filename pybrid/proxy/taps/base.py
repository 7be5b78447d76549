"""One way out of the proxy besides the clients: the run events every tap gets.

Design note
-----------
The run router (:class:`pybrid.proxy.data.router.RunRouter`) classifies each backend message
once and tells its taps what happened, in one place and through one interface,
:class:`RunTap`:

* :meth:`RunTap.run_started` — a run was registered: :class:`RunInfo` (the client's run id,
  the proxy's, the carriers, the run's number and what the start command said: sample rate,
  channels …).  Every later event carries the same ``RunInfo`` object, so a tap knows what
  the run is without being told again, and names it by the client's id like the client does;
* :meth:`RunTap.chunk` — a data message of a registered run, as the client gets it (the
  client's run id in place), with its chunk number and the backend lane's index.  A datagram
  of the router's fast path comes with its :class:`~pybrid.wire.layout.Layout` (where the
  samples are: ``payload[lay.samples_at : lay.length - len(lay.tail)]``); ``lay`` is None for
  a message protobuf parsed (the first of a layout, the TCP lane, other serializers), which a
  tap that needs the samples parses itself.  ``flags`` holds :data:`TCP_LANE`;
* :meth:`RunTap.state_changed` — a state change as delivered to the client, once per carrier
  path it applies to (``""``: carriers unknown);
* :meth:`RunTap.run_ended` — every carrier reached DONE or ERROR, or the run was released
  unfinished: :class:`RunEnd` with the router's accounting.

Only registered runs reach a tap (a run nobody started is counted and dropped before), and
messages the proxy writes itself are not copied.  The router holds one tap (None: nothing
to call, nothing paid) — :class:`TapFan` when there are several.  A tap never raises into the
router; it counts what it drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from pybrid.wire.layout import Layout
from pybrid.wire.monitor_header import FLAG_TCP_LANE

#: ``flags`` of an event: the backend delivered the message on its TCP control lane.
TCP_LANE = FLAG_TCP_LANE


@attrs.frozen(eq=False)
class RunInfo:
    """A registered run, as every tap names and knows it."""

    #: The id the client named: what every output names the run by.
    client_id: str
    #: The id the proxy gave the run towards the backends (kept as a second name).
    proxy_id: str
    #: Carrier paths the run was started on.
    carriers: tuple[str, ...]
    #: Runs registered by this proxy, from 1.
    number: int
    #: What the start command said, where known: ``sample_rate`` (Hz), ``channels`` …
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    #: The router's live count per data path (bytes): the highest chunk number seen + 1.
    chunks_seen: Mapping[bytes, int] = attrs.field(factory=dict, repr=False)

    def as_record(self) -> dict[str, Any]:
        """Plain data for JSON records (shm RUN_START, the multicast run record)."""
        return {"run_id": self.client_id, "proxy_run_id": self.proxy_id,
                "carriers": list(self.carriers), "run": self.number, **self.meta}


@attrs.frozen
class RunEnd:
    """How a run ended: ``state`` DONE or ERROR (protobuf), 0 if released unfinished."""

    state: int
    finished: Mapping[str, int]
    #: Data chunks of the run forwarded, and lost (not received) in the router's accounting.
    chunks: int
    lost: int


class RunTap(Protocol):
    """What the router tells a tap; see the module note.  No method raises."""

    def run_started(self, run: RunInfo) -> None: ...

    def chunk(self, run: RunInfo, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int) -> None: ...

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None: ...

    def run_ended(self, run: RunInfo, end: RunEnd) -> None: ...


@attrs.define(eq=False)
class TapFan:
    """Several taps as one, in order."""

    taps: list[RunTap] = attrs.field(factory=list)

    def run_started(self, run: RunInfo) -> None:
        for tap in self.taps:
            tap.run_started(run)

    def chunk(self, run: RunInfo, lane: int, lay: Layout | None, number: int,
              payload: bytes, flags: int) -> None:
        for tap in self.taps:
            tap.chunk(run, lane, lay, number, payload, flags)

    def state_changed(self, run: RunInfo, lane: int, path: str, state: int, reason: str,
                      payload: bytes, flags: int) -> None:
        for tap in self.taps:
            tap.state_changed(run, lane, path, state, reason, payload, flags)

    def run_ended(self, run: RunInfo, end: RunEnd) -> None:
        for tap in self.taps:
            tap.run_ended(run, end)


def fan(taps: list[Any]) -> RunTap | None:
    """The router's tap for ``taps`` (Nones skipped): None, the one tap, or a :class:`TapFan`."""
    present = [t for t in taps if t is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else TapFan(present)


__all__ = ["TCP_LANE", "RunEnd", "RunInfo", "RunTap", "TapFan", "fan"]

"""The router's vocabulary: the partners it talks to (typing Protocols), one registered run
(:class:`RunTrack`), its counters and its status record.  The router itself is
:class:`pybrid.proxy.data.router.RunRouter`."""

from __future__ import annotations

from typing import Protocol

import attrs

from pybrid.proxy.data.sequence import RunChunks
from pybrid.proxy.taps.base import RunInfo


class RunTarget(Protocol):
    """Where a run's traffic goes: an active session."""

    @property
    def session_id(self) -> str: ...

    def deliver(self, payload: bytes) -> None: ...

    def run_ended(self, run_id: str, state: int) -> None: ...


class StateObserver(Protocol):
    """Told of every state change of a run (after delivery): the run's barrier."""

    def state_changed(
        self, backend: str, carriers: tuple[str, ...], state: int, reason: str
    ) -> None: ...


class LaneView(Protocol):
    """A backend as the router sees it: its name for logs, its carrier paths, and its lane's
    index (the monitor header's lane index)."""

    @property
    def name(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...

    @property
    def index(self) -> int: ...


@attrs.define
class RunTrack:
    """One registered run: who gets its traffic, which carriers have finished, and its chunk
    accounting (:mod:`pybrid.proxy.data.sequence`)."""

    #: The id the proxy gave the run towards the backends (the routing key).
    run_id: str
    target: RunTarget
    carriers: frozenset[str]
    #: The id the client named (every message to the client carries it); its UTF-8 bytes.
    client_id: str = ""
    client_bytes: bytes = b""
    finished: dict[str, int] = attrs.field(factory=dict)
    ended: bool = False
    #: Next expected ``Run.chunk`` per carrier path (bytes, as in the datagram).
    next_chunk: dict[bytes, int] = attrs.field(factory=dict)
    observer: StateObserver | None = None
    #: Lost, reordered and late chunks (set by :meth:`RunRouter.register_run`).
    chunks: RunChunks | None = None
    #: What the taps are told of the run (:mod:`pybrid.proxy.taps.base`); told of its end.
    info: RunInfo = attrs.field(default=attrs.Factory(
        lambda t: RunInfo(t.client_id or t.run_id, t.run_id, tuple(sorted(t.carriers)), 0),
        takes_self=True))
    tap_ended: bool = False


@attrs.define
class RouterCounters:
    """What the router did with backend run traffic."""

    forwarded: int = 0
    states: int = 0
    foreign_run: int = 0
    unparseable: int = 0
    unexpected_kind: int = 0
    #: Data chunks lost: skipped and not received within the reorder window or the run.
    gaps: int = 0
    #: Data chunks that arrived after a later chunk of their carrier, in time.
    reordered: int = 0
    #: Data chunks below the next expected number that filled no open gap (duplicates, or
    #: arriving after being counted in ``gaps``).
    late: int = 0
    #: State changes for a carrier whose run already reached DONE or ERROR there (e.g. the
    #: device's own states after the proxy wrote ERROR at shutdown): not delivered.
    late_states: int = 0


@attrs.frozen
class RunProgress:
    """One registered run as the status page shows it."""

    id: str
    #: Carriers the run was started on, and how many of them have finished.
    carriers: int
    finished: int
    #: Chunk positions reached, summed over the carriers (lost chunks included).
    chunks: int


@attrs.frozen(kw_only=True)
class RouterStatus(RouterCounters):
    """What the router did and holds (:meth:`~pybrid.proxy.data.router.RunRouter.status`): its
    counters, then per carrier and per run."""

    #: Data chunks forwarded, and chunks lost, per carrier path since start.
    chunks_by_carrier: dict[str, int]
    gaps_by_carrier: dict[str, int]
    runs: tuple[RunProgress, ...]


__all__ = ["LaneView", "RouterCounters", "RouterStatus", "RunProgress", "RunTarget", "RunTrack",
           "StateObserver"]

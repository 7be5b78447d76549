"""What the run router talks to: run targets (sessions), state observers (barriers),
backends as sources, and the monitor tap."""

from __future__ import annotations

from typing import Protocol


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


class Source(Protocol):
    """A backend as the router sees it: its name for logs and its carrier paths (and, for the
    monitor tap, an ``index`` attribute: the lane's index, 0 if absent)."""

    @property
    def name(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...


class Tap(Protocol):
    """What the router needs of a :class:`pybrid.monitor.MulticastTap`."""

    def emit(self, payload: bytes, carrier_index: int, flags: int = 0) -> None: ...

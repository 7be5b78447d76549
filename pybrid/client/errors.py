"""Typed errors of the client API.

Every failure a caller can see is a :class:`ClientError` subclass (plus
:class:`~pybrid.wire.correlate.RequestTimeout`, re-exported here, for a request nobody answered),
so ``pybrid-run`` and applications can map them to exit codes and messages without parsing text.
Each message names what failed: the request kind, the peer, the run, the carrier.
"""

from __future__ import annotations

from pybrid.wire.correlate import RequestTimeout


class ClientError(Exception):
    """Base class of every error raised by :mod:`pybrid.client`."""


class ConnectError(ClientError):
    """The TCP connection could not be established (refused, unreachable, name not found,
    connect timeout)."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot connect to {target}: {reason}")


class ConnectionLost(ClientError):
    """The connection closed (or the peer sent an id-less error) while something waited on it."""


class RequestFailed(ClientError):
    """The peer answered a request with ``error_message``."""

    def __init__(self, kind: str, description: str, peer: str = "") -> None:
        self.kind = kind
        self.description = description
        self.peer = peer
        where = f" ({peer})" if peer else ""
        super().__init__(f"{kind} failed{where}: {description or 'no description'}")


class AuthenticationError(RequestFailed):
    """The peer rejected the bearer token (or required one that was not given)."""


class DeviceBusyError(ClientError):
    """The device or proxy kept answering ``busy_response`` until ``busy_timeout`` ran out."""

    def __init__(self, kind: str, waited: float, attempts: int, peer: str = "") -> None:
        self.kind = kind
        self.waited = waited
        self.attempts = attempts
        self.peer = peer
        where = f"{peer} " if peer else ""
        super().__init__(
            f"{where}still busy after {waited:.1f} s ({attempts} attempts of {kind}); "
            "another session is using the device"
        )


class RunError(ClientError):
    """A carrier reported the ERROR run state."""

    def __init__(self, run_id: str, carrier: str, reason: str) -> None:
        self.run_id = run_id
        self.carrier = carrier
        self.reason = reason
        super().__init__(f"run {run_id} failed on carrier {carrier}: {reason or 'no reason given'}")


class RunTimeout(ClientError, TimeoutError):
    """A run did not reach the expected state on every carrier in time."""

    def __init__(self, run_id: str, state: str, waiting: list[str], seconds: float) -> None:
        self.run_id = run_id
        self.state = state
        self.waiting = waiting
        self.seconds = seconds
        super().__init__(
            f"run {run_id}: carrier(s) {', '.join(waiting)} did not reach {state} "
            f"within {seconds:g} s"
        )


class PingTimeout(ClientError, TimeoutError):
    """No answer to a ping within its timeout."""

    def __init__(self, kind: str, seconds: float, peer: str = "") -> None:
        self.kind = kind
        self.seconds = seconds
        where = f" from {peer}" if peer else ""
        super().__init__(f"no answer to {kind} ping{where} within {seconds:g} s")


class ApbError(ClientError):
    """An ``.apb`` file that cannot be read, or a module that cannot be written."""


__all__ = [
    "ApbError",
    "AuthenticationError",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "DeviceBusyError",
    "PingTimeout",
    "RequestFailed",
    "RequestTimeout",
    "RunError",
    "RunTimeout",
]

"""Run traffic from backends to the session that started the run.

Design note
-----------
Backends send three kinds of run traffic, by UDP (the proxy's intake sockets) or, when they
refused UDP, as frames on their control connection: ``run_data_message``,
``run_data_end_message`` and ``run_state_change_message``.  Both lanes end in
:meth:`RunRouter.route`, which

* forwards data and data-end messages as the backend's original bytes (never re-serialized)
  to the target that registered the run id; a run id nobody registered — a run of a session
  that has ended, or of another client of the device — is dropped, counted in
  ``counters.foreign_run`` and logged once per run id.  This is what keeps a dead client's run
  out of the next session;
* counts chunk-sequence gaps per carrier (``Run.chunk`` numbers data messages 0, 1, 2 … per
  run and carrier): ``gaps_by_carrier``, plus ``counters.reordered`` for chunks arriving late;
* stamps state changes with the carrier they belong to.  A state change that names its
  ``entity`` is forwarded unchanged.  One without (the reference mock sends none) applies to
  every carrier of the backend that sent it, so it is re-emitted once per carrier of that
  backend with ``entity.path`` set: a 2-carrier backend yields two state streams, which is what
  the reference client waits for (it tracks TAKE_OFF and DONE per carrier path);
* notices the end of a run: once every carrier the run was registered with reached DONE or
  ERROR, the target's ``run_ended`` is called (the session timeout restarts then).

State changes are rare (a handful per run and carrier), so stamping parses and re-serializes;
data messages — the hot path — are parsed once for the run id, chunk and carrier path, and
otherwise passed through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import attrs
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from pybrid.proto import pb

_FINAL_STATES = frozenset((pb.DONE, pb.ERROR))
_REPORT_LIMIT = 1024  # foreign run ids remembered for log-once


class RunTarget(Protocol):
    """Where a run's traffic goes: an active session."""

    @property
    def session_id(self) -> str: ...

    def deliver(self, payload: bytes) -> None: ...

    def run_ended(self, run_id: str, state: int) -> None: ...


class Source(Protocol):
    """A backend as the router sees it: its name for logs and its carrier paths."""

    @property
    def name(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...


def carrier_of(path: str) -> str:
    """The carrier path (``/<MAC>``) an entity path starts with."""
    stripped = path.strip("/")
    return "/" + stripped.split("/", 1)[0] if stripped else ""


@attrs.define
class RunTrack:
    """One registered run: who gets its traffic and which carriers have finished."""

    run_id: str
    target: RunTarget
    carriers: frozenset[str]
    finished: dict[str, int] = attrs.field(factory=dict)
    ended: bool = False


@attrs.define
class RouterCounters:
    """What the router did with backend run traffic."""

    forwarded: int = 0
    states: int = 0
    foreign_run: int = 0
    unparseable: int = 0
    unexpected_kind: int = 0
    gaps: int = 0
    reordered: int = 0


@attrs.define(eq=False)
class RunRouter:
    """Routes backend run traffic to the session that started the run; see the module note."""

    debug: bool = False
    runs: dict[str, RunTrack] = attrs.field(factory=dict)
    counters: RouterCounters = attrs.field(factory=RouterCounters)
    gaps_by_carrier: dict[str, int] = attrs.field(factory=dict)
    _next_chunk: dict[tuple[str, str], int] = attrs.field(factory=dict)
    _reported: set[str] = attrs.field(factory=set)

    log = Logger()

    # -- registration (control side) ---------------------------------------------------

    def register_run(self, run_id: str, target: RunTarget, carriers: Iterable[str]) -> None:
        self.runs[run_id] = RunTrack(run_id, target, frozenset(carriers))

    def forget_run(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        self._drop_chunks({run_id})

    def release(self, target: RunTarget) -> list[str]:
        """Unregister every run of ``target``; return the ids of those not yet ended."""
        mine = [t for t in self.runs.values() if t.target is target]
        for track in mine:
            del self.runs[track.run_id]
        self._drop_chunks({t.run_id for t in mine})
        return [t.run_id for t in mine if not t.ended]

    def _drop_chunks(self, run_ids: set[str]) -> None:
        if run_ids:
            for key in [k for k in self._next_chunk if k[0] in run_ids]:
                del self._next_chunk[key]

    # -- the data path -------------------------------------------------------------------

    def route_datagram(self, source: Source, payload: bytes) -> None:
        """A datagram from a backend's intake socket."""
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError:
            self.counters.unparseable += 1
            self.log.warn("unparseable datagram from backend {backend} ({length} bytes)",
                          backend=source.name, length=len(payload))
            return
        self.route(source, env, payload)

    def route(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
        """One run message from ``source``, parsed (``env``) and raw (``payload``)."""
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        body: pb.RunDataMessage | pb.RunDataEndMessage
        if kind == "run_data_message":
            body = msg.run_data_message
        elif kind == "run_data_end_message":
            body = msg.run_data_end_message
        elif kind == "run_state_change_message":
            self._state(source, msg.run_state_change_message, env, payload)
            return
        else:
            self.counters.unexpected_kind += 1
            self.log.warn("unexpected {kind} on the data lane of backend {backend}, dropped",
                          kind=kind or env.WhichOneof("kind"), backend=source.name)
            return
        run = body.run
        track = self.runs.get(run.id)
        if track is None:
            self._foreign(source, run.id, kind)
            return
        if kind == "run_data_message":
            self._sequence(run.id, body.entity.path, run.chunk)
        self.counters.forwarded += 1
        track.target.deliver(payload)

    def _sequence(self, run_id: str, path: str, chunk: int) -> None:
        key = (run_id, path)
        expected = self._next_chunk.get(key, 0)
        if chunk == expected:
            self._next_chunk[key] = chunk + 1
        elif chunk > expected:
            missing = chunk - expected
            self.counters.gaps += missing
            self.gaps_by_carrier[path] = self.gaps_by_carrier.get(path, 0) + missing
            self._next_chunk[key] = chunk + 1
            self.log.warn(
                "run {run}: {missing} chunk(s) missing from carrier {carrier} before chunk {chunk}",
                run=run_id, carrier=path, missing=missing, chunk=chunk,
            )
        else:
            self.counters.reordered += 1

    def _foreign(self, source: Source, run_id: str, kind: str) -> None:
        self.counters.foreign_run += 1
        if run_id not in self._reported:
            if len(self._reported) >= _REPORT_LIMIT:
                self._reported.clear()
            self._reported.add(run_id)
            self.log.info(
                "dropping {kind} of run {run} from backend {backend}: no active session "
                "started that run (further ones counted silently)",
                kind=kind, run=run_id, backend=source.name,
            )

    def _state(
        self, source: Source, change: pb.RunStateChangeMessage, env: pb.Envelope, payload: bytes
    ) -> None:
        run_id = change.run.id
        track = self.runs.get(run_id)
        if track is None:
            self._foreign(source, run_id, "run_state_change_message")
            return
        self.counters.states += 1
        new_state = change.new_
        if change.HasField("entity") and change.entity.path:
            paths: tuple[str, ...] = (carrier_of(change.entity.path),)
            track.target.deliver(payload)
        else:
            paths = source.carriers
            if not paths:  # carriers unknown: the client applies it to all of them
                track.target.deliver(payload)
            for path in paths:
                change.entity.path = path
                track.target.deliver(env.SerializeToString())
        if self.debug:
            self.log.debug("run {run}: state {state} for {carriers} from {backend}",
                           run=run_id, state=pb.RunState.Name(new_state), carriers=paths,
                           backend=source.name)
        if new_state in _FINAL_STATES and not track.ended:
            for path in paths:
                track.finished[path] = new_state
            if track.carriers <= track.finished.keys():
                track.ended = True
                final = pb.ERROR if pb.ERROR in track.finished.values() else pb.DONE
                track.target.run_ended(run_id, final)

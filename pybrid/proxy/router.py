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

State changes are rare (a handful per run and carrier), so stamping parses and re-serializes.
Data messages are the hot path: a datagram is matched against :data:`DATA_HEAD`, one compiled
regular expression for the layout every protobuf serializer writes (fields in number order,
36-byte UUID run id, optional 36-byte message id, one-byte lengths of the run and entity path),
which yields the kind, run id, chunk varint and carrier path without building any protobuf
object (≈ 0.5 µs instead of ≈ 2.7 µs for a full parse).  Anything else — other id lengths,
other field orders, state changes, garbage — takes the full protobuf parse; both paths give
the same result (a unit test checks).  Runs are looked up by their id's bytes; chunk sequence
state lives in each :class:`RunTrack`.

**Monitor tap.**  When the service gives the router a tap (``--monitor``), every datagram
from a backend's intake (:meth:`RunRouter.route_datagram`) and every run message a backend
sent on its TCP lane (:meth:`RunRouter.route_message`, flagged ``FLAG_TCP_LANE``) is handed to
``tap.emit`` first, as the bytes in hand, with the backend's lane index as carrier index — one
``sendto`` per group, before and independent of routing (a run nobody registered is still
monitored).  Messages the proxy writes itself (:meth:`RunRouter.route`) are not copied:
monitors see what the backends sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

import attrs
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from pybrid.proto import pb

_FINAL_STATES = frozenset((pb.DONE, pb.ERROR))
_REPORT_LIMIT = 1024  # foreign run ids remembered for log-once
#: The monitor header's flag for messages that came on a backend's TCP lane.
FLAG_TCP_LANE = 0x01

_VARINT = rb"[\x80-\xff]{0,4}[\x00-\x7f]"
#: A run_data_message / run_data_end_message Envelope as serializers lay it out: groups are
#: the kind's tag byte (0x92 data, 0x9a end), the 36-byte run id, the chunk varint (None for
#: chunk 0) and the one-byte carrier path length; the path follows the match.
DATA_HEAD = re.compile(
    rb"\xaa\x06" + _VARINT            # Envelope.message_v1, length
    + rb"(?:\x0a\x24.{36})?"           # MessageV1.id (a UUID), optional
    + rb"([\x92\x9a])\x13" + _VARINT  # MessageV1.run_data_message / _end_message, length
    + rb"\x0a[\x00-\x7f]\x0a\x24(.{36})"  # .run{ id (36 bytes)
    + rb"(?:\x10(" + _VARINT + rb"))?"  #        chunk }
    + rb"\x12[\x00-\x7f]\x0a([\x00-\x7f])",  # .entity{ path (length; bytes follow)
    re.DOTALL,
)
_DATA_TAG = 0x92


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
    #: Next expected ``Run.chunk`` per carrier path (bytes, as in the datagram).
    next_chunk: dict[bytes, int] = attrs.field(factory=dict)
    observer: StateObserver | None = None


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
    #: The monitor tap (``--monitor``), or None.
    tap: Tap | None = None
    runs: dict[str, RunTrack] = attrs.field(factory=dict)
    counters: RouterCounters = attrs.field(factory=RouterCounters)
    gaps_by_carrier: dict[str, int] = attrs.field(factory=dict)
    #: ``runs`` keyed by the run id's UTF-8 bytes (the fast path's lookup).
    _by_bytes: dict[bytes, RunTrack] = attrs.field(factory=dict)
    _reported: set[str] = attrs.field(factory=set)

    log = Logger()

    # -- registration (control side) ---------------------------------------------------

    def register_run(
        self, run_id: str, target: RunTarget, carriers: Iterable[str],
        observer: StateObserver | None = None,
    ) -> None:
        track = RunTrack(run_id, target, frozenset(carriers), observer=observer)
        old = self.runs.get(run_id)
        if old is not None:
            self._by_bytes.pop(old.run_id.encode(), None)
        self.runs[run_id] = track
        self._by_bytes[run_id.encode()] = track

    def forget_run(self, run_id: str) -> None:
        if self.runs.pop(run_id, None) is not None:
            self._by_bytes.pop(run_id.encode(), None)

    def release(self, target: RunTarget) -> list[str]:
        """Unregister every run of ``target``; return the ids of those not yet ended."""
        mine = [t for t in self.runs.values() if t.target is target]
        for track in mine:
            del self.runs[track.run_id]
            self._by_bytes.pop(track.run_id.encode(), None)
        return [t.run_id for t in mine if not t.ended]

    # -- the data path -------------------------------------------------------------------

    def route_datagram(self, source: Source, payload: bytes) -> None:
        """A datagram from a backend's intake socket (the hot path; see the module note)."""
        tap = self.tap
        if tap is not None:
            tap.emit(payload, getattr(source, "index", 0))
        match = DATA_HEAD.match(payload)
        if match is None:
            self._parse_and_route(source, payload)
            return
        tag, rid, chunk, path_len = match.groups()
        track = self._by_bytes.get(rid)
        if track is None:
            self._foreign(source, rid.decode("utf-8", "replace"),
                          "run_data_message" if tag[0] == _DATA_TAG else "run_data_end_message")
            return
        if tag[0] == _DATA_TAG:
            at = match.end()
            path = payload[at : at + path_len[0]]
            if chunk is None:
                number = 0
            elif len(chunk) == 1:
                number = chunk[0]
            else:
                number = _varint(chunk)
            next_chunk = track.next_chunk
            if next_chunk.get(path, 0) == number:
                next_chunk[path] = number + 1
            else:
                self._sequence(track, path, number)
        self.counters.forwarded += 1
        track.target.deliver(payload)

    def _parse_and_route(self, source: Source, payload: bytes) -> None:
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError:
            self.counters.unparseable += 1
            self.log.warn("unparseable datagram from backend {backend} ({length} bytes)",
                          backend=source.name, length=len(payload))
            return
        self._route(source, env, payload)

    def route_message(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
        """One run message ``source`` sent on its TCP lane, parsed (``env``) and raw: to the
        monitor tap (flagged ``FLAG_TCP_LANE``), then :meth:`route`."""
        tap = self.tap
        if tap is not None:
            tap.emit(payload, getattr(source, "index", 0), FLAG_TCP_LANE)
        self._route(source, env, payload)

    def route(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
        """Route one run message as if ``source`` had sent it (no monitor copy: also used for
        state changes the proxy writes itself)."""
        self._route(source, env, payload)

    def _route(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
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
            path = body.entity.path.encode()
            if track.next_chunk.get(path, 0) == run.chunk:
                track.next_chunk[path] = run.chunk + 1
            else:
                self._sequence(track, path, run.chunk)
        self.counters.forwarded += 1
        track.target.deliver(payload)

    def _sequence(self, track: RunTrack, path: bytes, chunk: int) -> None:
        """A chunk out of sequence: count the gap (or the late chunk)."""
        expected = track.next_chunk.get(path, 0)
        if chunk > expected:
            missing = chunk - expected
            carrier = path.decode("utf-8", "replace")
            self.counters.gaps += missing
            self.gaps_by_carrier[carrier] = self.gaps_by_carrier.get(carrier, 0) + missing
            track.next_chunk[path] = chunk + 1
            self.log.warn(
                "run {run}: {missing} chunk(s) missing from carrier {carrier} before chunk {chunk}",
                run=track.run_id, carrier=carrier, missing=missing, chunk=chunk,
            )
        elif chunk < expected:
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
        if track.observer is not None:
            track.observer.state_changed(source.name, paths, new_state, change.reason)


def _varint(data: bytes) -> int:
    value = 0
    for shift, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * shift)
    return value

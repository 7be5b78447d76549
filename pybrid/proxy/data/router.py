"""Run traffic from backends to the session that started the run.

Design note
-----------
Backends send three kinds of run traffic, by UDP (the proxy's intake sockets) or, when they
refused UDP, as frames on their control connection: ``run_data_message``,
``run_data_end_message`` and ``run_state_change_message``.  Both lanes end in
:meth:`RunRouter.route`, which

* forwards data and data-end messages as the backend's original bytes (never re-serialized)
  to the target that registered the run id, with the run id put back to the one the client
  named (see *Run ids* below); a run id nobody registered — a run of a session
  that has ended, or of another client of the device — is dropped and counted in
  ``counters.foreign_run``.  This is what keeps a dead client's run out of the next session;
* accounts for chunks per run and carrier (``Run.chunk`` numbers data messages 0, 1, 2 …):
  lost (``counters.gaps``, ``gaps_by_carrier``), reordered and late (:mod:`.sequence`);
* stamps state changes with the carrier they belong to.  A state change that names its
  ``entity`` is forwarded unchanged.  One without (the reference mock sends none) applies to
  every carrier of the backend that sent it, so it is re-emitted once per carrier of that
  backend with ``entity.path`` set: a 2-carrier backend yields two state streams, which is what
  the reference client waits for (it tracks TAKE_OFF and DONE per carrier path);
* notices the end of a run: once every carrier the run was registered with reached DONE or
  ERROR, the target's ``run_ended`` is called (the session timeout restarts then);
* keeps a carrier's final state its last: later ones (the device's after an ERROR the proxy
  wrote) are counted in ``late_states``, not sent (the reference client can hang on them).

State changes are rare (a handful per run and carrier), so stamping parses and re-serializes.
Data messages are the hot path (:mod:`pybrid.wire.layout`): a datagram is matched against
the layouts learned from datagrams protobuf parsed — per backend and datagram length, every
byte but the ids, the chunk varint and the samples must be the same — and its run id, chunk
and carrier path are read at known offsets, without building any protobuf object.  A datagram
no layout matches takes the full parse (and teaches its layout if it is a consistent data
message), so a datagram cut or damaged anywhere is dropped as ``unparseable``, never
forwarded.  :meth:`RunRouter.route_datagram` returns whether the datagram belonged to a
registered run (the intake latches the device's source port on that:
:mod:`pybrid.proxy.backend.intake`).

**Run ids.**  A run is registered under the id the proxy gave it towards the backends
(:func:`new_run_id`: 122 random bits, unpredictable to anyone but the proxy and the devices;
see :mod:`pybrid.proxy.runs.dispatch`) together with the id the client named
(``client_id``).  Only the proxy's id routes: a client cannot name, join or end another
session's run, and a local process cannot forge datagrams for a run it cannot name.  Every
message to the client carries the client's id again: on the fast path by replacing the 36
bytes in place (:func:`~pybrid.wire.layout.with_run_id`); a client id of another length,
and state changes, by a parse and re-serialization with the client's id.

**Logging is bounded.**  A backend's address can send anything at any rate: drops are counted
exactly but logged for the first three and every 1000th of each kind (unparseable, unexpected
kind, new unknown run ids) since the last run was registered, with the totals; chunk gaps are
summed up per run (:class:`~pybrid.proxy.data.sequence.RunChunks`).

**Taps.**  The router is the proxy's one way out besides the clients: when the service gives
it a tap (``--monitor``, ``--shm-tap``: :mod:`pybrid.proxy.taps`), it tells the tap, through
:class:`~pybrid.proxy.taps.base.RunTap`, of every registered run's start (the client's run id
and what the start command said), every chunk and state change *as delivered to the client*
(the client's run id in place; a fast-path chunk with its layout and chunk number) and its
end with the accounting.  Runs nobody registered and messages the proxy writes itself
(:meth:`RunRouter.route`) are not copied.  No tap: one ``is None`` test per message."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.data.model import (
    LaneView,
    RouterCounters,
    RouterStatus,
    RunProgress,
    RunTarget,
    RunTrack,
    StateObserver,
)
from pybrid.proxy.data.sequence import RunChunks
from pybrid.proxy.taps.base import TCP_LANE, RunEnd, RunInfo, RunTap
from pybrid.wire import layout
from pybrid.wire.counters import snapshot
from pybrid.wire.layout import DATA_HEAD, DATA_TAG, Layout, LayoutTable, layout_of
from pybrid.wire.messages import FINAL_STATES
from pybrid.wire.monitor_header import FLAG_TCP_LANE
from pybrid.wire.noise import worth_logging
from pybrid.wire.paths import carrier_of

_REPORT_LIMIT = 1024  # foreign run ids remembered for log-once
_LAYOUT_LENGTHS = 64  # datagram lengths with layouts remembered per backend
_LAYOUTS_PER_LENGTH = 16  # layouts (carriers, id or not) remembered per length

__all__ = ["DATA_HEAD", "FLAG_TCP_LANE", "RouterCounters", "RunRouter", "RunTrack"]


@attrs.define(eq=False)
class RunRouter:
    """Routes backend run traffic to the session that started the run; see the module note."""

    debug: bool = False
    #: The taps (``--monitor``, ``--shm-tap``: :mod:`pybrid.proxy.taps`), or None.
    tap: RunTap | None = None
    #: Called whenever a run is registered (the service unlatches the intakes).
    on_register: Callable[[], None] | None = None
    #: Registered runs by the id the client named (what logs and the status page show).
    runs: dict[str, RunTrack] = attrs.field(factory=dict)
    counters: RouterCounters = attrs.field(factory=RouterCounters)
    #: Chunks lost per carrier path since start (see ``RouterCounters.gaps``).
    gaps_by_carrier: dict[str, int] = attrs.field(factory=dict)
    #: Data chunks forwarded per carrier path (bytes, as in the datagrams) since start.
    chunks_by_carrier: dict[bytes, int] = attrs.field(factory=dict)
    #: ``runs`` keyed by the proxy's run id as UTF-8 bytes (the routing key, both paths).
    _by_bytes: dict[bytes, RunTrack] = attrs.field(factory=dict)
    _reported: set[str] = attrs.field(factory=set)
    #: Drops of each kind since the last registration, for bounded logging.
    _noise: dict[str, int] = attrs.field(factory=dict)
    #: Layouts of data datagrams protobuf accepted, per backend name and datagram length.
    _layouts: dict[str, LayoutTable[Layout]] = attrs.field(factory=dict)
    #: Runs registered since start (:attr:`RunInfo.number`).
    _numbered: int = 0

    log = Logger()

    def status(self) -> RouterStatus:
        runs = tuple(RunProgress(id=t.client_id, carriers=len(t.carriers), finished=len(t.finished),
                                 chunks=sum(t.next_chunk.values()))
                     for t in sorted(self.runs.values(), key=lambda t: t.client_id))
        return snapshot(
            RouterStatus, self.counters,
            chunks_by_carrier={path.decode("utf-8", "replace"): n
                               for path, n in self.chunks_by_carrier.items()},
            gaps_by_carrier=dict(self.gaps_by_carrier), runs=runs,
        )

    # -- registration (control side) ---------------------------------------------------

    def register_run(
        self, run_id: str, target: RunTarget, carriers: Iterable[str],
        observer: StateObserver | None = None, client_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Route run ``run_id`` (the backends' id) to ``target``, as ``client_id``; ``meta``
        (sample rate …) is what the taps are told of the run besides its ids and carriers."""
        client = run_id if client_id is None else client_id
        self._numbered += 1
        paths = frozenset(carriers)
        seen: dict[bytes, int] = {}  # the track's count, the taps read it at a carrier's end
        info = RunInfo(client, run_id, tuple(sorted(paths)), self._numbered, meta or {}, seen)
        track = RunTrack(run_id, target, paths, client, client.encode(), next_chunk=seen,
                         observer=observer, info=info,
                         chunks=RunChunks(client, self.counters, self.gaps_by_carrier))
        for old in (self.runs.get(client), self._by_bytes.get(run_id.encode())):
            if old is not None:  # a reused client id, or (never) a reused proxy id
                self._unregister(old)
        self.runs[client] = track
        self._by_bytes[run_id.encode()] = track
        self._noise.clear()
        if self.tap is not None:
            self.tap.run_started(info)
        if self.on_register is not None:
            self.on_register()

    def track_of(self, run_id: str) -> RunTrack | None:
        """The registered run with the proxy's (backend-facing) id ``run_id``, or None."""
        return self._by_bytes.get(run_id.encode())

    def forget_run(self, run_id: str) -> None:  # run_id: the proxy's id
        track = self._by_bytes.get(run_id.encode())
        if track is not None:
            self._unregister(track)

    def _unregister(self, track: RunTrack) -> None:
        if self.runs.get(track.client_id) is track:
            del self.runs[track.client_id]
        self._by_bytes.pop(track.run_id.encode(), None)  # the proxy's ids are unique
        self._close(track)

    def release(self, target: RunTarget) -> list[str]:
        """Unregister every run of ``target``; return the ids of those not yet ended."""
        mine = [t for t in self.runs.values() if t.target is target]
        for track in mine:
            self._unregister(track)
        return [t.run_id for t in mine if not t.ended]

    # -- the data path -------------------------------------------------------------------

    def route_datagram(self, lane: LaneView, payload: bytes) -> bool:
        """A datagram from a backend's intake socket (the hot path; see the module note).
        True if it was traffic of a registered run."""
        table = self._layouts.get(lane.name)
        found = None if table is None else table.match(payload)
        if found is None:
            return self._new_layout(lane, payload)
        lay, _, number = found
        if number < 0:  # the chunk varint and its tag (0x10) are not among the fixed bytes
            return self._parse_and_route(lane, payload)
        rid = payload[lay.run_at : lay.run_at + 36]
        track = self._by_bytes.get(rid)
        if track is None:
            if not rid.isascii():  # valid UTF-8 or not: protobuf decides
                return self._parse_and_route(lane, payload)
            self._foreign(lane, rid.decode(), "run_data_message" if lay.tag == DATA_TAG
                          else "run_data_end_message")
            return False
        if lay.tag == DATA_TAG:
            path = lay.path
            chunks = self.chunks_by_carrier
            chunks[path] = chunks.get(path, 0) + 1
            next_chunk = track.next_chunk
            if next_chunk.get(path, 0) == number:
                next_chunk[path] = number + 1
            else:
                self._sequence(track, path, number)
        client = track.client_bytes
        if client != rid:
            if len(client) != 36:
                return self._parse_and_route(lane, payload)
            payload = layout.with_run_id(payload, lay.run_at, client)
        self.counters.forwarded += 1
        track.target.deliver(payload)
        if self.tap is not None:
            self.tap.chunk(track.info, lane.index, lay, number, payload, 0)
        return True

    def _new_layout(self, lane: LaneView, payload: bytes) -> bool:
        """A datagram no learned layout matches: the full parse decides; a data message that
        protobuf accepts and whose head is consistent (:func:`layout_of`) teaches its layout
        for this backend (at most ``_LAYOUTS_PER_LENGTH`` per length)."""
        env = self._parse(lane, payload)
        if env is None:
            return False
        lay = layout_of(payload)
        if lay is not None:
            table = self._layouts.get(lane.name)
            if table is None:
                table = self._layouts[lane.name] = LayoutTable(_LAYOUT_LENGTHS,
                                                                 _LAYOUTS_PER_LENGTH)
            table.learn(lay, lay)
        return self._route(lane, env, payload)

    def _parse(self, lane: LaneView, payload: bytes) -> pb.Envelope | None:
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError:
            self.counters.unparseable += 1
            noise = self._noise["unparseable"] = self._noise.get("unparseable", 0) + 1
            if worth_logging(noise):
                self.log.warn("unparseable datagram from backend {backend} ({length} bytes; "
                              "{count} unparseable so far)", backend=lane.name,
                              length=len(payload), count=self.counters.unparseable)
            return None
        return env

    def _parse_and_route(self, lane: LaneView, payload: bytes) -> bool:
        env = self._parse(lane, payload)
        return False if env is None else self._route(lane, env, payload)

    def route_message(self, lane: LaneView, env: pb.Envelope, payload: bytes) -> None:
        """One run message ``lane`` sent on its TCP lane, parsed (``env``) and raw: routed
        like a datagram, the taps told with :data:`~pybrid.proxy.taps.base.TCP_LANE`."""
        self._route(lane, env, payload, TCP_LANE)

    def route(self, lane: LaneView, env: pb.Envelope, payload: bytes) -> None:
        """Route one run message as if ``lane`` had sent it (no tap copy: also used for
        state changes the proxy writes itself)."""
        self._route(lane, env, payload, -1)

    def _route(self, lane: LaneView, env: pb.Envelope, payload: bytes, flags: int = 0) -> bool:
        """``flags`` for the taps: 0 a datagram, ``TCP_LANE``, -1 the proxy's own (no copy)."""
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        body: pb.RunDataMessage | pb.RunDataEndMessage
        if kind == "run_data_message":
            body = msg.run_data_message
        elif kind == "run_data_end_message":
            body = msg.run_data_end_message
        elif kind == "run_state_change_message":
            return self._state(lane, msg.run_state_change_message, env, payload, flags)
        else:
            self.counters.unexpected_kind += 1
            noise = self._noise["unexpected"] = self._noise.get("unexpected", 0) + 1
            if worth_logging(noise):
                self.log.warn("unexpected {kind} on the data lane of backend {backend}, dropped "
                              "({count} unexpected so far)",
                              kind=kind or env.WhichOneof("kind"), backend=lane.name,
                              count=self.counters.unexpected_kind)
            return False
        run = body.run
        track = self._by_bytes.get(run.id.encode())
        if track is None:
            self._foreign(lane, run.id, kind)
            return False
        if kind == "run_data_message":
            path = body.entity.path.encode()
            chunks = self.chunks_by_carrier
            chunks[path] = chunks.get(path, 0) + 1
            if track.next_chunk.get(path, 0) == run.chunk:
                track.next_chunk[path] = run.chunk + 1
            else:
                self._sequence(track, path, run.chunk)
        self.counters.forwarded += 1
        data = _as_client(track, run.id, env, body, payload)
        track.target.deliver(data)
        if self.tap is not None and flags >= 0:
            self.tap.chunk(track.info, lane.index, None, run.chunk, data, flags)
        return True

    # -- chunk accounting -----------------------------------------------------------------

    def _sequence(self, track: RunTrack, path: bytes, chunk: int) -> None:
        """A chunk out of sequence: a skip, or a reordered or late chunk."""
        chunks = track.chunks
        if chunks is None:
            chunks = track.chunks = RunChunks(track.client_id, self.counters,
                                              self.gaps_by_carrier)
        expected = track.next_chunk.get(path, 0)
        if chunk > expected:
            track.next_chunk[path] = chunk + 1
        chunks.out_of_order(path, expected, chunk)

    def settle_gaps(self) -> None:
        """Count chunks missing for longer than the reorder window as lost now (called once a
        second by the intake watch; the hot path only does so at a skip)."""
        for track in self.runs.values():
            if track.chunks is not None and track.chunks.holes:
                track.chunks.settle(track.next_chunk)

    def _close(self, track: RunTrack, state: int = 0) -> None:
        """The run is over (or no longer ours): chunks still missing are lost; summed up; the
        taps are told once (``state`` 0: released unfinished)."""
        if track.chunks is not None:
            track.chunks.close()
        if self.tap is not None and not track.tap_ended:
            track.tap_ended = True
            lost = sum(track.chunks.lost.values()) if track.chunks is not None else 0
            self.tap.run_ended(track.info, RunEnd(state, dict(track.finished),
                                                  sum(track.next_chunk.values()), lost))

    # -- drops and state changes ------------------------------------------------------------

    def _foreign(self, lane: LaneView, run_id: str, kind: str) -> None:
        self.counters.foreign_run += 1
        if run_id not in self._reported:
            if len(self._reported) >= _REPORT_LIMIT:
                self._reported.clear()
            self._reported.add(run_id)
            noise = self._noise["foreign"] = self._noise.get("foreign", 0) + 1
            if worth_logging(noise):
                self.log.info(
                    "dropping {kind} of run {run} from backend {backend}: no active session "
                    "started that run (further ones counted silently; {count} messages of "
                    "unknown runs dropped so far)",
                    kind=kind, run=run_id, backend=lane.name,
                    count=self.counters.foreign_run,
                )

    def _state(
        self, lane: LaneView, change: pb.RunStateChangeMessage, env: pb.Envelope, payload: bytes,
        flags: int = 0,
    ) -> bool:
        run_id = change.run.id
        track = self._by_bytes.get(run_id.encode())
        if track is None:
            self._foreign(lane, run_id, "run_state_change_message")
            return False
        self.counters.states += 1
        new_state = change.new_
        if track.client_id != run_id:
            change.run.id = track.client_id
            payload = b""  # re-serialized below, with the client's id
        if change.HasField("entity") and change.entity.path:
            paths: tuple[str, ...] = (carrier_of(change.entity.path),)
            sent = [(paths[0], payload or env.SerializeToString())]
        else:
            paths = lane.carriers
            sent = [] if paths else [("", payload or env.SerializeToString())]
            for path in paths:  # carriers unknown (none): the client applies it to all
                change.entity.path = path
                sent.append((path, env.SerializeToString()))
        if track.finished:  # a carrier's final state is its last: later ones are not sent
            kept = [(path, data) for path, data in sent if path not in track.finished]
            self.counters.late_states += len(sent) - len(kept)
            sent, paths = kept, tuple(path for path, _d in kept) if paths else paths
            if not sent:
                return True
        tap = self.tap if flags >= 0 else None
        for path, data in sent:
            track.target.deliver(data)
            if tap is not None:
                tap.state_changed(track.info, lane.index, path, new_state, change.reason,
                                  data, flags)
        if self.debug:
            self.log.debug("run {run}: state {state} for {carriers} from {backend}",
                           run=run_id, state=pb.RunState.Name(new_state), carriers=paths,
                           backend=lane.name)
        if new_state in FINAL_STATES and not track.ended:
            for path in paths:
                track.finished[path] = new_state
            if track.carriers <= track.finished.keys():
                track.ended = True
                final = pb.ERROR if pb.ERROR in track.finished.values() else pb.DONE
                self._close(track, final)
                track.target.run_ended(track.client_id, final)
        if track.observer is not None:
            track.observer.state_changed(lane.name, paths, new_state, change.reason)
        return True



def _as_client(track: RunTrack, run_id: str, env: pb.Envelope,
               body: pb.RunDataMessage | pb.RunDataEndMessage, payload: bytes) -> bytes:
    """A parsed data message as the client gets it: with the client's run id."""
    if track.client_id == run_id:
        return payload
    lay = layout_of(payload) if len(track.client_bytes) == 36 else None
    if lay is not None:
        return layout.with_run_id(payload, lay.run_at, track.client_bytes)
    body.run.id = track.client_id
    return env.SerializeToString()

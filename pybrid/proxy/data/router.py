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
  ERROR, the target's ``run_ended`` is called (the session timeout restarts then).

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

**Monitor tap.**  When the service gives the router a tap (``--monitor``), every datagram
from a backend's intake (:meth:`RunRouter.route_datagram`) and every run message a backend
sent on its TCP lane (:meth:`RunRouter.route_message`, flagged ``FLAG_TCP_LANE``) is handed to
``tap.emit`` first, as the bytes in hand, with the backend's lane index as carrier index — one
``sendto`` per group, before and independent of routing (a run nobody registered is still
monitored).  Messages the proxy writes itself (:meth:`RunRouter.route`) are not copied:
monitors see what the backends sent; so does the ``--shm-tap`` ``feed``, but a fast-path datagram
of a registered run comes with what the router knows of it (``feed.chunk``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.data.model import (
    RouterCounters,
    RouterStatus,
    RunProgress,
    RunTarget,
    RunTrack,
    Source,
    StateObserver,
    Tap,
)
from pybrid.proxy.data.sequence import RunChunks
from pybrid.wire import layout
from pybrid.wire.layout import DATA_HEAD, DATA_TAG, Layout, chunk_number, layout_of
from pybrid.wire.monitor_header import FLAG_TCP_LANE
from pybrid.wire.noise import worth_logging
from pybrid.wire.paths import carrier_of

if TYPE_CHECKING:
    from pybrid.proxy.taps.shm.feed import ShmFeed

_FINAL_STATES = frozenset((pb.DONE, pb.ERROR))
_REPORT_LIMIT = 1024  # foreign run ids remembered for log-once
_LAYOUT_LENGTHS = 64  # datagram lengths with layouts remembered per backend
_LAYOUTS_PER_LENGTH = 16  # layouts (carriers, id or not) remembered per length

__all__ = ["DATA_HEAD", "FLAG_TCP_LANE", "RouterCounters", "RunRouter", "RunTrack"]


@attrs.define(eq=False)
class RunRouter:
    """Routes backend run traffic to the session that started the run; see the module note."""

    debug: bool = False
    #: The monitor tap (``--monitor``), or None.
    tap: Tap | None = None
    feed: ShmFeed | None = None  #: The ``--shm-tap`` feed, or None (see the module note).
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
    _layouts: dict[str, dict[int, list[Layout]]] = attrs.field(factory=dict)

    log = Logger()

    def status(self) -> RouterStatus:
        runs = tuple(RunProgress(id=t.client_id, carriers=len(t.carriers), finished=len(t.finished),
                                 chunks=sum(t.next_chunk.values()))
                     for t in sorted(self.runs.values(), key=lambda t: t.client_id))
        return RouterStatus(
            counters=attrs.evolve(self.counters),
            chunks_by_carrier={path.decode("utf-8", "replace"): n
                               for path, n in self.chunks_by_carrier.items()},
            gaps_by_carrier=dict(self.gaps_by_carrier), runs=runs,
        )

    # -- registration (control side) ---------------------------------------------------

    def register_run(
        self, run_id: str, target: RunTarget, carriers: Iterable[str],
        observer: StateObserver | None = None, client_id: str | None = None,
    ) -> None:
        """Route run ``run_id`` (the backends' id) to ``target``, as ``client_id``."""
        client = run_id if client_id is None else client_id
        track = RunTrack(run_id, target, frozenset(carriers), client, client.encode(),
                         observer=observer,
                         chunks=RunChunks(client, self.counters, self.gaps_by_carrier))
        for old in (self.runs.get(client), self._by_bytes.get(run_id.encode())):
            if old is not None:  # a reused client id, or (never) a reused proxy id
                self._unregister(old)
        self.runs[client] = track
        self._by_bytes[run_id.encode()] = track
        self._noise.clear()
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

    def route_datagram(self, source: Source, payload: bytes) -> bool:
        """A datagram from a backend's intake socket (the hot path; see the module note).
        True if it was traffic of a registered run."""
        tap = self.tap
        if tap is not None:
            tap.emit(payload, source.index)
        layouts = self._layouts.get(source.name)
        if layouts is None:
            return self._new_layout(source, payload)
        for lay in layouts.get(len(payload), ()):
            if (  # the middle first: it holds the carrier path
                payload.startswith(lay.middle, lay.middle_at)
                and payload.startswith(lay.head)
                and payload.endswith(lay.tail)
                and (lay.id_at < 0 or (payload.startswith(lay.between, lay.id_at + 36)
                                       and payload[lay.id_at : lay.id_at + 36].isascii()))
            ):
                break
        else:
            return self._new_layout(source, payload)
        k = lay.chunk_len
        if k == 0:
            number = 0
        else:  # the chunk varint and its tag (0x10) are not among the fixed bytes
            at = lay.chunk_at
            number = payload[at] if k == 1 else chunk_number(payload[at : at + k])
            if payload[at - 1] != 0x10 or not 0 <= number < 0x80 ** k:
                return self._parse_and_route(source, payload)
        rid = payload[lay.run_at : lay.run_at + 36]
        track = self._by_bytes.get(rid)
        if track is None:
            if not rid.isascii():  # valid UTF-8 or not: protobuf decides
                return self._parse_and_route(source, payload)
            self._foreign(source, rid.decode(), "run_data_message" if lay.tag == DATA_TAG
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
        if self.feed is not None:
            self.feed.chunk(track, lay, number, payload, source.index)
        self.counters.forwarded += 1
        client = track.client_bytes
        if client == rid:
            track.target.deliver(payload)
        elif len(client) == 36:
            track.target.deliver(layout.with_run_id(payload, lay.run_at, client))
        else:
            return self._parse_and_route(source, payload)
        return True

    def _new_layout(self, source: Source, payload: bytes) -> bool:
        """A datagram no learned layout matches: the full parse decides; a data message that
        protobuf accepts and whose head is consistent (:func:`layout_of`) teaches its layout
        for this backend (at most ``_LAYOUTS_PER_LENGTH`` per length)."""
        env = self._parse(source, payload)
        if env is None:
            return False
        lay = layout_of(payload)
        if lay is not None:
            layouts = self._layouts.get(source.name)
            if layouts is None or len(layouts) >= _LAYOUT_LENGTHS:
                layouts = self._layouts[source.name] = {}
            same = layouts.setdefault(lay.length, [])
            if len(same) >= _LAYOUTS_PER_LENGTH:
                del same[0]
            same.append(lay)
        return self._route(source, env, payload)

    def _parse(self, source: Source, payload: bytes) -> pb.Envelope | None:
        env = pb.Envelope()
        try:
            env.ParseFromString(payload)
        except DecodeError:
            self.counters.unparseable += 1
            noise = self._noise["unparseable"] = self._noise.get("unparseable", 0) + 1
            if worth_logging(noise):
                self.log.warn("unparseable datagram from backend {backend} ({length} bytes; "
                              "{count} unparseable so far)", backend=source.name,
                              length=len(payload), count=self.counters.unparseable)
            return None
        if self.feed is not None:
            self.feed.emit(payload, source.index)
        return env

    def _parse_and_route(self, source: Source, payload: bytes) -> bool:
        env = self._parse(source, payload)
        return False if env is None else self._route(source, env, payload)

    def route_message(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
        """One run message ``source`` sent on its TCP lane, parsed (``env``) and raw: to the
        monitor tap (flagged ``FLAG_TCP_LANE``), then :meth:`route`."""
        tap = self.tap
        if tap is not None:
            tap.emit(payload, source.index, FLAG_TCP_LANE)
        if self.feed is not None:
            self.feed.emit(payload, source.index, FLAG_TCP_LANE)
        self._route(source, env, payload)

    def route(self, source: Source, env: pb.Envelope, payload: bytes) -> None:
        """Route one run message as if ``source`` had sent it (no monitor copy: also used for
        state changes the proxy writes itself)."""
        self._route(source, env, payload)

    def _route(self, source: Source, env: pb.Envelope, payload: bytes) -> bool:
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        body: pb.RunDataMessage | pb.RunDataEndMessage
        if kind == "run_data_message":
            body = msg.run_data_message
        elif kind == "run_data_end_message":
            body = msg.run_data_end_message
        elif kind == "run_state_change_message":
            return self._state(source, msg.run_state_change_message, env, payload)
        else:
            self.counters.unexpected_kind += 1
            noise = self._noise["unexpected"] = self._noise.get("unexpected", 0) + 1
            if worth_logging(noise):
                self.log.warn("unexpected {kind} on the data lane of backend {backend}, dropped "
                              "({count} unexpected so far)",
                              kind=kind or env.WhichOneof("kind"), backend=source.name,
                              count=self.counters.unexpected_kind)
            return False
        run = body.run
        track = self._by_bytes.get(run.id.encode())
        if track is None:
            self._foreign(source, run.id, kind)
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
        track.target.deliver(_as_client(track, run.id, env, body, payload))
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

    @staticmethod
    def _close(track: RunTrack) -> None:
        """The run is over (or no longer ours): chunks still missing are lost; summed up."""
        if track.chunks is not None:
            track.chunks.close()

    # -- drops and state changes ------------------------------------------------------------

    def _foreign(self, source: Source, run_id: str, kind: str) -> None:
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
                    kind=kind, run=run_id, backend=source.name,
                    count=self.counters.foreign_run,
                )

    def _state(
        self, source: Source, change: pb.RunStateChangeMessage, env: pb.Envelope, payload: bytes
    ) -> bool:
        run_id = change.run.id
        track = self._by_bytes.get(run_id.encode())
        if track is None:
            self._foreign(source, run_id, "run_state_change_message")
            return False
        self.counters.states += 1
        new_state = change.new_
        if track.client_id != run_id:
            change.run.id = track.client_id
            payload = b""  # re-serialized below, with the client's id
        if change.HasField("entity") and change.entity.path:
            paths: tuple[str, ...] = (carrier_of(change.entity.path),)
            track.target.deliver(payload or env.SerializeToString())
        else:
            paths = source.carriers
            if not paths:  # carriers unknown: the client applies it to all of them
                track.target.deliver(payload or env.SerializeToString())
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
                self._close(track)
                final = pb.ERROR if pb.ERROR in track.finished.values() else pb.DONE
                track.target.run_ended(track.client_id, final)
        if track.observer is not None:
            track.observer.state_changed(source.name, paths, new_state, change.reason)
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

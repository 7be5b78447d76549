"""The extract reply the proxy serves from its cache (discovery never waits for a device).

Design note
-----------
Every backend lane caches the entity specification its device returned in the start-up
handshake.  A client's ``extract{specification}`` — the reference client's discovery, sent on
a connection of its own before it settles on a session — is answered from these caches, for
queued sessions too: every ``entity_specification`` item of every backend, in ``-b`` order,
then the ``wiring_specification`` items the backends reported themselves (a backend that is
itself a proxy describes its own wires), then one item per ``wire`` of the backend file.

**Locations.**  A backend given a location has ``location_v0`` stamped on its carrier entity
(the reference client orders and addresses carriers by it; a bare LUCIStack index ``n`` is
stamped ``(0, n)``).  A backend holding several carriers — a REDAC block, the reference
``pybrid dummy``, another proxy — is a block of consecutive carriers: in extract order, its
carrier *i* gets ``(stack, carrier + i)``.  A backend without a location keeps what its device
reported, so stamps made by a proxy further down survive the next hop.

**Consistency** (:func:`conflicts`).  The reference client keys carriers by MAC, so the same
carrier path reported by two backends (two reference mocks in VIRTUAL MAC mode are both
``/00-00-00-00-00-00``) or one location given to two carriers would silently merge or swap
carriers.  The proxy refuses such a cluster instead: the extract is answered with an error
naming both backends (and :mod:`pybrid.proxy.backend.health` keeps sessions from being promoted)
until a backend reconnects with a different description.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.backendfile.model import Backend, Location, Wire
from pybrid.proxy.backendfile.wiring import carrier_location_v0, wiring_items

log = Logger()


class CacheNotReady(Exception):
    """Some backend has not been reached yet, so the cluster's description is incomplete."""


class ClusterConflict(CacheNotReady):
    """The backends' descriptions contradict each other (duplicate carriers or locations)."""


class SpecSource(Protocol):
    """A backend lane as the cache reads it: its handshake's extract items (and the
    ``wiring_specification`` items among them, which a backend that is a proxy reports)."""

    backend: Backend
    spec_items: list[pb.Item]
    wiring_items: list[pb.Item]

    @property
    def name(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...


def _wiring_of(lane: SpecSource) -> list[pb.Item]:
    return list(lane.wiring_items)


def carrier_entities(items: Sequence[pb.Item]) -> Iterator[pb.Entity]:
    """The CARRIER entities of extract items, in order: a CARRIER root, or a root's children."""
    for item in items:
        if not item.HasField("entity_specification"):
            continue
        root = item.entity_specification.entity
        if root.class_ == pb.Entity.CARRIER:
            yield root
        else:
            yield from (c for c in root.children if c.class_ == pb.Entity.CARRIER)


def carrier_locations(lane: SpecSource) -> list[tuple[str, Location]]:
    """``(carrier path, location)`` the proxy stamps for a located backend (module note)."""
    location = lane.backend.location
    if location is None:
        return []
    return [
        (path, Location(location.stack, location.carrier + i))
        for i, path in enumerate(lane.carriers)
    ]


def conflicts(lanes: Sequence[SpecSource]) -> list[str]:
    """Contradictions between the cached descriptions, one sentence each."""
    problems: list[str] = []
    seen: dict[str, tuple[str, str]] = {}
    for lane in lanes:
        for path in lane.carriers:
            key = path.lower()
            if key in seen:
                first, first_path = seen[key]
                where = "twice by" if first == lane.name else f"by backend {first} and by"
                problems.append(
                    f"carrier {first_path} is reported {where} backend {lane.name} (clients key "
                    "carriers by MAC: give the devices distinct MAC addresses)"
                )
            else:
                seen[key] = (lane.name, path)
    placed: dict[tuple[int, int], tuple[str, str]] = {}
    for lane in lanes:
        for path, location in carrier_locations(lane):
            spot = location.location_v0
            if spot in placed:
                other, other_path = placed[spot]
                problems.append(
                    f"location {location} is given to carrier {other_path} of backend {other} "
                    f"and to carrier {path} of backend {lane.name} (a backend with several "
                    "carriers takes consecutive locations)"
                )
            else:
                placed[spot] = (lane.name, path)
    return problems


def compose_extract(lanes: Sequence[SpecSource], wires: Sequence[Wire] = ()) -> pb.ExtractResponse:
    """The merged extract reply; raises :class:`CacheNotReady` naming missing backends."""
    missing = [lane.name for lane in lanes if not lane.spec_items]
    if missing:
        raise CacheNotReady(f"backend {', '.join(missing)} has not been reached yet")
    problems = conflicts(lanes)
    if problems:
        raise ClusterConflict("cluster misconfigured: " + "; ".join(problems))
    response = pb.ExtractResponse()
    items = response.module.items
    paths: dict[Location, str] = {}
    for lane in lanes:
        start = len(items)
        for item in lane.spec_items:
            items.add().CopyFrom(item)
        stamps = carrier_locations(lane)
        if stamps:
            copies = list(carrier_entities(items[start:]))
            for entity, (path, location) in zip(copies, stamps, strict=False):
                entity.location_v0.CopyFrom(carrier_location_v0(location))
                paths[location] = path
    for lane in lanes:
        items.extend(_wiring_of(lane))
    if wires:
        try:
            items.extend(wiring_items(wires, paths))
        except LookupError as e:
            raise CacheNotReady(f"cannot describe the wiring: {e}") from None
    return response

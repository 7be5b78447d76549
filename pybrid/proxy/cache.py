"""The extract reply the proxy serves from its cache (discovery never waits for a device).

Design note
-----------
Every backend lane caches the entity specification its device returned in the start-up
handshake.  A client's ``extract{specification}`` — the reference client's discovery, sent on
a connection of its own before it settles on a session — is answered from these caches, for
queued sessions too: one ``entity_specification`` item per backend item, in ``-b`` order,
followed by one ``wiring_specification`` item per ``wire`` of the backend file.

When a backend was given a location, its carrier entity is stamped with ``location_v0``
(the reference client orders and addresses carriers by it).  A location names one carrier,
so a backend reporting several carriers keeps the locations its device reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.proxy.backends import Backend, Location, Wire, carrier_location_v0, wiring_items

log = Logger()


class CacheNotReady(Exception):
    """Some backend has not been reached yet, so the cluster's description is incomplete."""


class SpecSource(Protocol):
    backend: Backend
    spec_items: list[pb.Item]

    @property
    def name(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...


def compose_extract(lanes: Sequence[SpecSource], wires: Sequence[Wire] = ()) -> pb.ExtractResponse:
    """The merged extract reply; raises :class:`CacheNotReady` naming missing backends."""
    missing = [lane.name for lane in lanes if not lane.spec_items]
    if missing:
        raise CacheNotReady(f"backend {', '.join(missing)} has not been reached yet")
    response = pb.ExtractResponse()
    items = response.module.items
    paths: dict[Location, str] = {}
    for lane in lanes:
        location = lane.backend.location
        for item in lane.spec_items:
            copy = items.add()
            copy.CopyFrom(item)
            if location is not None:
                _stamp(copy.entity_specification.entity, location, lane.name)
        if location is not None and lane.carriers:
            paths[location] = lane.carriers[0]
    if wires:
        try:
            items.extend(wiring_items(wires, paths))
        except LookupError as e:
            raise CacheNotReady(f"cannot describe the wiring: {e}") from None
    return response


def _stamp(root: pb.Entity, location: Location, name: str) -> None:
    if root.class_ == pb.Entity.CARRIER:
        carriers = [root]
    else:
        carriers = [c for c in root.children if c.class_ == pb.Entity.CARRIER]
    if len(carriers) != 1:
        log.warn("backend {backend} has {n} carriers; its location {location} is not stamped",
                 backend=name, n=len(carriers), location=str(location))
        return
    carriers[0].location_v0.CopyFrom(carrier_location_v0(location))

"""Carriers from an extract reply, and how a connection target string is read.

Topology is decided as the reference client decides it (docs/protocol.md#reference-client): from the
``entity_specification`` items of ``extract{recursive, specification}``, a root entity of class
CARRIER is one carrier (a device answering directly); otherwise the CARRIER children of the
root are the carriers (a proxy, one specification per backend, or a multi-carrier device).
One carrier means *direct*, more mean *proxy*.  A carrier's MAC is its entity id without
slashes; its location is ``location_v0`` when present.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from pybrid.proto import pb


@attrs.frozen
class Carrier:
    """One carrier board as the extract reply described it."""

    mac: str
    entity: pb.Entity = attrs.field(eq=False, repr=False)
    location: tuple[int, int] | None = None  # (stack, carrier) from location_v0

    @property
    def path(self) -> str:
        return "/" + self.mac

    @property
    def sort_key(self) -> tuple[int, int, str]:
        stack, index = self.location if self.location is not None else (1 << 32, 0)
        return (stack, index, self.mac)


def _carrier(entity: pb.Entity) -> Carrier:
    loc = None
    if entity.WhichOneof("location") == "location_v0":
        loc = (entity.location_v0.stack, entity.location_v0.carrier)
    return Carrier(mac=entity.id.replace("/", ""), entity=entity, location=loc)


def find_carriers(module: pb.Module) -> list[Carrier]:
    """The carriers listed by an extract reply, in reply order (duplicates dropped)."""
    found: list[Carrier] = []
    seen: set[str] = set()
    for item in module.items:
        if item.WhichOneof("kind") != "entity_specification":
            continue
        root = item.entity_specification.entity
        if root.class_ == pb.Entity.CARRIER:
            candidates: Any = [root]
        else:
            candidates = [c for c in root.children if c.class_ == pb.Entity.CARRIER]
        for entity in candidates:
            c = _carrier(entity)
            if c.mac not in seen:
                seen.add(c.mac)
                found.append(c)
    return found


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def parse_target(host: str, port: int) -> tuple[str | None, str, int]:
    """Classify a target: ``(endpoint_string, host, port)``.

    ``endpoint_string`` is set for Twisted client endpoint descriptions such as
    ``"tcp:host=10.0.0.5:port=5732"`` or ``"unix:path=/run/pybrid.sock"``; otherwise ``host`` may
    carry its own port (``"10.0.0.5:5733"``, ``"[::1]:5733"``) or be a bare name or address.
    """
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return None, inner, int(rest[1:])
        return None, inner, port
    if host.count(":") == 1:
        name, _, tail = host.partition(":")
        if tail.isdigit() and name:
            return None, name, int(tail)
    if _SCHEME.match(host) and host.count(":") >= 1 and "::" not in host:
        return host, "", 0
    return None, host, port


def describe_carriers(carriers: tuple[Carrier, ...]) -> str:
    """The carriers and what the reference's topology name means, for a status line."""
    macs = ", ".join(c.mac for c in carriers)
    if len(carriers) == 1:
        return (f"1 carrier {macs} (topology 'direct': one carrier, as a device or a proxy with "
                "one backend presents it)")
    return f"{len(carriers)} carriers {macs} (topology 'proxy': several carriers)"


def describe_data_lane(lane: str | None, udp_refusal: str | None = None) -> str:
    """Where a run's data came from: ``"udp"`` or ``"tcp"`` (and why), for a status line."""
    if lane == "udp":
        return "data by UDP (sent straight to this client)"
    if udp_refusal is not None:
        return (f"data over this TCP connection (UDP refused: {udp_refusal}; clients of a proxy "
                "always get run data over TCP)")
    return "data over this TCP connection"

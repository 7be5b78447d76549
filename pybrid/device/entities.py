"""The simulated device's entity tree (what ``extract_command{specification}`` reports).

One carrier: the root is that CARRIER (a LUCIDAC: id ``/<MAC>``, a front panel ``/FP``).
N carriers: the root is a DEVICE (id ``/<MAC of carrier 0>``) whose children are N CARRIER
entities, each with ``location_v0 {stack 0, carrier i}`` and a ``/T`` block (a REDAC).
Every carrier holds cluster ``/0`` (M0, M1, U, C, I, SH blocks) and ``/CTRL``; entity classes,
types and versions are those the reference client's deserializer knows.
"""

from __future__ import annotations

from typing import Any

import attrs

from pybrid.proto import pb

_VERSION = pb.Version(major=1, minor=0, patch=0)

# (id, class, type, eui) of the blocks inside cluster /0.
_CLUSTER_BLOCKS = (
    ("/M0", pb.Entity.M_BLOCK, 1, "00-04-A3-0B-00-16-92-1B"),
    ("/M1", pb.Entity.M_BLOCK, 2, "00-04-A3-0B-00-16-7D-6D"),
    ("/U", pb.Entity.U_BLOCK, 1, "00-04-A3-0B-00-15-76-7A"),
    ("/C", pb.Entity.C_BLOCK, 1, "FF-FF-D8-47-8F-3F-8E-F5"),
    ("/I", pb.Entity.I_BLOCK, 1, "00-04-A3-0B-00-15-3D-F5"),
    ("/SH", pb.Entity.SH_BLOCK, 1, "00-04-A3-0B-00-16-94-9F"),
)


@attrs.frozen
class Carrier:
    """One simulated carrier board: its index in the device, MAC and entity path."""

    index: int
    mac: str

    @property
    def path(self) -> str:
        return f"/{self.mac}"

    def owns(self, entity_path: str) -> bool:
        """Whether ``entity_path`` names this carrier or something inside it."""
        p = entity_path if entity_path.startswith("/") else "/" + entity_path
        return p == self.path or p.startswith(self.path + "/")


def _entity(id_: str, class_: Any, type_: int, eui: str) -> pb.Entity:
    return pb.Entity(id=id_, class_=class_, type=type_, variant=1, version=_VERSION, eui=eui)


def carrier_entity(carrier: Carrier, *, lucidac: bool) -> pb.Entity:
    """The CARRIER entity of one carrier, with its children."""
    ent = _entity(carrier.path, pb.Entity.CARRIER, 1, "00-00-00-00-00-00-00")
    ent.location_v0.stack = 0
    ent.location_v0.carrier = carrier.index
    cluster = ent.children.add()
    cluster.CopyFrom(_entity("/0", pb.Entity.CLUSTER, 1, "00-00-00-00-00-00-00"))
    for id_, class_, type_, eui in _CLUSTER_BLOCKS:
        cluster.children.add().CopyFrom(_entity(id_, class_, type_, eui))
    ent.children.add().CopyFrom(
        _entity("/CTRL", pb.Entity.CTRL_BLOCK, 1, "00-04-A3-0B-00-16-7E-05")
    )
    if lucidac:
        ent.children.add().CopyFrom(
            _entity("/FP", pb.Entity.FRONT_PANEL, 1, "00-00-00-00-00-00-00")
        )
    else:
        ent.children.add().CopyFrom(_entity("/T", pb.Entity.T_BLOCK, 1, "00-04-A3-0B-00-16-7E-10"))
    return ent


def entity_tree(carriers: tuple[Carrier, ...]) -> pb.Entity:
    """The root entity the device reports: a CARRIER for one carrier, else a DEVICE."""
    if len(carriers) == 1:
        return carrier_entity(carriers[0], lucidac=True)
    root = pb.Entity(id=carriers[0].path, class_=pb.Entity.DEVICE)
    for c in carriers:
        root.children.add().CopyFrom(carrier_entity(c, lucidac=False))
    return root


__all__ = ["Carrier", "carrier_entity", "entity_tree"]

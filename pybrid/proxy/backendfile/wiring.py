"""Backend-file wires and locations as protobuf: the ``wiring_specification`` items and
``location_v0`` stamps the proxy adds to its extract reply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pybrid.proto import pb
from pybrid.proxy.backendfile.model import Location, Pin, Wire


def wiring_pin(pin: Pin, carrier_paths: Mapping[Location, str]) -> pb.WiringPin:
    """``WiringPin`` naming the carrier entity path (``/<MAC>``) at ``pin.location``."""
    try:
        path = carrier_paths[pin.location]
    except KeyError:
        raise LookupError(f"no carrier path for location {pin.location}") from None
    msg = pb.WiringPin()
    msg.entity.path = path
    if pin.index is not None:
        msg.indexed_pin = pin.index
    else:
        msg.named_pin = str(pin.name)
    return msg


def wiring_specification(
    wire: Wire, carrier_paths: Mapping[Location, str]
) -> pb.WiringSpecification:
    """``WiringSpecification`` for one wire; ``carrier_paths`` maps locations to carrier paths."""
    return pb.WiringSpecification(
        source=wiring_pin(wire.source, carrier_paths), target=wiring_pin(wire.target, carrier_paths)
    )


def wiring_items(wires: Iterable[Wire], carrier_paths: Mapping[Location, str]) -> list[pb.Item]:
    """One extract ``Item`` per wire, as the reference proxy sends them (empty ``item.entity``)."""
    items = []
    for wire in wires:
        item = pb.Item(wiring_specification=wiring_specification(wire, carrier_paths))
        item.entity.SetInParent()
        items.append(item)
    return items


def carrier_location_v0(location: Location) -> pb.CarrierLocationV0:
    stack, carrier = location.location_v0
    return pb.CarrierLocationV0(stack=stack, carrier=carrier)


__all__ = ["carrier_location_v0", "wiring_items", "wiring_pin", "wiring_specification"]

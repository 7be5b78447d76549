"""The cached extract of several backends: multi-carrier locations, a proxy's own items,
conflicts (duplicate carriers, clashing locations)."""

from __future__ import annotations

import attrs
import pytest
from support.proxy_fakes import carrier_entity, spec_reply

from pybrid.proto import pb
from pybrid.proxy.backend.cache import ClusterConflict, compose_extract, conflicts
from pybrid.proxy.backendfile import parse_backend_args


@attrs.define
class Lane:
    backend: object
    spec_items: list
    carriers: tuple
    wiring_items: list = attrs.field(factory=list)

    @property
    def name(self):
        return self.backend.address


def lane_for(backend, macs, items=None):
    if items is None:
        items = list(spec_reply("x", macs).message_v1.extract_response.module.items)
    return Lane(backend, items, tuple("/" + m for m in macs))


def carrier_locations(response):
    out = []
    for item in response.module.items:
        if item.HasField("entity_specification"):
            root = item.entity_specification.entity
            for c in [root] if root.class_ == pb.Entity.CARRIER else root.children:
                out.append((c.id, c.location_v0.stack, c.location_v0.carrier))
    return out


def test_a_multi_carrier_backend_takes_consecutive_locations():
    spec = parse_backend_args([
        "carrier 127.0.0.1:6000 1/0,carrier 127.0.0.1:6001 1/2,wire 1/0/0 1/2/1,wire 1/2/2 1/0/3"
    ])
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"]),
             lane_for(spec.backends[1], ["bb-00-00-00-00-00"])]
    response = compose_extract(lanes, spec.wires)
    assert carrier_locations(response) == [
        ("/aa-00-00-00-00-00", 1, 0), ("/aa-00-00-00-00-01", 1, 1), ("/bb-00-00-00-00-00", 1, 2)
    ]
    wires = [i.wiring_specification for i in response.module.items
             if i.HasField("wiring_specification")]
    # the backend's location names its first carrier
    assert [(w.source.entity.path, w.target.entity.path) for w in wires] == [
        ("/aa-00-00-00-00-00", "/bb-00-00-00-00-00"), ("/bb-00-00-00-00-00", "/aa-00-00-00-00-00")
    ]


def test_bare_lucistack_indices_are_stamped_as_stack_0():
    spec = parse_backend_args(["carrier 127.0.0.1:6000 4,carrier 127.0.0.1:6001 6"])
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"]),
             lane_for(spec.backends[1], ["bb-00-00-00-00-00"])]
    assert [loc[1:] for loc in carrier_locations(compose_extract(lanes))] == [
        (0, 4), (0, 5), (0, 6)]


def test_several_specification_items_of_one_backend_count_as_its_carriers():
    """An inner proxy answers with one item per backend: a CARRIER root and a DEVICE root."""
    spec = parse_backend_args(["carrier 127.0.0.1:6000 0/3"])
    first = pb.Item()
    first.entity_specification.entity.CopyFrom(carrier_entity("aa-00-00-00-00-00"))
    second = spec_reply("x", ["bb-00-00-00-00-00", "bb-00-00-00-00-01"])
    items = [first, *second.message_v1.extract_response.module.items]
    lane = lane_for(spec.backends[0], ["aa-00-00-00-00-00", "bb-00-00-00-00-00",
                                       "bb-00-00-00-00-01"], items)
    assert [loc[1:] for loc in carrier_locations(compose_extract([lane]))] == [
        (0, 3), (0, 4), (0, 5)]


def test_an_unlocated_backend_keeps_the_locations_it_reported():
    """Stamps made by an inner proxy survive the outer one."""
    spec = parse_backend_args(["127.0.0.1:6000"])
    items = list(spec_reply("x", ["aa-00-00-00-00-00", "aa-00-00-00-00-01"])
                 .message_v1.extract_response.module.items)
    children = items[0].entity_specification.entity.children
    children[0].location_v0.stack, children[0].location_v0.carrier = 2, 5
    children[1].location_v0.stack, children[1].location_v0.carrier = 3, 1
    lane = lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"], items)
    assert [loc[1:] for loc in carrier_locations(compose_extract([lane]))] == [(2, 5), (3, 1)]


def test_a_backends_own_wiring_items_come_before_the_files_wires():
    spec = parse_backend_args(["carrier 127.0.0.1:6000 0,carrier 127.0.0.1:6001 2,wire 0/0 2/0"])
    own = pb.Item()
    own.wiring_specification.source.entity.path = "/aa-00-00-00-00-00"
    own.wiring_specification.source.named_pin = "aux0"
    own.wiring_specification.target.entity.path = "/aa-00-00-00-00-01"
    own.wiring_specification.target.indexed_pin = 2
    inner = lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"])
    inner.wiring_items = [own]
    lanes = [inner, lane_for(spec.backends[1], ["bb-00-00-00-00-00"])]
    wires = [i.wiring_specification for i in compose_extract(lanes, spec.wires).module.items
             if i.HasField("wiring_specification")]
    assert [w.source.WhichOneof("kind") for w in wires] == ["named_pin", "indexed_pin"]
    assert wires[0] == own.wiring_specification
    assert wires[1].target.entity.path == "/bb-00-00-00-00-00"


def test_the_same_carrier_on_two_backends_is_refused_naming_both():
    """Two reference mocks in VIRTUAL MAC mode both report /00-00-00-00-00-00."""
    spec = parse_backend_args(["127.0.0.1:6000,127.0.0.1:6001"])
    lanes = [lane_for(spec.backends[0], ["00-00-00-00-00-00"]),
             lane_for(spec.backends[1], ["00-00-00-00-00-00", "00-00-00-00-00-01"])]
    [problem] = conflicts(lanes)
    assert problem.startswith("carrier /00-00-00-00-00-00 is reported by backend 127.0.0.1:6000 "
                              "and by backend 127.0.0.1:6001")
    with pytest.raises(ClusterConflict, match="cluster misconfigured: carrier /00-00-00-00-00-00"):
        compose_extract(lanes)


def test_macs_compare_without_case():
    spec = parse_backend_args(["127.0.0.1:6000,127.0.0.1:6001"])
    lanes = [lane_for(spec.backends[0], ["AA-00-00-00-00-0B"]),
             lane_for(spec.backends[1], ["aa-00-00-00-00-0b"])]
    assert len(conflicts(lanes)) == 1


def test_a_multi_carrier_block_overlapping_the_next_location_is_refused():
    spec = parse_backend_args(["carrier 127.0.0.1:6000 0/0,carrier 127.0.0.1:6001 0/1"])
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"]),
             lane_for(spec.backends[1], ["bb-00-00-00-00-00"])]
    [problem] = conflicts(lanes)
    assert problem.startswith("location 0/1 is given to carrier /aa-00-00-00-00-01 of backend "
                              "127.0.0.1:6000 and to carrier /bb-00-00-00-00-00 of backend "
                              "127.0.0.1:6001")


def test_distinct_carriers_and_locations_have_no_conflicts():
    spec = parse_backend_args(["carrier 127.0.0.1:6000 0/0,carrier 127.0.0.1:6001 0/2"])
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-00", "aa-00-00-00-00-01"]),
             lane_for(spec.backends[1], ["bb-00-00-00-00-00"])]
    assert conflicts(lanes) == []

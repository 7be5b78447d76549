"""The cached extract: one specification per backend, locations stamped, wiring items."""

from __future__ import annotations

import attrs
import pytest
from support.proxy_fakes import spec_reply

from pybrid.proto import pb
from pybrid.proxy.backend.cache import CacheNotReady, compose_extract
from pybrid.proxy.backendfile import parse_backend_args
from pybrid.proxy.runs.merge import merge_replies, split_config
from pybrid.wire import messages


@attrs.define
class Lane:
    backend: object
    spec_items: list
    carriers: tuple
    wiring_items: list = attrs.field(factory=list)

    @property
    def name(self):
        return self.backend.address


def lane_for(backend, macs):
    items = list(spec_reply("x", macs).message_v1.extract_response.module.items)
    return Lane(backend, items, tuple("/" + m for m in macs))


def test_one_specification_per_backend_with_locations_and_wires():
    spec = parse_backend_args(
        ["carrier 127.0.0.1:6000 0/0,carrier 127.0.0.1:6001 0/1,wire 0/0/3 0/1/5"]
    )
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-01"]),
             lane_for(spec.backends[1], ["bb-00-00-00-00-01"])]
    items = compose_extract(lanes, spec.wires).module.items
    kinds = [i.WhichOneof("kind") for i in items]
    assert kinds == ["entity_specification", "entity_specification", "wiring_specification"]
    locations = [(i.entity_specification.entity.children[0].location_v0.stack,
                  i.entity_specification.entity.children[0].location_v0.carrier)
                 for i in items[:2]]
    assert locations == [(0, 0), (0, 1)]
    wire = items[2].wiring_specification
    assert (wire.source.entity.path, wire.source.indexed_pin) == ("/aa-00-00-00-00-01", 3)
    assert (wire.target.entity.path, wire.target.indexed_pin) == ("/bb-00-00-00-00-01", 5)
    # the lanes' own caches are untouched
    assert lanes[0].spec_items[0].entity_specification.entity.children[0].location_v0.stack == 0


def test_a_backend_never_reached_makes_the_cache_not_ready():
    spec = parse_backend_args(["127.0.0.1:6000,127.0.0.1:6001"])
    lanes = [lane_for(spec.backends[0], ["aa-00-00-00-00-01"]),
             Lane(spec.backends[1], [], ())]
    with pytest.raises(CacheNotReady, match=r"127\.0\.0\.1:6001"):
        compose_extract(lanes)


def test_without_locations_specifications_pass_unchanged():
    spec = parse_backend_args(["127.0.0.1:6000"])
    lane = lane_for(spec.backends[0], ["aa-00-00-00-00-01", "aa-00-00-00-00-02"])
    [item] = compose_extract([lane]).module.items
    assert item == lane.spec_items[0]


def test_single_backend_config_passes_whole():
    env = messages.v1("config_command", pb.ConfigCommand())
    env.message_v1.config_command.module.items.add().entity.path = "/anything"
    assert split_config(env, [("/aa",)]) == {0: env}


def test_merge_passes_a_single_reply_unchanged():
    reply = messages.v1("get_system_ident_response", id="x")
    assert merge_replies([("b", reply)]) is reply


def test_merge_extract_items_concatenate():
    a = spec_reply("1", ["aa-00-00-00-00-01"])
    b = spec_reply("2", ["bb-00-00-00-00-01"])
    merged = merge_replies([("a", a), ("b", b)])
    assert len(merged.message_v1.extract_response.module.items) == 2

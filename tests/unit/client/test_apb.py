"""What of an .apb is sent as configuration: not the description items of a full extract."""

from __future__ import annotations

from pybrid.client.apb import apb_bytes, config_items, parse_apb
from pybrid.proto import pb


def full_extract_module() -> pb.Module:
    module = pb.Module()
    module.items.add().entity_specification.SetInParent()  # no entity: the cluster's root
    module.items.add().wiring_specification.SetInParent()
    kept = module.items.add()
    kept.entity.path = "/00-00-00-00-00-01/0"
    kept.adc_config.SetInParent()
    named = module.items.add()
    named.entity.path = "/00-00-00-00-00-01"
    named.entity_specification.SetInParent()
    return module


def test_descriptions_without_entity_are_left_out_of_the_configuration():
    module = parse_apb(apb_bytes(full_extract_module()))
    out = config_items(module)
    assert [(i.WhichOneof("kind"), i.entity.path) for i in out.items] == [
        ("adc_config", "/00-00-00-00-00-01/0"),
        ("entity_specification", "/00-00-00-00-00-01"),
    ]
    assert len(module.items) == 4  # the caller's module is not changed


def test_a_plain_configuration_is_returned_as_it_is():
    module = pb.Module()
    module.items.add().entity.path = "/x/0"
    assert config_items(module) is module

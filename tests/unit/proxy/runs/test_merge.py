"""Config splitting: specification items without entity (a reference full .apb) are dropped."""

from __future__ import annotations

import pytest

from pybrid.proto import pb
from pybrid.proxy.runs.merge import NoBackend, is_description, split_config
from pybrid.wire import messages

OWNERS = [("/aa-00-00-00-00-01",), ("/bb-00-00-00-00-01",)]


def config(*items: pb.Item) -> pb.Envelope:
    env = messages.v1("config_command", pb.ConfigCommand())
    env.message_v1.config_command.module.items.extend(items)
    return env


def item(path: str | None, kind: str = "adc_config") -> pb.Item:
    out = pb.Item()
    if path is not None:
        out.entity.path = path
    getattr(out, kind).SetInParent()
    return out


def test_specification_items_without_entity_are_not_sent_as_configuration():
    env = config(item(None, "entity_specification"), item("/aa-00-00-00-00-01/0", "adc_config"),
                 item("", "wiring_specification"), item("/bb-00-00-00-00-01/0/M0"))
    plan = split_config(env, OWNERS)
    assert sorted(plan) == [0, 1]
    paths = {i: [x.entity.path for x in e.message_v1.config_command.module.items]
             for i, e in plan.items()}
    assert paths == {0: ["/aa-00-00-00-00-01/0"], 1: ["/bb-00-00-00-00-01/0/M0"]}


def test_a_config_of_descriptions_only_sends_each_backend_an_empty_config():
    plan = split_config(config(item(None, "entity_specification")), OWNERS)
    assert sorted(plan) == [0, 1]
    assert all(not e.message_v1.config_command.module.items for e in plan.values())


def test_other_items_without_entity_are_still_an_error():
    with pytest.raises(NoBackend, match="no backend found for entity path ''"):
        split_config(config(item(None, "adc_config")), OWNERS)


def test_a_specification_naming_an_entity_is_no_description():
    assert is_description(item(None, "entity_specification"))
    assert not is_description(item("/aa-00-00-00-00-01", "entity_specification"))
    assert not is_description(item(None, "adc_config"))

"""The transition table every state machine is written in (pybrid.machine)."""

from __future__ import annotations

import enum

import pytest

from pybrid.machine import InvalidTransition, Table


class Light(enum.Enum):
    OFF = "off"
    ON = "on"


TABLE = Table("light", {(Light.OFF, "switch"): Light.ON, (Light.ON, "switch"): Light.OFF,
                        (Light.ON, "dim"): Light.ON})


def test_next_follows_the_table():
    assert TABLE.next(Light.OFF, "switch") is Light.ON
    assert TABLE.next(Light.ON, "switch") is Light.OFF
    assert TABLE.next(Light.ON, "dim") is Light.ON


def test_an_unlisted_pair_raises_naming_machine_state_and_event():
    with pytest.raises(InvalidTransition) as caught:
        TABLE.next(Light.OFF, "dim")
    err = caught.value
    assert (err.machine, err.state, err.event) == ("light", Light.OFF, "dim")
    assert str(err) == "light: no transition from state OFF on event 'dim'"
    with pytest.raises(InvalidTransition, match="on event 'explode'"):
        TABLE.next(Light.ON, "explode")


def test_events_and_description_list_the_table():
    assert TABLE.events == {"switch", "dim"}
    assert TABLE.describe().splitlines() == ["OFF --switch--> ON", "ON --switch--> OFF",
                                             "ON --dim--> ON"]

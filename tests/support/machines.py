"""Walk a transition table through the object that owns it (tests of every machine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from pybrid.machine import InvalidTransition, Table


def walk(table: Table[Any], states: Iterable[Any], make: Callable[[Any], Any],
         fire: Callable[[Any, str], Any], read: Callable[[Any], Any]) -> int:
    """For every state × event (the table's events and one nobody knows): ``make(state)`` an
    object in that state, ``fire(obj, event)``; a listed pair must land on its new state, an
    unlisted one must raise :class:`InvalidTransition` naming machine, state and event and
    leave the state as it was.  Returns how many pairs raised."""
    refused = 0
    for state in states:
        for event in [*sorted(table.events), "no-such-event"]:
            obj = make(state)
            assert read(obj) is state
            want = table.transitions.get((state, event))
            if want is not None:
                fire(obj, event)
                assert read(obj) is want, (state, event)
                continue
            with pytest.raises(InvalidTransition) as caught:
                fire(obj, event)
            err = caught.value
            assert (err.machine, err.state, err.event) == (table.name, state, event)
            text = str(err)
            assert table.name in text and state.name in text and repr(event) in text
            assert read(obj) is state  # nothing changed
            refused += 1
    return refused

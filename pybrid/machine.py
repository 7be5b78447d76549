"""Transition tables: every state machine of the code base written down in one place each.

Design note
-----------
A machine is a :class:`Table` — a dict ``{(state, event): new_state}`` in the style of h11 —
kept next to its states (``SESSION``, ``LANE``, ``SENDER``, ``RUN``, ``BARRIER``;
docs/architecture.md lists them). The object that owns the state calls :meth:`Table.next`
(``state = TABLE.next(state, event)``) and does the work that goes with the event itself; a
pair that is not in the table raises :class:`InvalidTransition` naming the machine, the state
and the event, so a transition nobody planned for fails loudly where it happens instead of
leaving a state nobody can explain. Events that are legitimately ignored in some states (a
second ``close``, a pause after the connection is gone) are listed as self-loops, so the table
stays the whole story.

Why a dict rather than :mod:`automat` (which Twisted uses for ``ClientService``): a transition
here is one dict lookup (0.25–0.35 µs per input on the team's machine, automat's
``TypeMachineBuilder`` 1.1–1.3 µs, ``MethodicalMachine`` 9–10 µs), and the per-client sender
takes two on every pause/resume cycle of its transport; its per-frame path only compares the
current state.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

import attrs

S = TypeVar("S", bound=Hashable)


class InvalidTransition(Exception):
    """An event arrived in a state whose table has no transition for it."""

    def __init__(self, machine: str, state: object, event: str) -> None:
        self.machine, self.state, self.event = machine, state, event
        name = getattr(state, "name", state)
        super().__init__(f"{machine}: no transition from state {name} on event {event!r}")


@attrs.frozen
class Table(Generic[S]):
    """A named transition table; see the module note."""

    name: str
    transitions: Mapping[tuple[S, str], S]

    def next(self, state: S, event: str) -> S:
        """The state after ``event`` in ``state``; :class:`InvalidTransition` if there is none."""
        try:
            return self.transitions[(state, event)]
        except KeyError:
            raise InvalidTransition(self.name, state, event) from None

    @property
    def events(self) -> frozenset[str]:
        return frozenset(event for _, event in self.transitions)

    def describe(self) -> str:
        """The table as text, one ``STATE --event--> NEW`` line per transition."""
        lines = []
        for (state, event), new in self.transitions.items():
            lines.append(f"{getattr(state, 'name', state)} --{event}--> "
                         f"{getattr(new, 'name', new)}")
        return "\n".join(lines)

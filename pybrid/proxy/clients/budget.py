"""One memory budget for every client connection that is not the active session.

Design note
-----------
The active session's output is bounded by ``--client-buffer``; everything else a connection
can make the proxy hold is bounded here or per connection:

* a waiting connection's sender queues at most ``WAITING_CLIENT_BUFFER`` and its transport
  buffers and reads ``WAITING_TRANSPORT_BUFFER`` at a time (:mod:`~pybrid.proxy.clients.sender`);
* a connection that is not read (:mod:`~pybrid.proxy.clients.gate`) holds at most one read's
  bytes, unparsed;
* a connection may hold an unfinished frame — up to the frame limit, 262 KB — and the number
  of pre-session connections is not bounded by ``--max-sessions``.  So partial frames above
  ``PARTIAL_FREE`` (64 KiB) are charged to one :class:`WaitingBudget`
  (``WAITING_BUDGET``, 64 MiB) shared by all connections that are not active; the connection
  whose partial frame takes the total past it is told and closed.  Legitimate first frames
  and requests of waiting sessions are small and complete; they are never charged.
"""

from __future__ import annotations

from collections.abc import Hashable

import attrs

from pybrid.proxy.sizes import PARTIAL_FREE, WAITING_BUDGET, format_size


@attrs.define(eq=False)
class WaitingBudget:
    """Bytes of partial frames held by connections that are not active, against one limit."""

    limit: int = WAITING_BUDGET
    #: Connections holding more than ``PARTIAL_FREE`` undelivered bytes: how much.
    held: dict[Hashable, int] = attrs.field(factory=dict)
    total: int = 0
    #: Connections closed for passing the budget.
    closed: int = 0

    def charge(self, who: Hashable, held: int, *, exempt: bool = False) -> str | None:
        """``who`` now holds ``held`` undelivered bytes: None if that fits, else the error
        text for closing it (its charge is dropped then).  ``exempt``: the active session."""
        self.release(who)
        if held <= PARTIAL_FREE or exempt:
            return None
        if self.total + held > self.limit:
            self.closed += 1
            return (f"the proxy's memory budget for connections that are not active "
                    f"({format_size(self.limit)} of partial frames) is used up: this "
                    f"connection holds {held} bytes of an unfinished frame; closed")
        self.held[who] = held
        self.total += held
        return None

    def release(self, who: Hashable) -> None:
        self.total -= self.held.pop(who, 0)

    def __contains__(self, who: Hashable) -> bool:
        return who in self.held

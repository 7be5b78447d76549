"""The phases of one collected run and their transitions: one table, :data:`RUN`.

:class:`~pybrid.client.run.RunCollector` changes ``phase`` only through it (see the design note
of :mod:`pybrid.client.run`); a pair that is not listed raises
:class:`~pybrid.machine.InvalidTransition`.  Events that arrive after the run is over (a late
chunk, a second failure) are not transitions: the collector ignores them once it is no longer
:attr:`~pybrid.client.run.RunCollector.collecting`.
"""

from __future__ import annotations

import enum

from pybrid.machine import Table


class RunPhase(enum.StrEnum):
    """A string enum: ``collector.phase == "failed"`` reads as before."""

    #: Waiting for DONE on every carrier.
    RUNNING = "running"
    #: DONE everywhere; waiting (at most ``settle`` seconds) for data still in flight.
    SETTLING = "settling"
    FINISHED = "finished"
    FAILED = "failed"
    #: The caller cancelled; ``done`` does not fire.
    CANCELLED = "cancelled"


_RUNNING, _SETTLING, _FINISHED, _FAILED, _CANCELLED = RunPhase

#: Every phase transition of a run collector.
RUN: Table[RunPhase] = Table("run collector", {
    (_RUNNING, "all_done"): _SETTLING,  # DONE on every carrier, data incomplete
    (_RUNNING, "finish"): _FINISHED,  # DONE on every carrier, data complete
    (_SETTLING, "finish"): _FINISHED,  # the data completed, or the settle timer fired
    # ERROR on a carrier, the deadline, on_chunk or the sink raised, fail() from outside
    (_RUNNING, "fail"): _FAILED,
    (_SETTLING, "fail"): _FAILED,
    (_RUNNING, "cancel"): _CANCELLED,  # cancel(): the caller gave up on the run
    (_SETTLING, "cancel"): _CANCELLED,
})

"""The ring of the proxy's recent warnings and errors, for the status page.

:class:`RecentEvents` is a ``twisted.logger`` observer keeping a bounded ring of the proxy's
recent warnings and errors (events whose namespace is ``pybrid.proxy`` or below it).  Its
``counts`` hold every level it keeps (warn, error, critical) from the start, at 0, so that
``pybrid_proxy_log_events_total`` has all its series before the first warning.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

from pybrid.proxy.status.model import LogEntry

_LEVELS = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


def counted_levels(min_level: LogLevel = LogLevel.warn) -> tuple[str, ...]:
    """The names of the levels a ring from ``min_level`` counts (warn, error, critical)."""
    return tuple(level.name for level in _LEVELS[_LEVELS.index(min_level):])


@implementer(ILogObserver)
@attrs.define(eq=False)
class RecentEvents:
    """A bounded ring of recent warn/error log events of one namespace, and their counts."""

    capacity: int = 50
    namespace: str = "pybrid.proxy"
    min_level: LogLevel = LogLevel.warn
    entries: deque[LogEntry] = attrs.field(init=False)
    counts: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.entries = deque(maxlen=self.capacity)
        for level in counted_levels(self.min_level):
            self.counts.setdefault(level, 0)

    def __call__(self, event: dict[str, Any]) -> None:
        namespace = str(event.get("log_namespace", ""))
        if not (namespace == self.namespace or namespace.startswith(self.namespace + ".")):
            return
        level = event.get("log_level", LogLevel.info)
        if level not in _LEVELS or _LEVELS.index(level) < _LEVELS.index(self.min_level):
            return
        try:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text = f"{text}: {failure.getErrorMessage()}"
        except Exception:  # an observer must never raise into the logging system
            text = str(event.get("log_format", "?"))
        self.counts[level.name] = self.counts.get(level.name, 0) + 1
        self.entries.append(LogEntry(float(event.get("log_time", 0.0)), level.name,
                                     namespace, text[:2000]))


__all__ = ["RecentEvents", "counted_levels"]

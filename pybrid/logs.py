"""Log output for daemons: JSON lines for ``twistd --logger=…``, syslog priorities by level.

**JSON.** ``twistd --logger=NAME`` imports ``NAME`` and calls it *without arguments* to get the
log observer (it takes precedence over ``--logfile``), so ``twisted.logger.jsonFileLogObserver``
itself, which needs a file, cannot be named there.  These factories can:

* ``--logger=pybrid.logs.json_stdout`` — one JSON object per line on standard output (under
  systemd the journal keeps it; ``twistd --nodaemon`` only, a daemon has no stdout);
* ``--logger=pybrid.logs.json_file`` — one JSON object per line appended to the file named by
  the environment variable ``PYBRID_LOG_JSON`` (default ``pybrid.log.json`` in twistd's
  ``--rundir``), rotated at 10 MB, keeping 5 old files.

Each line is a flat object made for log shippers and ``jq`` (see :func:`json_record`):
``time`` (ISO 8601, UTC), ``timestamp`` (seconds since the epoch), ``level`` (``debug``,
``info``, ``warn``, ``error``, ``critical``), ``namespace`` (the emitting class or module),
``system``, ``message`` (the rendered text), ``failure`` (the traceback, when there is one),
and every structured field of the event (``backend``, ``session``, ``run``, ``peer``, …) as a
key of its own, converted to plain JSON values — never a raw object.

**Syslog.** ``twistd --syslog`` sends every event at priority *info* and errors at *alert*
unless the event names its own ``syslogPriority``.  :func:`tag_syslog_priorities` adds that key
from the event's level (warn → warning, error → err, critical → crit, debug → debug); both
``twistd`` plugins install it in ``makeService``, before twistd starts its log observer, so the
journal and syslog filter our warnings by priority (``journalctl -p warning``).
"""

from __future__ import annotations

import datetime
import json
import math
import numbers
import os
import sys
import weakref
from typing import IO, Any

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

JSON_LOG_ENV = "PYBRID_LOG_JSON"
DEFAULT_JSON_LOG = "pybrid.log.json"
ROTATE_BYTES = 10_000_000
ROTATED_FILES = 5

#: syslog(3) priorities (``syslog.LOG_*``) of Twisted's log levels.
SYSLOG_PRIORITIES = {
    LogLevel.debug: 7,  # LOG_DEBUG
    LogLevel.info: 6,  # LOG_INFO
    LogLevel.warn: 4,  # LOG_WARNING
    LogLevel.error: 3,  # LOG_ERR
    LogLevel.critical: 2,  # LOG_CRIT
}

#: Keys of a JSON record that are not structured fields of the event.
RECORD_KEYS = ("time", "timestamp", "level", "namespace", "system", "message", "failure")
#: Keys Twisted's legacy log system and its adapters add to an event; they are not our fields.
_LEGACY_KEYS = frozenset(
    {"message", "format", "isError", "system", "time", "why", "failure", "syslogPriority"}
)
_MAX_DEPTH = 4


def json_record(event: LogEvent) -> dict[str, Any]:
    """``event`` as a flat JSON-ready dict: rendered message, level name, namespace, fields."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": None if when is None else datetime.datetime.fromtimestamp(
            when, datetime.UTC).isoformat(timespec="microseconds"),
        "timestamp": when,
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace"),
        "system": event.get("log_system", event.get("system", "-")),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["failure"] = failure.getTraceback()
        except Exception as e:  # a broken failure must not lose the event
            record["failure"] = f"(unrenderable failure: {e!r})"
    legacy = "isError" in event  # from twisted.python.log, or seen by a legacy observer
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith("log_"):
            continue
        if key == "syslogPriority" or (legacy and key in _LEGACY_KEYS):
            continue
        record[f"field_{key}" if key in RECORD_KEYS else key] = _plain(value, 0)
    return record


def _plain(value: Any, depth: int) -> Any:
    """``value`` as JSON-native data (str, number, bool, None, list, dict); others as text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_plain(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    try:
        return str(value)
    except Exception:
        return repr(value)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one :func:`json_record` line to a text stream and flushes it."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        try:
            line = json.dumps(json_record(event), ensure_ascii=False, allow_nan=False)
        except Exception as e:  # keep the event, if only as text
            line = json.dumps({"level": "error", "namespace": __name__,
                               "message": f"unloggable event: {e!r}: {event!r}"})
        self._out.write(line + "\n")
        self._out.flush()


def json_stdout() -> ILogObserver:
    """Events as JSON lines on standard output."""
    return JSONLinesObserver(sys.stdout)


def json_file() -> ILogObserver:
    """Events as JSON lines in ``$PYBRID_LOG_JSON`` (rotated)."""
    path = os.environ.get(JSON_LOG_ENV) or DEFAULT_JSON_LOG
    logfile = LogFile.fromFullPath(path, rotateLength=ROTATE_BYTES,
                                   maxRotatedFiles=ROTATED_FILES)
    return JSONLinesObserver(logfile)  # type: ignore[arg-type]  # file-like: write, flush


@implementer(ILogObserver)
class SyslogPriorityTagger:
    """Adds ``syslogPriority`` (from ``log_level``) to each event that names none."""

    def __call__(self, event: LogEvent) -> None:
        if "syslogPriority" not in event:
            priority = SYSLOG_PRIORITIES.get(event.get("log_level"))  # type: ignore[arg-type]
            if priority is not None:
                event["syslogPriority"] = priority


_TAGGER = SyslogPriorityTagger()
_TAGGED: weakref.WeakSet[LogPublisher] = weakref.WeakSet()


def tag_syslog_priorities(publisher: LogPublisher | None = None) -> None:
    """Tag every event published from now on with its syslog priority (idempotent).

    Observers see events in the order they were added, so this must run before the log
    observer that reads the tag (twistd's ``--syslog``) starts: in a plugin's ``makeService``.
    """
    target = globalLogPublisher if publisher is None else publisher
    if target not in _TAGGED:
        target.addObserver(_TAGGER)
        _TAGGED.add(target)

"""pybrid.logs: JSON records (rendered text, level name, namespace, plain structured fields) and
syslog priorities from log levels through Twisted's own SyslogObserver."""

from __future__ import annotations

import io
import json

import numpy as np
from twisted.logger import LegacyLogObserverWrapper, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.python.syslog import SyslogObserver

from pybrid.logs import JSONLinesObserver, json_record, tag_syslog_priorities


class Opaque:
    def __str__(self) -> str:
        return "<opaque thing>"


def emit(observer, level=LogLevel.warn, fmt="backend {backend}: {n} datagrams", **fields):
    log = Logger(namespace="pybrid.proxy.backend.BackendLane", observer=observer)
    log.emit(level, fmt, **fields)


def test_a_record_has_the_rendered_text_the_level_name_namespace_and_fields():
    events = []
    emit(events.append, backend="127.0.0.1:5732", n=np.int64(7), rate=np.float32(2.5),
         thing=Opaque(), raw=b"\xffab", nan=float("nan"), nested={"a": (1, Opaque())})
    record = json_record(events[0])
    assert record["message"] == "backend 127.0.0.1:5732: 7 datagrams"
    assert record["level"] == "warn"
    assert record["namespace"] == "pybrid.proxy.backend.BackendLane"
    assert record["time"].endswith("+00:00") and isinstance(record["timestamp"], float)
    assert record["backend"] == "127.0.0.1:5732"
    assert record["n"] == 7 and type(record["n"]) is int
    assert record["rate"] == 2.5 and type(record["rate"]) is float
    assert record["thing"] == "<opaque thing>"
    assert record["raw"] == "\\xffab"
    assert record["nan"] == "nan"
    assert record["nested"] == {"a": [1, "<opaque thing>"]}
    assert not [k for k in record if k.startswith("log_")]
    json.dumps(record, allow_nan=False)  # plain JSON all through


def test_fields_named_like_record_keys_are_kept_under_another_name():
    events = []
    emit(events.append, fmt="{message} in {namespace}", message="hello", namespace=3)
    record = json_record(events[0])
    assert record["message"] == "hello in 3"
    assert record["namespace"] == "pybrid.proxy.backend.BackendLane"
    assert record["field_message"] == "hello" and record["field_namespace"] == 3


def test_a_failure_is_rendered_as_its_traceback():
    events = []
    log = Logger(namespace="test", observer=events.append)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("run {run} failed", Failure(), run="r1")
    record = json_record(events[0])
    assert record["level"] == "critical" and record["message"] == "run r1 failed"
    assert "ZeroDivisionError" in record["failure"] and record["run"] == "r1"


def test_the_observer_writes_one_json_object_per_line():
    out = io.StringIO()
    observer = JSONLinesObserver(out)
    emit(observer, backend="b1", n=1)
    emit(observer, level=LogLevel.info, backend="b2", n=2)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["backend"] for line in lines] == ["b1", "b2"]
    assert [json.loads(line)["level"] for line in lines] == ["warn", "info"]


class CapturingSyslog(SyslogObserver):
    """Twisted's SyslogObserver with syslog(3) replaced by a list."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        super().__init__("pybrid-test")

    def openlog(self, *args):  # type: ignore[override]
        pass

    def syslog(self, priority, message):  # type: ignore[override]
        self.sent.append((priority, message))


def syslog_priorities(tagged: bool) -> list[int]:
    publisher = LogPublisher()
    if tagged:
        tag_syslog_priorities(publisher)
        tag_syslog_priorities(publisher)  # idempotent
    syslog = CapturingSyslog()
    publisher.addObserver(LegacyLogObserverWrapper(syslog.emit))
    log = Logger(namespace="test", observer=publisher)
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    log.critical("c")
    log.emit(LogLevel.warn, "explicit", syslogPriority=1)
    return [priority for priority, _ in syslog.sent]


def test_syslog_priorities_follow_the_log_levels():
    # LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT; an explicit priority is kept
    assert syslog_priorities(tagged=True) == [7, 6, 4, 3, 2, 1]


def test_without_the_tags_twisted_sends_warnings_at_info():
    # what twistd --syslog does on its own (LOG_INFO, LOG_ALERT for errors)
    assert syslog_priorities(tagged=False) == [6, 6, 6, 1, 1, 1]


def test_events_of_the_legacy_log_system_keep_only_their_text():
    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy_log

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        legacy_log.msg("legacy text", system="TCP")
    finally:
        globalLogPublisher.removeObserver(events.append)
    record = json_record(events[0])
    assert record["message"] == "legacy text" and record["system"] == "TCP"
    assert set(record) <= {"time", "timestamp", "level", "namespace", "system", "message"}

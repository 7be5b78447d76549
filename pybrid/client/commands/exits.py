"""Exit codes, the error → exit code map and stderr logging of every client command.

0 done, 1 other failure, 2 cannot connect, 3 device busy, 4 the run failed on the device,
5 a timeout, 64 bad command line, 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

from pybrid.client.errors import (
    ConnectError,
    DeviceBusyError,
    PingTimeout,
    RequestTimeout,
    RunError,
    RunTimeout,
)

EXIT_OK, EXIT_FAILED, EXIT_CONNECT, EXIT_BUSY, EXIT_RUN, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
EXIT_USAGE, EXIT_INTERRUPTED = 64, 130


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConnectError):
        return EXIT_CONNECT
    if isinstance(exc, DeviceBusyError):
        return EXIT_BUSY
    if isinstance(exc, RunError):
        return EXIT_RUN
    if isinstance(exc, (RunTimeout, RequestTimeout, PingTimeout, defer.TimeoutError)):
        return EXIT_TIMEOUT
    return EXIT_FAILED


def start_logging(verbose: bool, prog: str) -> None:
    """Warnings (``verbose``: everything, with tracebacks) to stderr, prefixed with ``prog``."""
    level = LogLevel.debug if verbose else LogLevel.warn

    @implementer(ILogObserver)
    def write(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if event.get("log_failure") is not None and verbose:
            text += "\n" + event["log_failure"].getTraceback()
        sys.stderr.write(f"{prog}: {event['log_level'].name}: {text}\n")

    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(write, [predicate])], redirectStandardIO=False
    )

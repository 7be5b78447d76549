"""JSON log observers for ``twistd --logger=…`` (structured logs for journald or log shippers).

``twistd --logger=NAME`` imports ``NAME`` and calls it *without arguments* to get the log
observer (it takes precedence over ``--logfile``), so ``twisted.logger.jsonFileLogObserver``
itself, which needs a file, cannot be named there.  These factories can:

* ``--logger=pybrid.logs.json_stdout`` — one JSON object per line on standard output (under
  systemd the journal keeps it; ``twistd --nodaemon`` only, a daemon has no stdout);
* ``--logger=pybrid.logs.json_file`` — one JSON object per line appended to the file named by
  the environment variable ``PYBRID_LOG_JSON`` (default ``pybrid.log.json`` in twistd's
  ``--rundir``), rotated at 10 MB, keeping 5 old files.

Each line is what :func:`twisted.logger.eventAsJSON` makes of an event — every structured
field (``backend``, ``session``, ``run`` …) plus ``log_time``, ``log_level``,
``log_namespace`` and ``log_format``; :func:`twisted.logger.eventsFromJSONLogFile` reads them
back.
"""

from __future__ import annotations

import os
import sys

from twisted.logger import ILogObserver, jsonFileLogObserver
from twisted.python.logfile import LogFile

JSON_LOG_ENV = "PYBRID_LOG_JSON"
DEFAULT_JSON_LOG = "pybrid.log.json"
ROTATE_BYTES = 10_000_000
ROTATED_FILES = 5


def json_stdout() -> ILogObserver:
    """Events as JSON lines on standard output."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def json_file() -> ILogObserver:
    """Events as JSON lines in ``$PYBRID_LOG_JSON`` (rotated)."""
    path = os.environ.get(JSON_LOG_ENV) or DEFAULT_JSON_LOG
    logfile = LogFile.fromFullPath(path, rotateLength=ROTATE_BYTES,
                                   maxRotatedFiles=ROTATED_FILES)
    return jsonFileLogObserver(logfile, recordSeparator="")

"""The installed version of pybrid-twisted, read from the distribution's metadata.

One place for every command's ``--version``, the start-up log line, the status page and the
``pybrid_build_info`` metric.  A source tree that is not installed reports ``0+unknown``.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "pybrid-twisted"


def version() -> str:
    """The version of the installed ``pybrid-twisted`` distribution."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = version()

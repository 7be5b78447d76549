"""The installed version of pybrid-twisted, read from the distribution's metadata.

One place for every command's ``--version``, the start-up log line, the status page and the
``pybrid_build_info`` metric.  A source tree that is not installed reports ``0+unknown``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import NoReturn

DISTRIBUTION = "pybrid-twisted"


def version() -> str:
    """The version of the installed ``pybrid-twisted`` distribution."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def version_line(program: str) -> str:
    """What ``PROGRAM --version`` prints, e.g. ``pybrid-proxy (pybrid-twisted) 0.1.0``."""
    return f"{program} ({DISTRIBUTION}) {version()}"


def print_version_and_exit(program: str) -> NoReturn:
    """``--version`` of a ``twistd`` plugin's ``usage.Options`` (``opt_version``)."""
    print(version_line(program))
    sys.exit(0)


__version__ = version()


def install_hint(extra: str, packages: str) -> str:
    """How to add an optional dependency: the package itself, or the install's ``extra``
    (there is no release on a package index: the extra goes onto the wheel or the checkout)."""
    return (f"pip install {packages} (or the '{extra}' extra: pip install -e '.[{extra}]' in "
            f"the checkout, pip install 'pybrid_twisted-{version()}-py3-none-any.whl[{extra}]' "
            "from the wheel)")

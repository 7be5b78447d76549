"""The backend file (``-b``): its records (:mod:`.model`), the parser (:mod:`.parse`) and the
wiring items it adds to the extract reply (:mod:`.wiring`).

This package re-exports the public names (``from pybrid.proxy.backendfile import Backend``);
modules inside pybrid import the submodule that defines a name.
"""

from pybrid.proxy.backendfile import model, parse, wiring
from pybrid.proxy.backendfile.model import *  # noqa: F403
from pybrid.proxy.backendfile.parse import *  # noqa: F403
from pybrid.proxy.backendfile.wiring import *  # noqa: F403

__all__ = [*model.__all__, *parse.__all__, *wiring.__all__]

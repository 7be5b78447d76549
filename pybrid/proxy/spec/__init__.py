"""The backend file (``-b``): its records (:mod:`.model`), the parser (:mod:`.parse`) and the
wiring items it adds to the extract reply (:mod:`.wiring`).

This package re-exports the public names, so ``from pybrid.proxy.spec import Backend`` works;
modules inside pybrid import the submodule that defines a name.
"""

from pybrid.proxy.spec import model, parse, wiring
from pybrid.proxy.spec.model import *  # noqa: F403
from pybrid.proxy.spec.parse import *  # noqa: F403
from pybrid.proxy.spec.wiring import *  # noqa: F403

__all__ = [*model.__all__, *parse.__all__, *wiring.__all__]

"""The backend file (``-b``): its records (:mod:`.model`), the parser (:mod:`.parse`) and the
wiring items it adds to the extract reply (:mod:`.wiring`).

This package re-exports the public names, so ``from pybrid.proxy.spec import Backend`` works;
modules inside pybrid import the submodule that defines a name.
"""

from pybrid.proxy.spec.model import (
    COMMAND_LINE,
    DEFAULT_PORT,
    FORM_CARRIER,
    FORM_NONE,
    FORM_STACK,
    MAX_INDEX,
    NAMED_PINS,
    NO_LOCATION_WARNING,
    PIN_COUNT,
    Backend,
    BackendSpec,
    BackendSpecError,
    Location,
    Pin,
    SpecError,
    Wire,
    render,
)
from pybrid.proxy.spec.parse import (
    parse_address,
    parse_backend_args,
    parse_endpoint,
    parse_location,
    parse_text,
)
from pybrid.proxy.spec.wiring import (
    carrier_location_v0,
    wiring_items,
    wiring_pin,
    wiring_specification,
)

__all__ = [
    "COMMAND_LINE",
    "DEFAULT_PORT",
    "FORM_CARRIER",
    "FORM_NONE",
    "FORM_STACK",
    "MAX_INDEX",
    "NAMED_PINS",
    "NO_LOCATION_WARNING",
    "PIN_COUNT",
    "Backend",
    "BackendSpec",
    "BackendSpecError",
    "Location",
    "Pin",
    "SpecError",
    "Wire",
    "carrier_location_v0",
    "parse_address",
    "parse_backend_args",
    "parse_endpoint",
    "parse_location",
    "parse_text",
    "render",
    "wiring_items",
    "wiring_pin",
    "wiring_specification",
]

"""The backend file (the proxy's ``-b`` values): its records, their errors and rendering.

Design note
-----------
Each ``-b`` value is a file (if one of that name exists) or inline items separated by commas.
Lines hold one directive each; ``#`` starts a comment, blank lines are ignored::

    carrier HOST[:PORT] [LOCATION]   LOCATION = CARRIER (LUCIStack) or STACK/CARRIER (REDAC)
    wire SRC DST                     SRC, DST = [STACK/]CARRIER/PIN
    HOST[:PORT][/LOCATION]           legacy form of ``carrier``

PIN is 0..7 (ACL_OUT at the source, ACL_IN at the target) or aux0, aux1, gen0, gen1.

HOST is an IPv4 address, a host name or a bracketed IPv6 address (``[::1]:5732``).

Parsing runs in two passes (both in :mod:`.parse`).  The line pass turns each
line into a :class:`Backend` or :class:`Wire`, or a :class:`LineError`.  The setup pass sees every
``-b`` value at once, because a wire in one file may name a carrier given in another: duplicate
hosts and locations, one location form for all carriers, wires referencing located carriers, no
pin driven by two wires.  A carrier line that failed to parse skips the wire checks (its wires
would all look unknown).  All errors are collected and raised
together as one :class:`BackendFileError`; warnings are returned in :attr:`BackendFile.warnings`.

Provenance (file, line) rides on the values but takes no part in equality, so a backend file
compares equal to its re-parsed :func:`render` output.

Mapping to the wire: the reference proxy stamps ``location_v0`` (stack, carrier) only for
STACK/CARRIER locations; for a bare LUCIStack index it stamps nothing and the reference client
numbers such carriers ``(0, n)`` in extract order.  :attr:`Location.location_v0` makes that
explicit: a bare index ``n`` is ``(0, n)``.  Wiring pins name the carrier entity path
(``/<carrier MAC>``, as the reference proxy sends), see
:func:`pybrid.proxy.backendfile.wiring.wiring_items`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pybrid.wire.framing import DEFAULT_PORT

MAX_INDEX = 2**32 - 1  # stack and carrier are uint32 in CarrierLocationV0
PIN_COUNT = 8  # indexed pins 0..7: ACL_OUT at a wire's source, ACL_IN at its target
NAMED_PINS = ("aux0", "aux1", "gen0", "gen1")
COMMAND_LINE = "<command line>"
NO_LOCATION_WARNING = (
    "without REDAC addresses, all carriers will be treated equal: fine for LUCIDACs; for a REDAC "
    "give every carrier a STACK/CARRIER location so that signals can be routed between them"
)

# Location forms of a setup (see BackendFile.location_form).
FORM_NONE = "none"
FORM_CARRIER = "CARRIER"
FORM_STACK = "STACK/CARRIER"


@attrs.frozen
class Location:
    """Where a carrier sits: a bare carrier index (LUCIStack) or a stack and carrier (REDAC)."""

    stack: int | None
    carrier: int

    def __attrs_post_init__(self) -> None:
        for value in (self.carrier, 0 if self.stack is None else self.stack):
            if not 0 <= value <= MAX_INDEX:
                raise ValueError(f"location index {value} out of range 0..{MAX_INDEX}")

    @property
    def form(self) -> str:
        return FORM_CARRIER if self.stack is None else FORM_STACK

    @property
    def location_v0(self) -> tuple[int, int]:
        """``(stack, carrier)`` for ``CarrierLocationV0``; a bare index is stack 0."""
        return (0 if self.stack is None else self.stack, self.carrier)

    def __str__(self) -> str:
        return str(self.carrier) if self.stack is None else f"{self.stack}/{self.carrier}"


@attrs.frozen
class Pin:
    """One end of a wire: a carrier location and an indexed (0..7) or named pin."""

    location: Location
    index: int | None = None
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.index is None) == (self.name is None):
            raise ValueError("a pin has either an index or a name")
        if self.index is not None and not 0 <= self.index < PIN_COUNT:
            raise ValueError(f"pin {self.index} out of range 0..{PIN_COUNT - 1}")
        if self.name is not None and self.name not in NAMED_PINS:
            raise ValueError(f"unknown pin {self.name!r}")

    @property
    def pin(self) -> int | str:
        return self.index if self.index is not None else str(self.name)

    def __str__(self) -> str:
        return f"{self.location}/{self.pin}"


@attrs.frozen
class Wire:
    """A patch cable from a source carrier's pin to a target carrier's pin."""

    source: Pin
    target: Pin
    origin: str = attrs.field(default="", eq=False)
    line: int = attrs.field(default=0, eq=False)
    text: str = attrs.field(default="", eq=False, repr=False)

    def __str__(self) -> str:
        return f"wire {self.source} {self.target}"


@attrs.frozen
class Backend:
    """One device the proxy connects to, optionally with the location of its carrier."""

    host: str
    port: int = DEFAULT_PORT
    location: Location | None = None
    origin: str = attrs.field(default="", eq=False)
    line: int = attrs.field(default=0, eq=False)
    text: str = attrs.field(default="", eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 1..65535")

    @property
    def address(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def location_v0(self) -> tuple[int, int] | None:
        """``(stack, carrier)`` to stamp on this backend's carrier, or None without a location."""
        return None if self.location is None else self.location.location_v0

    def __str__(self) -> str:
        where = "" if self.location is None else f" {self.location}"
        return f"carrier {self.address}{where}"


@attrs.frozen
class BackendFile:
    """The validated backends and wires of a proxy, plus warnings for the operator."""

    backends: tuple[Backend, ...]
    wires: tuple[Wire, ...] = ()
    warnings: tuple[str, ...] = attrs.field(default=(), eq=False)

    @property
    def location_form(self) -> str:
        """FORM_NONE, FORM_CARRIER (LUCIStack) or FORM_STACK (REDAC); one form per setup."""
        located = [b.location for b in self.backends if b.location is not None]
        return located[0].form if located else FORM_NONE

    def backend_at(self, location: Location) -> Backend:
        for backend in self.backends:
            if backend.location == location:
                return backend
        raise LookupError(f"no carrier at location {location}")


@attrs.frozen
class LineError:
    """One problem in a line of the backend file: where, the offending text, and the rule broken."""

    origin: str
    line: int
    text: str
    message: str

    def __str__(self) -> str:
        where = f"{self.origin}:{self.line}" if self.line else self.origin
        return f"{where}: {self.text}: {self.message}" if self.text else f"{where}: {self.message}"


class BackendFileError(ValueError):
    """All problems found in the ``-b`` values, one per line of ``str()``."""

    def __init__(self, errors: Iterable[LineError]) -> None:
        self.errors: tuple[LineError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def render(backend_file: BackendFile) -> str:
    """The backend file in keyword syntax; ``parse_text(render(f)) == f``."""
    lines = [str(b) for b in backend_file.backends] + [str(w) for w in backend_file.wires]
    return "".join(line + "\n" for line in lines)


#: The names these had before "spec" was left to the device's entity specification and RunSpec.
BackendSpec = BackendFile
SpecError = LineError
BackendSpecError = BackendFileError


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
    "BackendFile",
    "BackendFileError",
    "BackendSpec",
    "BackendSpecError",
    "LineError",
    "Location",
    "Pin",
    "SpecError",
    "Wire",
    "render",
]

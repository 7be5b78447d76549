"""The two passes of the backend-file parser (public API: :mod:`pybrid.proxy.backendfile`).

Line pass (:func:`parse_lines`): each line becomes a :class:`~pybrid.proxy.backendfile.Backend`, a
:class:`~pybrid.proxy.backendfile.Wire`, nothing (blank or comment), or one
:class:`~pybrid.proxy.backendfile.LineError`.

Setup pass (:func:`finish`): rules that need every carrier and wire of all ``-b`` values at once;
then either raise every error collected, sorted by origin and line, or return the backend file
with its warnings.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from pybrid.proxy.backendfile.model import (
    COMMAND_LINE,
    DEFAULT_PORT,
    FORM_NONE,
    MAX_INDEX,
    NAMED_PINS,
    NO_LOCATION_WARNING,
    PIN_COUNT,
    Backend,
    BackendFile,
    BackendFileError,
    LineError,
    Location,
    Pin,
    Wire,
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_CARRIER_USAGE = "expected: carrier HOST[:PORT] [[STACK/]CARRIER]"
_WIRE_USAGE = "expected: wire [STACK/]CARRIER/PIN [STACK/]CARRIER/PIN"
_PIN_CHOICES = f"0..{PIN_COUNT - 1}, {', '.join(NAMED_PINS)}"


class _Bad(Exception):
    """A rule broken on one line; the message names the offending part."""


def parse_lines(
    lines: Iterable[str],
    origin: str,
    backends: list[Backend],
    wires: list[Wire],
    errors: list[LineError],
    *,
    start: int = 1,
) -> bool:
    """Append what each line holds to ``backends``/``wires``/``errors``.

    Lines are numbered from ``start``.  Returns True when a line that is not a wire failed (it
    may have been meant as a carrier).
    """
    carrier_failed = False
    for number, raw in enumerate(lines, start=start):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        words = text.split()
        try:
            if words[0] == "wire":
                wires.append(_wire(words[1:], origin, number, text))
            elif words[0] == "carrier":
                backends.append(_carrier(words[1:], origin, number, text))
            elif len(words) == 1:
                backends.append(_legacy(text, origin, number))
            else:
                raise _Bad(
                    f"unknown directive {words[0]!r} (expected carrier, wire or "
                    "HOST[:PORT][/STACK/CARRIER])"
                )
        except _Bad as e:
            carrier_failed = carrier_failed or words[0] != "wire"
            errors.append(LineError(origin, number, text, str(e)))
    return carrier_failed


def _carrier(args: list[str], origin: str, line: int, text: str) -> Backend:
    if not 1 <= len(args) <= 2:
        raise _Bad(_CARRIER_USAGE)
    if "/" in args[0]:
        raise _Bad(f"the location follows the host after a space; {_CARRIER_USAGE}")
    host, port = parse_address(args[0])
    location = parse_location(args[1]) if len(args) == 2 else None
    return Backend(host, port, location, origin=origin, line=line, text=text)


def _legacy(text: str, origin: str, line: int) -> Backend:
    if "," in text:
        raise _Bad("commas separate items only on the command line; use one line each")
    address, slash, where = text.partition("/")
    host, port = parse_address(address)
    location = parse_location(where) if slash else None
    return Backend(host, port, location, origin=origin, line=line, text=text)


def _wire(args: list[str], origin: str, line: int, text: str) -> Wire:
    if len(args) != 2:
        raise _Bad(_WIRE_USAGE)
    src, dst = parse_endpoint(args[0]), parse_endpoint(args[1])
    if src.location.form != dst.location.form:
        raise _Bad(
            f"source {src} and target {dst} use different forms; use CARRIER/PIN for both "
            "or STACK/CARRIER/PIN for both"
        )
    return Wire(src, dst, origin=origin, line=line, text=text)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` → (host, port); IPv6 hosts in brackets, returned without them."""
    port_text: str | None = None
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise _Bad(f"bad host {text!r}: missing ']'")
        try:
            host = str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise _Bad(f"bad host {text!r}: {inner!r} is no IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise _Bad(f"bad host {text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") > 1:
        raise _Bad(f"bad host {text!r}: write IPv6 addresses in brackets, e.g. [::1]:5732")
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        _check_host(host, text)
    return host, DEFAULT_PORT if port_text is None else _port(port_text)


def _check_host(host: str, text: str) -> None:
    if not host:
        raise _Bad(f"missing host in {text!r}")
    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _Bad(f"bad host {host!r}: not an IPv4 address") from None
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise _Bad(f"bad host {host!r}: expected an IPv4 address, a host name or [IPv6]")


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _Bad(f"bad port {text!r}: expected 1..65535")
    return int(text)


def _index(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_INDEX:
        raise ValueError(text)
    return int(text)


def parse_location(text: str) -> Location:
    """``CARRIER`` or ``STACK/CARRIER`` (non-negative integers)."""
    parts = text.split("/")
    try:
        if len(parts) == 1:
            return Location(None, _index(parts[0]))
        if len(parts) == 2:
            return Location(_index(parts[0]), _index(parts[1]))
    except ValueError:
        pass
    raise _Bad(f"bad location {text!r}: expected CARRIER or STACK/CARRIER (integers >= 0)")


def parse_endpoint(text: str) -> Pin:
    """``CARRIER/PIN`` or ``STACK/CARRIER/PIN``; PIN is 0..7 or a named pin."""
    where, slash, pin = text.rpartition("/")
    if not slash or where.count("/") > 1:
        raise _Bad(f"bad endpoint {text!r}: expected CARRIER/PIN or STACK/CARRIER/PIN")
    location = parse_location(where)
    if pin.isascii() and pin.isdigit():
        if int(pin) >= PIN_COUNT:
            raise _Bad(f"pin {pin} out of range 0..{PIN_COUNT - 1}")
        return Pin(location, index=int(pin))
    if pin not in NAMED_PINS:
        raise _Bad(f"unknown pin {pin!r}: expected {_PIN_CHOICES}")
    return Pin(location, name=pin)


# ---------------------------------------------------------------------------------------------
# Setup pass


def finish(
    backends: list[Backend],
    wires: list[Wire],
    errors: list[LineError],
    *,
    need_backend: bool,
    check_wires: bool,
    rank: Mapping[str, int] | None = None,
) -> BackendFile:
    """Check the whole setup; raise every error (sorted by ``rank`` of origin, then line) or
    return the backend file.  ``check_wires`` is False when a carrier line failed to parse: wires
    to it would all look unknown."""
    errors.extend(_check_setup(backends, wires, check_wires=check_wires))
    if need_backend and not backends and not errors:
        errors.append(LineError(COMMAND_LINE, 0, "", "no carrier defined"))
    if errors:
        order = rank or {}
        raise BackendFileError(sorted(errors, key=lambda e: (order.get(e.origin, -1), e.line)))
    warnings: list[str] = []
    if len(backends) > 1 and all(b.location is None for b in backends):
        warnings.append(NO_LOCATION_WARNING)
    return BackendFile(tuple(backends), tuple(wires), tuple(warnings))


def _err(item: Backend | Wire, message: str) -> LineError:
    origin = item.origin
    return LineError(origin, item.line, item.text or str(item), message)


def _at(item: Backend | Wire) -> str:
    origin = item.origin
    return f"{origin}:{item.line}" if item.line else origin


def _check_setup(
    backends: Sequence[Backend], wires: Sequence[Wire], *, check_wires: bool = True
) -> list[LineError]:
    errors: list[LineError] = []
    by_address: dict[tuple[str, int], Backend] = {}
    by_location: dict[Location, Backend] = {}
    first = backends[0] if backends else None
    form = first.location.form if first and first.location else FORM_NONE
    for b in backends:
        key = (b.host.lower(), b.port)
        if key in by_address:
            first_at = _at(by_address[key])
            errors.append(_err(b, f"duplicate backend {b.address} (first at {first_at})"))
        else:
            by_address[key] = b
        b_form = FORM_NONE if b.location is None else b.location.form
        if first is not None and b_form != form:
            errors.append(_err(b, _form_mismatch(b_form, form, first)))
        elif b.location is not None and b.location in by_location:
            other = by_location[b.location]
            errors.append(_err(b, f"duplicate location {b.location} (first at {_at(other)})"))
        elif b.location is not None:
            by_location[b.location] = b
    if check_wires:
        errors.extend(_check_wires(wires, by_location, form))
    return errors


def _form_mismatch(form: str, expected: str, first: Backend) -> str:
    if form == FORM_NONE:
        return f"carrier without a location, but {_at(first)} gives one; locate all or none"
    if expected == FORM_NONE:
        return f"carrier with a location, but {_at(first)} has none; locate all or none"
    return (
        f"location form {form} differs from {expected} at {_at(first)}; "
        "all carriers use bare indices (LUCIStack) or all STACK/CARRIER (REDAC)"
    )


def _check_wires(
    wires: Sequence[Wire], by_location: Mapping[Location, Backend], form: str
) -> list[LineError]:
    errors: list[LineError] = []
    driven: dict[Pin, Wire] = {}
    for w in wires:
        if form == FORM_NONE:
            errors.append(_err(w, "a wire needs locations on the carriers it references"))
            continue
        found = [_endpoint_problem(role, pin, by_location, form) for role, pin in _ends(w)]
        problems = [p for p in found if p]
        errors.extend(_err(w, p) for p in problems)
        if problems:
            continue
        if w.target in driven:
            errors.append(_err(w, f"target {w.target} already wired at {_at(driven[w.target])}"))
        else:
            driven[w.target] = w
    return errors


def _ends(w: Wire) -> tuple[tuple[str, Pin], tuple[str, Pin]]:
    return (("source", w.source), ("target", w.target))


def _endpoint_problem(
    role: str, pin: Pin, by_location: Mapping[Location, Backend], form: str
) -> str | None:
    if pin.location.form != form:
        return f"{role} {pin} is {pin.location.form}/PIN but carriers have {form} locations"
    if pin.location not in by_location:
        return f"unknown carrier {pin.location}: no carrier has that location"
    return None


# ---------------------------------------------------------------------------------------------
# Entry points


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


_FILE_SUFFIXES = (".txt", ".conf", ".cfg", ".ini", ".list", ".backends")


def _looks_like_path(value: str) -> bool:
    value = value.strip()
    return value.startswith(("/", "./", "../", "~")) or value.lower().endswith(_FILE_SUFFIXES)


def parse_backend_args(
    values: Sequence[str],
    *,
    exists: Callable[[str], bool] = os.path.isfile,
    read: Callable[[str], str] = _read_file,
) -> BackendFile:
    """Combine several ``-b`` values into one backend file; raise BackendFileError listing every
    error."""
    backends: list[Backend] = []
    wires: list[Wire] = []
    errors: list[LineError] = []
    carrier_failed = False
    rank: dict[str, int] = {}  # origins in order of appearance, to sort the errors
    inline_items = 0  # inline items are numbered across all inline -b values
    if not values:
        errors.append(LineError(COMMAND_LINE, 0, "", "no backend given (-b)"))
    for value in values:
        if exists(value):
            rank.setdefault(value, len(rank))
            try:
                lines = read(value).splitlines()
            except (OSError, UnicodeDecodeError) as e:
                errors.append(LineError(value, 0, "", f"cannot read: {e}"))
                carrier_failed = True
            else:
                carrier_failed |= parse_lines(lines, value, backends, wires, errors)
        elif _looks_like_path(value):
            rank.setdefault(COMMAND_LINE, len(rank))
            errors.append(LineError(COMMAND_LINE, 0, value, "no such file"))
            carrier_failed = True
        else:
            rank.setdefault(COMMAND_LINE, len(rank))
            items = value.split(",")
            start = inline_items + 1
            carrier_failed |= parse_lines(items, COMMAND_LINE, backends, wires, errors, start=start)
            inline_items += len(items)
    return finish(
        backends,
        wires,
        errors,
        need_backend=bool(values),
        check_wires=not carrier_failed,
        rank=rank,
    )


def parse_text(text: str, origin: str = "<text>") -> BackendFile:
    """Parse the text of one backend file (named ``origin`` in errors)."""
    backends: list[Backend] = []
    wires: list[Wire] = []
    errors: list[LineError] = []
    carrier_failed = parse_lines(text.splitlines(), origin, backends, wires, errors)
    return finish(backends, wires, errors, need_backend=False, check_wires=not carrier_failed)


__all__ = ["parse_address", "parse_backend_args", "parse_endpoint", "parse_location",
           "parse_text"]

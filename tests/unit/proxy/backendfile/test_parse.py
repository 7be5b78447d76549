"""Line syntax of backend specs: keyword and legacy forms, comments, hosts, ports, pins."""

from __future__ import annotations

import attrs
import pytest

from pybrid.proxy.backendfile import (
    COMMAND_LINE,
    Backend,
    BackendFileError,
    LineError,
    Location,
    Pin,
    Wire,
    parse_backend_args,
    parse_text,
)


def errors_of(text: str, source: str = "backends.txt") -> list[str]:
    with pytest.raises(BackendFileError) as info:
        parse_text(text, source)
    return [str(e) for e in info.value.errors]


def only_error(text: str) -> str:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


# --- keyword syntax ---------------------------------------------------------------------------


def test_carrier_keyword_with_port_and_bare_location() -> None:
    spec = parse_text("carrier 10.0.0.7:6000 3\n")
    assert spec.backends == (Backend("10.0.0.7", 6000, Location(None, 3)),)
    assert spec.wires == ()


def test_carrier_keyword_default_port_and_redac_location() -> None:
    (b,) = parse_text("carrier lucidac-aa-bb-cc.local 1/4").backends
    assert (b.host, b.port, b.location) == ("lucidac-aa-bb-cc.local", 5732, Location(1, 4))


def test_carrier_without_location() -> None:
    (b,) = parse_text("carrier 192.0.2.1").backends
    assert b.location is None and b.location_v0 is None


def test_wire_indexed_and_named_pins_mix() -> None:
    spec = parse_text("carrier 10.0.0.1 0\ncarrier 10.0.0.2 1\nwire 0/7 1/aux1\nwire 1/gen0 0/3\n")
    assert spec.wires == (
        Wire(Pin(Location(None, 0), index=7), Pin(Location(None, 1), name="aux1")),
        Wire(Pin(Location(None, 1), name="gen0"), Pin(Location(None, 0), index=3)),
    )


def test_wire_three_part_endpoints() -> None:
    spec = parse_text("carrier 10.0.0.1 2/0\ncarrier 10.0.0.2 2/1\nwire 2/0/0 2/1/gen1\n")
    (w,) = spec.wires
    assert w.source == Pin(Location(2, 0), index=0)
    assert w.target == Pin(Location(2, 1), name="gen1")


def test_provenance_is_recorded_but_not_compared() -> None:
    spec = parse_text("\n# c\ncarrier 10.0.0.1 0\ncarrier 10.0.0.2 1\nwire 0/0 1/0\n", "x.txt")
    assert [(b.origin, b.line) for b in spec.backends] == [("x.txt", 3), ("x.txt", 4)]
    assert (spec.wires[0].origin, spec.wires[0].line) == ("x.txt", 5)
    assert spec.backends[0] == Backend("10.0.0.1", 5732, Location(None, 0), origin="y", line=99)


# --- comments and blank lines -----------------------------------------------------------------


def test_comments_and_blank_lines_are_ignored() -> None:
    text = (
        "# full-line comment\n"
        "\n"
        "   \t \n"
        "   # indented comment\n"
        "carrier 10.0.0.1 0   # trailing comment\n"
        "carrier 10.0.0.2 1# touching comment\n"
        "wire 0/0 1/0 # cable A\n"
    )
    spec = parse_text(text)
    assert [b.host for b in spec.backends] == ["10.0.0.1", "10.0.0.2"]
    assert len(spec.wires) == 1


def test_empty_text_is_an_empty_spec() -> None:
    spec = parse_text("# nothing\n\n")
    assert spec.backends == () and spec.wires == () and spec.warnings == ()


def test_tabs_and_crlf_are_accepted() -> None:
    spec = parse_text("carrier\t10.0.0.1\t0\r\ncarrier 10.0.0.2  1\r\nwire  0/0\t1/0\r\n")
    assert len(spec.backends) == 2 and len(spec.wires) == 1


# --- legacy syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("10.0.0.7", Backend("10.0.0.7", 5732, None)),
        ("10.0.0.7:6000", Backend("10.0.0.7", 6000, None)),
        ("10.0.0.7/0/1", Backend("10.0.0.7", 5732, Location(0, 1))),
        ("10.0.0.7:6000/2/3", Backend("10.0.0.7", 6000, Location(2, 3))),
        ("lucidac-AA-BB-CC", Backend("lucidac-AA-BB-CC", 5732, None)),
        ("host.example/4", Backend("host.example", 5732, Location(None, 4))),
        ("[::1]:5733/0/0", Backend("::1", 5733, Location(0, 0))),
    ],
)
def test_legacy_lines(line: str, expected: Backend) -> None:
    assert parse_text(line + "\n").backends == (expected,)


def test_mixed_styles_in_one_file() -> None:
    text = "10.0.0.1/0/0\ncarrier 10.0.0.2 0/1\n10.0.0.3:5800/0/2  # legacy\nwire 0/0/0 0/2/1\n"
    spec = parse_text(text)
    assert [b.location for b in spec.backends] == [Location(0, 0), Location(0, 1), Location(0, 2)]
    assert spec.backends[2].port == 5800
    assert len(spec.wires) == 1


def test_legacy_line_with_comma_in_a_file_is_explained() -> None:
    assert only_error("10.0.0.1,10.0.0.2\n") == (
        "backends.txt:1: 10.0.0.1,10.0.0.2: "
        "commas separate items only on the command line; use one line each"
    )


# --- hosts and ports --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("[::1]:5732", "::1", 5732),
        ("[::1]", "::1", 5732),
        ("[2001:DB8:0:0::7]:6000", "2001:db8::7", 6000),
        ("192.0.2.255", "192.0.2.255", 5732),
        ("a", "a", 5732),
        ("Host-1.Example.ORG:1", "Host-1.Example.ORG", 1),
    ],
)
def test_hosts(text: str, host: str, port: int) -> None:
    (b,) = parse_text(f"carrier {text}\n").backends
    assert (b.host, b.port) == (host, port)


def test_ipv6_address_renders_in_brackets() -> None:
    (b,) = parse_text("carrier [::1]:6000\n").backends
    assert b.address == "[::1]:6000"
    assert str(b) == "carrier [::1]:6000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("carrier 10.0.0.256", "bad host '10.0.0.256': not an IPv4 address"),
        ("carrier 10.0.0", "bad host '10.0.0': not an IPv4 address"),
        ("carrier -bad-.example", "bad host '-bad-.example': expected an IPv4 address, a host"),
        ("carrier under_score", "bad host 'under_score': expected an IPv4 address, a host name"),
        ("carrier ::1", "bad host '::1': write IPv6 addresses in brackets, e.g. [::1]:5732"),
        ("carrier [::1", "bad host '[::1': missing ']'"),
        ("carrier [nope]:1", "bad host '[nope]:1': 'nope' is no IPv6 address"),
        ("carrier [::1]x", "bad host '[::1]x': expected ':PORT' after ']'"),
        ("carrier :5732", "missing host in ':5732'"),
        ("carrier 10.0.0.1:0", "bad port '0': expected 1..65535"),
        ("carrier 10.0.0.1:65536", "bad port '65536': expected 1..65535"),
        ("carrier 10.0.0.1:http", "bad port 'http': expected 1..65535"),
        ("carrier 10.0.0.1:", "bad port '': expected 1..65535"),
        ("carrier [::1]:-1", "bad port '-1': expected 1..65535"),
        ("10.0.0.1:99999/0/0", "bad port '99999': expected 1..65535"),
    ],
)
def test_bad_hosts_and_ports(text: str, message: str) -> None:
    error = only_error(text + "\n")
    assert error.startswith(f"backends.txt:1: {text}: {message}"), error


# --- locations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location", ["x", "1/2/3", "-1", "1/", "/1", "0/x", "4294967296", "1.5", "١"]
)
def test_bad_location(location: str) -> None:
    assert only_error(f"carrier 10.0.0.1 {location}\n") == (
        f"backends.txt:1: carrier 10.0.0.1 {location}: bad location {location!r}: "
        "expected CARRIER or STACK/CARRIER (integers >= 0)"
    )


def test_bad_legacy_location() -> None:
    assert only_error("10.0.0.1/0/0/0\n") == (
        "backends.txt:1: 10.0.0.1/0/0/0: bad location '0/0/0': "
        "expected CARRIER or STACK/CARRIER (integers >= 0)"
    )


def test_largest_location_index_is_accepted() -> None:
    (b,) = parse_text("carrier h 4294967295/4294967295\n").backends
    assert b.location == Location(2**32 - 1, 2**32 - 1)


def test_location_glued_to_host_in_keyword_form() -> None:
    assert only_error("carrier 10.0.0.1/0/1\n") == (
        "backends.txt:1: carrier 10.0.0.1/0/1: the location follows the host after a space; "
        "expected: carrier HOST[:PORT] [[STACK/]CARRIER]"
    )


# --- directives and arity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("carrier", "expected: carrier HOST[:PORT] [[STACK/]CARRIER]"),
        ("carrier a 0 1", "expected: carrier HOST[:PORT] [[STACK/]CARRIER]"),
        ("wire", "expected: wire [STACK/]CARRIER/PIN [STACK/]CARRIER/PIN"),
        ("wire 0/0", "expected: wire [STACK/]CARRIER/PIN [STACK/]CARRIER/PIN"),
        ("wire 0/0 1/0 2/0", "expected: wire [STACK/]CARRIER/PIN [STACK/]CARRIER/PIN"),
        (
            "cable 0/0 1/0",
            "unknown directive 'cable' (expected carrier, wire or HOST[:PORT][/STACK/CARRIER])",
        ),
        (
            "Carrier 10.0.0.1",
            "unknown directive 'Carrier' (expected carrier, wire or HOST[:PORT][/STACK/CARRIER])",
        ),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    assert only_error(text + "\n") == f"backends.txt:1: {text}: {message}"


# --- wire endpoints ---------------------------------------------------------------------------

LUCISTACK = "carrier 10.0.0.1 0\ncarrier 10.0.0.2 1\n"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("wire 0/9 1/0", "pin 9 out of range 0..7"),
        ("wire 0/0 1/8", "pin 8 out of range 0..7"),
        ("wire 0/aux2 1/0", "unknown pin 'aux2': expected 0..7, aux0, aux1, gen0, gen1"),
        ("wire 0/AUX0 1/0", "unknown pin 'AUX0': expected 0..7, aux0, aux1, gen0, gen1"),
        ("wire 0/-1 1/0", "unknown pin '-1': expected 0..7, aux0, aux1, gen0, gen1"),
        ("wire 0 1/0", "bad endpoint '0': expected CARRIER/PIN or STACK/CARRIER/PIN"),
        ("wire 0/0/0/0 1/0", "bad endpoint '0/0/0/0': expected CARRIER/PIN or STACK/CARRIER/PIN"),
        ("wire x/0 1/0", "bad location 'x': expected CARRIER or STACK/CARRIER (integers >= 0)"),
        (
            "wire 0/0 0/1/0",
            "source 0/0 and target 0/1/0 use different forms; "
            "use CARRIER/PIN for both or STACK/CARRIER/PIN for both",
        ),
    ],
)
def test_wire_endpoint_errors(wire: str, message: str) -> None:
    errors = errors_of(LUCISTACK + wire + "\n")
    assert errors == [f"backends.txt:3: {wire}: {message}"]


def test_example_message_from_the_issue() -> None:
    text = "carrier 10.0.0.1 0\ncarrier 10.0.0.2 1\n\n\n\n# x\nwire 0/9 1/0\n"
    assert errors_of(text) == ["backends.txt:7: wire 0/9 1/0: pin 9 out of range 0..7"]


def test_error_text_is_the_line_without_its_comment() -> None:
    (error,) = errors_of(LUCISTACK + "   wire 0/9 1/0   # too far\n")
    assert error == "backends.txt:3: wire 0/9 1/0: pin 9 out of range 0..7"


# --- the exception and its values ---------------------------------------------------------------


def test_exception_carries_typed_errors_one_per_line() -> None:
    with pytest.raises(BackendFileError) as info:
        parse_text("bogus line here\ncarrier 10.0.0.1:0\n", "f.txt")
    exc = info.value
    assert isinstance(exc, ValueError)
    assert [(e.origin, e.line) for e in exc.errors] == [("f.txt", 1), ("f.txt", 2)]
    assert exc.errors[1] == LineError(
        "f.txt", 2, "carrier 10.0.0.1:0", "bad port '0': expected 1..65535"
    )
    assert str(exc).splitlines() == [str(e) for e in exc.errors]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        exc.errors[0].line = 3  # type: ignore[misc]


def test_spec_error_without_line_or_text() -> None:
    assert str(LineError("x.txt", 0, "", "cannot read")) == "x.txt: cannot read"
    assert str(LineError(COMMAND_LINE, 0, "a.txt", "no such file")) == (
        "<command line>: a.txt: no such file"
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pin(Location(None, 0)),
        lambda: Pin(Location(None, 0), index=1, name="aux0"),
        lambda: Pin(Location(None, 0), index=8),
        lambda: Pin(Location(None, 0), name="gen2"),
        lambda: Location(None, -1),
        lambda: Location(-1, 0),
        lambda: Location(None, 2**32),
        lambda: Backend("h", 0),
        lambda: Backend("h", 65536),
    ],
)
def test_values_reject_invalid_fields(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_inline_keyword_directives() -> None:
    spec = parse_backend_args(["carrier 10.0.0.1 0,carrier 10.0.0.2 1,wire 0/0 1/aux0"])
    assert len(spec.backends) == 2 and len(spec.wires) == 1
    assert spec.wires[0].origin == COMMAND_LINE and spec.wires[0].line == 3


def test_the_old_names_still_import() -> None:
    from pybrid.proxy.backendfile import BackendFile, BackendSpec, BackendSpecError, SpecError

    assert (BackendSpec, SpecError, BackendSpecError) == (BackendFile, LineError,
                                                          BackendFileError)

"""Whole-setup rules of backend specs, warnings, and combining several ``-b`` values."""

from __future__ import annotations

import pathlib

import pytest

from pybrid.proxy.backendfile import (
    FORM_CARRIER,
    FORM_NONE,
    FORM_STACK,
    NO_LOCATION_WARNING,
    BackendFile,
    BackendFileError,
    Location,
    parse_backend_args,
    parse_text,
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(BackendFileError) as info:
        parse_text(text, "b.txt")
    return [str(e) for e in info.value.errors]


def args_errors(values: list[str], files: dict[str, str] | None = None) -> list[str]:
    files = files or {}
    with pytest.raises(BackendFileError) as info:
        parse_backend_args(values, exists=files.__contains__, read=files.__getitem__)
    return [str(e) for e in info.value.errors]


# --- duplicates -------------------------------------------------------------------------------


def test_duplicate_host_and_port() -> None:
    assert errors_of("carrier 10.0.0.1 0\ncarrier 10.0.0.1:5732 1\n") == [
        "b.txt:2: carrier 10.0.0.1:5732 1: duplicate backend 10.0.0.1:5732 (first at b.txt:1)"
    ]


def test_same_host_other_port_is_fine() -> None:
    spec = parse_text("carrier 10.0.0.1:5732 0\ncarrier 10.0.0.1:5733 1\n")
    assert [b.port for b in spec.backends] == [5732, 5733]


def test_duplicate_host_ignores_case_and_ipv6_spelling() -> None:
    assert errors_of("carrier Lucidac.example\ncarrier lucidac.EXAMPLE:5732\n") == [
        "b.txt:2: carrier lucidac.EXAMPLE:5732: duplicate backend lucidac.EXAMPLE:5732 "
        "(first at b.txt:1)"
    ]
    assert len(errors_of("carrier [::1]\ncarrier [0:0::1]:5732\n")) == 1


def test_duplicate_location() -> None:
    assert errors_of("carrier 10.0.0.1 0/1\ncarrier 10.0.0.2 0/2\n10.0.0.3/0/1\n") == [
        "b.txt:3: 10.0.0.3/0/1: duplicate location 0/1 (first at b.txt:1)"
    ]


def test_duplicate_bare_location() -> None:
    assert errors_of("carrier 10.0.0.1 3\ncarrier 10.0.0.2 3\n") == [
        "b.txt:2: carrier 10.0.0.2 3: duplicate location 3 (first at b.txt:1)"
    ]


def test_same_carrier_index_in_different_stacks_is_fine() -> None:
    assert len(parse_text("carrier a 0/0\ncarrier b 1/0\n").backends) == 2


# --- one location form per setup --------------------------------------------------------------


def test_bare_and_stacked_locations_do_not_mix() -> None:
    assert errors_of("carrier 10.0.0.1 0\ncarrier 10.0.0.2 0/1\n") == [
        "b.txt:2: carrier 10.0.0.2 0/1: location form STACK/CARRIER differs from CARRIER at "
        "b.txt:1; all carriers use bare indices (LUCIStack) or all STACK/CARRIER (REDAC)"
    ]


def test_located_and_unlocated_carriers_do_not_mix() -> None:
    assert errors_of("carrier 10.0.0.1 0/0\ncarrier 10.0.0.2\n") == [
        "b.txt:2: carrier 10.0.0.2: carrier without a location, but b.txt:1 gives one; "
        "locate all or none"
    ]
    assert errors_of("10.0.0.1\n10.0.0.2/0/0\n") == [
        "b.txt:2: 10.0.0.2/0/0: carrier with a location, but b.txt:1 has none; locate all or none"
    ]


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("carrier a\ncarrier b\n", FORM_NONE),
        ("carrier a 0\ncarrier b 1\n", FORM_CARRIER),
        ("carrier a 0/0\ncarrier b 0/1\n", FORM_STACK),
        ("", FORM_NONE),
    ],
)
def test_location_form(text: str, form: str) -> None:
    assert parse_text(text).location_form == form


# --- wires ------------------------------------------------------------------------------------


def test_wire_needs_locations() -> None:
    assert errors_of("carrier 10.0.0.1\ncarrier 10.0.0.2\nwire 0/0 1/0\n") == [
        "b.txt:3: wire 0/0 1/0: a wire needs locations on the carriers it references"
    ]


def test_wire_to_unknown_carrier() -> None:
    assert errors_of("carrier a 0\ncarrier b 1\nwire 0/0 2/0\nwire 5/1 6/1\n") == [
        "b.txt:3: wire 0/0 2/0: unknown carrier 2: no carrier has that location",
        "b.txt:4: wire 5/1 6/1: unknown carrier 5: no carrier has that location",
        "b.txt:4: wire 5/1 6/1: unknown carrier 6: no carrier has that location",
    ]


def test_wire_to_unknown_stacked_carrier() -> None:
    assert errors_of("carrier a 0/0\ncarrier b 0/1\nwire 0/0/0 1/1/0\n") == [
        "b.txt:3: wire 0/0/0 1/1/0: unknown carrier 1/1: no carrier has that location"
    ]


def test_wire_form_must_match_the_carriers() -> None:
    assert errors_of("carrier a 0/0\ncarrier b 0/1\nwire 0/0 1/0\n") == [
        "b.txt:3: wire 0/0 1/0: source 0/0 is CARRIER/PIN but carriers have STACK/CARRIER "
        "locations",
        "b.txt:3: wire 0/0 1/0: target 1/0 is CARRIER/PIN but carriers have STACK/CARRIER "
        "locations",
    ]
    assert errors_of("carrier a 0\ncarrier b 1\nwire 0/0/0 0/1/0\n") == [
        "b.txt:3: wire 0/0/0 0/1/0: source 0/0/0 is STACK/CARRIER/PIN but carriers have CARRIER "
        "locations",
        "b.txt:3: wire 0/0/0 0/1/0: target 0/1/0 is STACK/CARRIER/PIN but carriers have CARRIER "
        "locations",
    ]


def test_pin_driven_twice() -> None:
    text = "carrier a 0\ncarrier b 1\nwire 0/0 1/0\nwire 0/1 1/0\nwire 0/0 1/0\nwire 0/0 1/1\n"
    assert errors_of(text) == [
        "b.txt:4: wire 0/1 1/0: target 1/0 already wired at b.txt:3",
        "b.txt:5: wire 0/0 1/0: target 1/0 already wired at b.txt:3",
    ]


def test_fan_out_and_loopback_wires_are_fine() -> None:
    spec = parse_text("carrier a 0\ncarrier b 1\nwire 0/0 1/0\nwire 0/0 1/1\nwire 0/aux0 0/aux0\n")
    assert len(spec.wires) == 3


def test_carrier_syntax_error_suppresses_wire_checks() -> None:
    # the broken carrier line was meant to define carrier 1; "unknown carrier 1" would mislead
    assert errors_of("carrier a 0\ncarrier b:0 1\nwire 0/0 1/0\n") == [
        "b.txt:2: carrier b:0 1: bad port '0': expected 1..65535"
    ]


def test_all_errors_are_collected_in_line_order() -> None:
    text = "carrier a 0\nwire 0/9 1/0\ncarrier a 1\nfoo bar\ncarrier c 1/1\n"
    errors = errors_of(text)
    assert [e.split(":")[1] for e in errors] == ["2", "3", "4", "5"]


# --- warnings ---------------------------------------------------------------------------------


def test_warning_for_several_unlocated_carriers() -> None:
    spec = parse_text("carrier 10.0.0.1\ncarrier 10.0.0.2\n")
    assert spec.warnings == (NO_LOCATION_WARNING,)
    assert NO_LOCATION_WARNING.startswith(
        "without REDAC addresses, all carriers will be treated equal"
    )


@pytest.mark.parametrize(
    "text",
    ["carrier 10.0.0.1\n", "carrier a 0\ncarrier b 1\n", "carrier a 0/0\ncarrier b 0/1\n"],
)
def test_no_warning_for_one_carrier_or_located_carriers(text: str) -> None:
    assert parse_text(text).warnings == ()


# --- several -b values ------------------------------------------------------------------------


def test_inline_legacy_list() -> None:
    spec = parse_backend_args(["10.0.0.7/0/0,10.0.0.8/0/1"], exists=lambda _: False)
    assert [(b.host, b.location) for b in spec.backends] == [
        ("10.0.0.7", Location(0, 0)),
        ("10.0.0.8", Location(0, 1)),
    ]
    assert [(b.origin, b.line) for b in spec.backends] == [
        ("<command line>", 1),
        ("<command line>", 2),
    ]


def test_repeated_values_combine_files_and_inline() -> None:
    files = {"stack0.txt": "carrier 10.0.0.1 0/0\n", "wires.txt": "wire 0/0/0 0/1/aux0\n"}
    spec = parse_backend_args(
        ["stack0.txt", "10.0.0.2/0/1", "wires.txt"],
        exists=files.__contains__,
        read=files.__getitem__,
    )
    assert [b.location for b in spec.backends] == [Location(0, 0), Location(0, 1)]
    assert [b.origin for b in spec.backends] == ["stack0.txt", "<command line>"]
    assert spec.wires[0].origin == "wires.txt"


def test_errors_across_all_values_in_order() -> None:
    files = {"a.txt": "carrier 10.0.0.1 0\nwire 0/9 1/0\n", "b.txt": "carrier 10.0.0.1 1\n"}
    assert args_errors(["a.txt", "10.0.0.2/x, 10.0.0.3:0", "b.txt"], files) == [
        "a.txt:2: wire 0/9 1/0: pin 9 out of range 0..7",
        "<command line>:1: 10.0.0.2/x: bad location 'x': "
        "expected CARRIER or STACK/CARRIER (integers >= 0)",
        "<command line>:2: 10.0.0.3:0: bad port '0': expected 1..65535",
        "b.txt:1: carrier 10.0.0.1 1: duplicate backend 10.0.0.1:5732 (first at a.txt:1)",
    ]


def test_inline_items_are_numbered_across_values() -> None:
    assert args_errors(["10.0.0.1,10.0.0.2", "10.0.0.3,10.0.0.1"]) == [
        "<command line>:4: 10.0.0.1: duplicate backend 10.0.0.1:5732 (first at <command line>:1)"
    ]


def test_wire_in_one_value_to_a_carrier_in_another() -> None:
    values = ["carrier a 0", "carrier b 1", "wire 0/0 1/0"]
    spec = parse_backend_args(values, exists=lambda _: False)
    assert len(spec.wires) == 1


def test_inline_empty_items_are_ignored() -> None:
    spec = parse_backend_args(["10.0.0.1,,10.0.0.2,"], exists=lambda _: False)
    assert len(spec.backends) == 2


def test_missing_file_that_looks_like_a_path() -> None:
    for value in ["backends.txt", "/etc/pybrid/backends", "./b", "~/x", "setup.CONF"]:
        assert args_errors([value]) == [f"<command line>: {value}: no such file"]


def test_unreadable_file() -> None:
    def read(path: str) -> str:
        raise PermissionError(13, "Permission denied")

    # the unreadable file may hold the carriers: the wire is not reported as unknown
    with pytest.raises(BackendFileError) as info:
        parse_backend_args(
            ["b.txt", "carrier a 0,wire 0/0 1/0"], exists=lambda v: v == "b.txt", read=read
        )
    assert [str(e) for e in info.value.errors] == [
        "b.txt: cannot read: [Errno 13] Permission denied"
    ]


def test_undecodable_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "b.txt"
    path.write_bytes(b"carrier \xff\n")
    with pytest.raises(BackendFileError) as info:
        parse_backend_args([str(path)])
    (error,) = info.value.errors
    assert error.origin == str(path) and error.message.startswith("cannot read: ")


def test_real_file_is_read(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "b.txt"
    path.write_text("carrier 10.0.0.1 0\ncarrier 10.0.0.2 1\nwire 0/0 1/0\n")
    spec = parse_backend_args([str(path)])
    assert spec.backends[1].origin == str(path) and spec.backends[1].line == 2


def test_no_values() -> None:
    assert args_errors([]) == ["<command line>: no backend given (-b)"]


def test_values_without_carriers() -> None:
    assert args_errors([" # only a comment", ","]) == ["<command line>: no carrier defined"]


def test_backend_at() -> None:
    spec = parse_text("carrier a 0/0\ncarrier b 0/1\n")
    assert spec.backend_at(Location(0, 1)).host == "b"
    with pytest.raises(LookupError, match="no carrier at location 1/1"):
        spec.backend_at(Location(1, 1))


def test_spec_value_equality_ignores_warnings() -> None:
    spec = parse_text("carrier a\ncarrier b\n")
    assert spec == BackendFile(spec.backends, (), ())

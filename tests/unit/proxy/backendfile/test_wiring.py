"""Example backend files, and the mapping of specs to protobuf (locations, wiring items)."""

from __future__ import annotations

import pathlib

import pytest

from pybrid.proto import pb
from pybrid.proxy.backendfile import (
    FORM_CARRIER,
    FORM_NONE,
    FORM_STACK,
    Backend,
    BackendFile,
    Location,
    Pin,
    Wire,
    carrier_location_v0,
    parse_backend_args,
    render,
    wiring_items,
    wiring_specification,
)

EXAMPLES = pathlib.Path(__file__).resolve().parents[4] / "examples" / "proxy"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.txt"))


def test_the_four_examples_exist() -> None:
    assert {p.name for p in EXAMPLE_FILES} >= {
        "lucidac.txt",
        "lucistack.txt",
        "iredac.txt",
        "redac.txt",
    }


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_parses_without_errors_or_warnings(path: pathlib.Path) -> None:
    spec = parse_backend_args([str(path)])
    assert spec.backends
    assert spec.warnings == ()
    assert all(b.origin == str(path) for b in spec.backends)
    for address in (b.host for b in spec.backends):
        assert address.startswith(("192.0.2.", "10.0.")), "use documentation/private addresses"


def example(name: str) -> BackendFile:
    return parse_backend_args([str(EXAMPLES / name)])


def test_lucidac_example() -> None:
    spec = example("lucidac.txt")
    assert spec.backends == (Backend("192.0.2.10", 5732),)
    assert spec.location_form == FORM_NONE


def test_lucistack_example_is_the_symmetric_four_pin_patch() -> None:
    spec = example("lucistack.txt")
    assert spec.location_form == FORM_CARRIER
    assert [b.location for b in spec.backends] == [Location(None, 0), Location(None, 1)]
    pins = [(str(w.source), str(w.target)) for w in spec.wires]
    left_to_right = [(f"0/{i}", f"1/{i}") for i in range(4)]
    right_to_left = [(f"1/{i}", f"0/{i}") for i in range(4, 8)]
    assert pins == left_to_right + right_to_left


def test_iredac_example_is_one_stack_of_seven() -> None:
    spec = example("iredac.txt")
    assert spec.location_form == FORM_STACK
    assert [b.location for b in spec.backends] == [Location(0, c) for c in range(7)]


def test_redac_example_is_two_stacks_of_seven() -> None:
    spec = example("redac.txt")
    assert [b.location for b in spec.backends] == [
        Location(s, c) for s in range(2) for c in range(7)
    ]
    assert all(w.source.location.stack != w.target.location.stack for w in spec.wires)


def test_all_examples_together_conflict() -> None:
    # iredac.txt and redac.txt describe the same stack 0: combining them must not pass silently
    with pytest.raises(ValueError, match=r"duplicate backend 10\.0\.0\.10:5732"):
        parse_backend_args([str(EXAMPLES / "iredac.txt"), str(EXAMPLES / "redac.txt")])


# --- location_v0 ------------------------------------------------------------------------------


def test_location_v0_of_bare_index_is_stack_zero() -> None:
    assert Location(None, 3).location_v0 == (0, 3)
    assert Location(2, 5).location_v0 == (2, 5)
    assert Backend("h", location=Location(None, 1)).location_v0 == (0, 1)
    assert Backend("h").location_v0 is None


def test_carrier_location_v0_message() -> None:
    msg = carrier_location_v0(Location(1, 6))
    assert (msg.stack, msg.carrier) == (1, 6)
    entity = pb.Entity(id="/00-00-5e-00-53-00")
    entity.location_v0.CopyFrom(carrier_location_v0(Location(None, 4)))
    assert entity.WhichOneof("location") == "location_v0"
    assert (entity.location_v0.stack, entity.location_v0.carrier) == (0, 4)


def test_str_of_locations_and_pins() -> None:
    assert str(Location(None, 3)) == "3" and str(Location(1, 3)) == "1/3"
    assert str(Pin(Location(1, 3), index=0)) == "1/3/0"
    assert str(Pin(Location(None, 3), name="gen1")) == "3/gen1"
    assert Pin(Location(None, 3), name="gen1").pin == "gen1"
    assert Pin(Location(None, 3), index=2).pin == 2


# --- wiring specifications --------------------------------------------------------------------

PATHS = {Location(None, 0): "/00-00-5e-00-53-00", Location(None, 1): "/00-00-5e-00-53-01"}


def test_wiring_specification_indexed_and_named() -> None:
    wire = Wire(Pin(Location(None, 0), index=3), Pin(Location(None, 1), name="aux1"))
    msg = wiring_specification(wire, PATHS)
    assert msg.source.entity.path == "/00-00-5e-00-53-00"
    assert msg.source.WhichOneof("kind") == "indexed_pin" and msg.source.indexed_pin == 3
    assert msg.target.entity.path == "/00-00-5e-00-53-01"
    assert msg.target.WhichOneof("kind") == "named_pin" and msg.target.named_pin == "aux1"


def test_indexed_pin_zero_is_still_set() -> None:
    wire = Wire(Pin(Location(None, 0), index=0), Pin(Location(None, 1), index=0))
    msg = wiring_specification(wire, PATHS)
    assert msg.source.WhichOneof("kind") == "indexed_pin"
    assert msg.target.WhichOneof("kind") == "indexed_pin"


def test_wiring_items_look_like_the_reference_proxy() -> None:
    # The reference proxy's extract reply carries one Item per wire with an empty entity.
    spec = example("lucistack.txt")
    items = wiring_items(spec.wires, PATHS)
    assert len(items) == 8
    item = items[0]
    assert item.HasField("entity") and item.entity.path == ""
    assert item.WhichOneof("kind") == "wiring_specification"
    assert item.SerializeToString().startswith(b"\x0a\x00")
    expected = pb.Item()
    expected.entity.SetInParent()
    pin = expected.wiring_specification.source
    pin.entity.path, pin.indexed_pin = "/00-00-5e-00-53-00", 0
    pin = expected.wiring_specification.target
    pin.entity.path, pin.indexed_pin = "/00-00-5e-00-53-01", 0
    assert item.SerializeToString() == expected.SerializeToString()
    module = pb.Module(items=items)
    assert pb.Module.FromString(module.SerializeToString()) == module


def test_wiring_with_unknown_location_path() -> None:
    wire = Wire(Pin(Location(None, 0), index=0), Pin(Location(None, 2), index=0))
    with pytest.raises(LookupError, match="no carrier path for location 2"):
        wiring_items([wire], PATHS)


def test_render_of_an_example_parses_back_equal() -> None:
    from pybrid.proxy.backendfile import parse_text

    for name in ("lucidac.txt", "lucistack.txt", "iredac.txt", "redac.txt"):
        spec = example(name)
        assert parse_text(render(spec)) == spec

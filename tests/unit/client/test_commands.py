"""The client commands' pure parts: token variables, time ranges, the extract display."""

from __future__ import annotations

import argparse

import pytest

from pybrid.client.cli import build_parser
from pybrid.client.commands import ping, reset
from pybrid.client.commands.extract import build_parser as extract_parser
from pybrid.client.commands.extract import display_lines
from pybrid.client.commands.options import IC_TIME_RANGE, seconds_in, token_from_env
from pybrid.proto import pb


def test_token_prefers_ours_then_the_reference_name(monkeypatch):
    monkeypatch.delenv("PYBRID_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("PYBRID_AUTHENTICATION", raising=False)
    assert token_from_env() is None
    monkeypatch.setenv("PYBRID_AUTHENTICATION", "ref")
    assert token_from_env() == "ref"
    monkeypatch.setenv("PYBRID_AUTH_TOKEN", "ours")
    assert token_from_env() == "ours"
    monkeypatch.setenv("PYBRID_AUTH_TOKEN", "")  # empty counts as unset
    assert token_from_env() == "ref"


def test_seconds_in_range_accepts_bounds_and_names_the_unit():
    parse = seconds_in(*IC_TIME_RANGE, "--ic-time")
    assert parse("1e-7") == 1e-7 and parse("10") == 10.0 and parse("0.0001") == 1e-4
    with pytest.raises(argparse.ArgumentTypeError) as big:
        parse("100000")
    assert str(big.value) == (
        "--ic-time is in seconds and must be between 1e-07 and 10 s, not 100000 s "
        "(the reference CLI takes nanoseconds: 100000 ns would be 0.0001 s)")
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be positive: '0' \(seconds\)"):
        parse("0")
    with pytest.raises(argparse.ArgumentTypeError) as small:
        parse("1e-8")
    assert str(small.value) == ("--ic-time is in seconds and must be between 1e-07 and 10 s, "
                                "not 1e-8 s")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number of seconds"):
        parse("soon")


def test_pybrid_run_checks_op_and_ic_time(capsys):
    args = build_parser().parse_args(["h", "-t", "2", "--ic-time", "0.001"])
    assert (args.op_time, args.ic_time) == (2.0, 0.001)
    for bad in (["-t", "100000"], ["--ic-time", "11"], ["-t", "-1"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["h", *bad])
        assert e.value.code == 64
    assert "is in seconds" in capsys.readouterr().err


def test_command_parsers_use_exit_64_and_defaults(capsys):
    args = ping.build_parser().parse_args(["h"])
    assert (args.count, args.interval, args.wait, args.kind) == (4, 1.0, 2.0, "generic")
    assert reset.build_parser().parse_args(["h", "--drop-calibration"]).drop_calibration
    with pytest.raises(SystemExit) as e:
        ping.build_parser().parse_args(["h", "-c", "0"])
    assert e.value.code == 64
    with pytest.raises(SystemExit) as e:
        extract_parser().parse_args(["--nope"])
    assert e.value.code == 64
    assert extract_parser().parse_args([]).host is None  # no host: discovered (mDNS)
    assert ping.build_parser().parse_args(["--detect"]).detect
    assert "PYBRID_AUTHENTICATION" in ping.build_parser().format_help()


def _module() -> pb.Module:
    m = pb.Module()
    root = m.items.add().entity_specification.entity
    root.id, root.class_ = "/AA", pb.Entity.DEVICE
    for i, mac in enumerate(("AA", "BB")):
        carrier = root.children.add(id=f"/{mac}", class_=pb.Entity.CARRIER, type=1, eui="E1")
        carrier.location_v0.stack, carrier.location_v0.carrier = 0, i
        carrier.version.major = 1
        cluster = carrier.children.add(id="/0", class_=pb.Entity.CLUSTER)
        cluster.children.add(id="/M0", class_=pb.Entity.M_BLOCK, variant=2)
    wire = m.items.add().wiring_specification
    wire.source.entity.path, wire.source.named_pin = "/AA/T", "out"
    wire.target.entity.path, wire.target.indexed_pin = "/BB/T", 3
    adc = m.items.add()
    adc.entity.path = "/AA/0/M0"
    adc.adc_config.channels.add(idx=0)
    return m


def test_display_lines_show_carriers_tree_wiring_and_config():
    lines = display_lines(_module())
    assert lines == [
        "carriers (2):",
        "  AA  stack 0 carrier 0",
        "  BB  stack 0 carrier 1",
        "entities:",
        "  /AA  DEVICE  type 0 variant 0  version 0.0.0",
        "    /AA  CARRIER  type 1 variant 0  version 1.0.0  eui E1  stack 0 carrier 0",
        "      /AA/0  CLUSTER  type 0 variant 0  version 0.0.0",
        "        /AA/0/M0  M_BLOCK  type 0 variant 2  version 0.0.0",
        "    /BB  CARRIER  type 1 variant 0  version 1.0.0  eui E1  stack 0 carrier 1",
        "      /BB/0  CLUSTER  type 0 variant 0  version 0.0.0",
        "        /BB/0/M0  M_BLOCK  type 0 variant 2  version 0.0.0",
        "wiring (1):",
        "  /AA/T:out -> /BB/T:3",
        "configuration items (1):",
        "  /AA/0/M0 adc_config",
    ]


def test_display_of_an_empty_reply():
    assert display_lines(pb.Module()) == ["carriers (0):", "entities:", "wiring (0):"]

"""The shared command-line pieces: one-line usage errors, ``--version``, tidy twistd help."""

from __future__ import annotations

import pytest
from twisted.python import usage

from pybrid.commandline import Parser, TwistdOptions, one_line, usage_line
from pybrid.device.plugin import Options as DeviceOptions
from pybrid.proxy.plugin import Options as ProxyOptions
from pybrid.version import version


def test_parser_error_is_the_message_and_one_usage_line(capsys: pytest.CaptureFixture[str]):
    p = Parser(prog="tool", usage_status=64)
    p.add_argument("host")
    p.add_argument("--count", type=int)
    with pytest.raises(SystemExit) as info:
        p.parse_args(["x", "--count", "many"])
    assert info.value.code == 64
    assert capsys.readouterr().err.splitlines() == [
        "tool: error: argument --count: invalid int value: 'many'",
        "usage: tool [options] host  (tool --help lists the options)",
    ]


def test_an_optional_positional_is_shown_in_brackets(capsys: pytest.CaptureFixture[str]):
    p = Parser(prog="tool", usage_status=64)
    p.add_argument("host", nargs="?")
    with pytest.raises(SystemExit):
        p.parse_args(["--bogus"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "usage: tool [options] [host]  (tool --help lists the options)")


def test_parser_answers_version_before_checking_arguments(capsys: pytest.CaptureFixture[str]):
    p = Parser(prog="tool")
    p.add_argument("host")
    with pytest.raises(SystemExit) as info:
        p.parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tool (pybrid-twisted) {version()}\n"


def test_usage_line() -> None:
    assert usage_line("twistd pybrid-device", "[options]") == (
        "usage: twistd pybrid-device [options]  (twistd pybrid-device --help lists the options)")


@pytest.mark.parametrize("options", [ProxyOptions, DeviceOptions])
def test_plugin_help_has_no_docstring_indentation(options: type[TwistdOptions]) -> None:
    docs = options().docs
    assert docs and all(doc == one_line(doc) for doc in docs.values()), docs


def test_plugin_options_raise_usage_errors_when_used_directly() -> None:
    with pytest.raises(usage.UsageError, match="--carriers must be an integer"):
        DeviceOptions().parseOptions(["--carriers", "x"])


def test_plugin_options_under_twistd_print_the_error_and_one_usage_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    class Parent:
        subCommand = "pybrid-device"

    options = DeviceOptions()
    options.parent = Parent()
    with pytest.raises(SystemExit) as info:
        options.parseOptions(["--carriers", "x"])
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "twistd pybrid-device: error: --carriers must be an integer, not 'x'",
        "usage: twistd [twistd options] pybrid-device [options]  "
        "(twistd pybrid-device --help lists the options)",
    ]

"""Every installed command as a subprocess: ``--version`` answers, and a bad command line is
the error and one usage line on stderr (no help), with the exit status it always had."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from pybrid.version import version

BIN = pathlib.Path(sys.executable).parent
TIMEOUT = 60  # interpreter start-up on a busy machine
CONSOLE = ["pybrid-run", "pybrid-monitor", "pybrid-ping", "pybrid-extract", "pybrid-reset"]
PLUGINS = ["pybrid-proxy", "pybrid-device"]
#: Exit status of a bad command line: 64 for the client tools, argparse's 2 for the monitor,
#: twistd's 1 for the plugins.
USAGE_STATUS = {"pybrid-run": 64, "pybrid-ping": 64, "pybrid-extract": 64, "pybrid-reset": 64,
                "pybrid-monitor": 2, "pybrid-proxy": 1, "pybrid-device": 1}


def argv(name: str, *args: str) -> list[str]:
    if name in PLUGINS:
        return [str(BIN / "twistd"), "-n", "--pidfile=", name, *args]
    return [str(BIN / name), *args]


def run(cwd: pathlib.Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(name, *args), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def prog(name: str) -> str:
    return f"twistd {name}" if name in PLUGINS else name


@pytest.mark.parametrize("name", CONSOLE + PLUGINS)
def test_every_command_answers_version(name: str, tmp_path: pathlib.Path) -> None:
    done = run(tmp_path, name, "--version")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{name} (pybrid-twisted) {version()}\n"


def assert_short_error(done: subprocess.CompletedProcess[str], name: str, *wanted: str) -> None:
    assert done.returncode == USAGE_STATUS[name], done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"{prog(name)}: error: "), done.stderr
    for text in wanted:
        assert text in done.stderr
    assert len(lines) <= 3, done.stderr  # the error (a backend error has two lines), one usage
    assert lines[-1].startswith("usage: ") and f"{prog(name)} --help" in lines[-1]
    assert "Options:" not in done.stderr and "options:" not in done.stderr


@pytest.mark.parametrize("name", CONSOLE + PLUGINS)
def test_a_wrong_option_is_the_error_and_one_usage_line(name: str,
                                                        tmp_path: pathlib.Path) -> None:
    extra = ["localhost"] if name in ("pybrid-run", "pybrid-ping", "pybrid-extract",
                                      "pybrid-reset") else []
    done = run(tmp_path, name, "--no-such-option", *extra)
    assert_short_error(done, name, "no-such-option")


def test_a_missing_argument_is_the_error_and_one_usage_line(tmp_path: pathlib.Path) -> None:
    done = run(tmp_path, "pybrid-ping", "--count")
    assert_short_error(done, "pybrid-ping", "--count: expected one argument")
    # the host is optional (discovered when left out): the usage line says so
    assert done.stderr.splitlines()[-1].startswith("usage: pybrid-ping [options] [host]  ")


def test_a_bad_backend_file_names_file_line_and_problem(tmp_path: pathlib.Path) -> None:
    spec = tmp_path / "backends.txt"
    spec.write_text("carrier 10.0.0.1 0\nwire 0/9 1/0\n")
    done = run(tmp_path, "pybrid-proxy", "-b", str(spec))
    assert_short_error(done, "pybrid-proxy", f"{spec}:2: wire 0/9 1/0: pin 9 out of range 0..7")


def test_help_is_still_the_whole_help(tmp_path: pathlib.Path) -> None:
    done = run(tmp_path, "pybrid-proxy", "--help")
    assert done.returncode == 0
    assert "--shm-tap=" in done.stdout and "--monitor-ttl=" in done.stdout
    assert "multicast GROUP:PORT (repeatable)." in done.stdout  # no stray docstring indentation
    done = run(tmp_path, "pybrid-ping", "--help")
    assert done.returncode == 0 and "--version" in done.stdout and "--count" in done.stdout

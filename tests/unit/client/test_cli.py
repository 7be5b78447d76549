"""pybrid-run's command line and exit-code mapping (the command itself runs as a subprocess in
tests/integration/test_client_cli_run.py)."""

import io

import pytest
from twisted.internet import defer, task

from pybrid.client import cli
from pybrid.client.errors import (
    ConnectError,
    DeviceBusyError,
    RequestFailed,
    RequestTimeout,
    RunError,
    RunTimeout,
)
from pybrid.client.progress import LineProgress, NoProgress, make_progress


def test_defaults():
    args = cli.build_parser().parse_args(["10.0.0.5"])
    assert (args.port, args.op_time, args.channels, args.sample_rate) == (5732, 0.01, 8, 10_000)
    assert (args.busy_retry, args.busy_timeout, args.data_lane) == (0.2, 60.0, "auto")


def test_no_host_means_discovery():
    assert cli.build_parser().parse_args([]).host is None


@pytest.mark.parametrize("argv", [["h", "--op-time", "0"], ["h", "-n", "x"],
                                  ["h", "--data-lane", "smoke"], ["h", "--nope"]])
def test_bad_command_lines_exit_64(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv)
    assert e.value.code == cli.EXIT_USAGE
    assert "pybrid-run: error:" in capsys.readouterr().err


@pytest.mark.parametrize(("window", "message"), [
    ("1", "'1' is not START:END"),
    ("2:1", "end 1 must be after its start 2"),
    ("-1:", "start -1 must be 0 or more seconds"),
    ("x:y", "numbers of seconds"),
])
def test_bad_plot_windows_exit_64(window, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["h", "--plot", "p.png", f"--plot-window={window}"])
    assert e.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("pybrid-run: error: argument --plot-window: ") and message in err[0]
    assert len(err) == 2 and err[1].startswith("usage: pybrid-run [options] [host]")


def test_plot_window():
    args = cli.parse_args(["h", "--plot", "p.png", "--plot-window", "2:2.5"])
    assert args.plot_window == (2.0, 2.5)
    assert cli.parse_args(["h", "--plot", "p.png", "--plot-window=3:"]).plot_window == (3.0, None)
    assert cli.parse_args(["h"]).plot_window is None


def test_plot_window_goes_with_plot(capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["h", "--plot-window", "0:1"])
    assert e.value.code == cli.EXIT_USAGE
    assert "--plot-window goes with --plot FILE.png" in capsys.readouterr().err


@pytest.mark.parametrize("exc,code", [
    (ConnectError("h:1", "connection refused"), 2),
    (DeviceBusyError("start_run_command", 60.0, 300), 3),
    (RunError("r", "AA", "overload"), 4),
    (RunTimeout("r", "DONE", ["AA"], 10.0), 5),
    (RequestTimeout("extract_command", "id", 5.0), 5),
    (defer.TimeoutError(), 5),
    (RequestFailed("config_command", "bad"), 1),
])
def test_exit_codes(exc, code):
    assert cli.exit_code_for(exc) == code


def test_line_progress_is_throttled_by_the_clock():
    clock = task.Clock()
    out = io.StringIO()
    bar = LineProgress(1000, out, clock, interval=0.1)
    bar.update(100)
    bar.update(100)  # same instant: not redrawn
    assert out.getvalue() == "\rsamples 100/1000  10%"
    clock.advance(0.1)
    bar.update(800)
    bar.close()
    assert out.getvalue().endswith("\rsamples 1000/1000 100%\rsamples 1000/1000 100%\n")


def test_progress_only_on_a_terminal_unless_forced():
    clock = task.Clock()
    assert isinstance(make_progress(10, io.StringIO(), clock), NoProgress)
    assert not isinstance(make_progress(10, io.StringIO(), clock, enabled=True), NoProgress)

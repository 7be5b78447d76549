"""The console tool's argument checks, status lines and recording, on a Clock."""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pytest
from support import monitor_sim as sim
from twisted.internet import task

from pybrid.monitor import cli
from pybrid.monitor.record import Recorder
from pybrid.wire.monitor_header import encode_datagram

PATH = "/00-00-00-00-00-01"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "5007"], "required: --group"),
        (["--group", "10.0.0.1", "--port", "5007"], "not a multicast address"),
        (["--group", "239.1.1.1", "--port", "0"], "outside 1..65535"),
        (["--group", "239.1.1.1", "--port", "5007", "--interval", "0"], "greater than 0"),
        (["--group", "239.1.1.1", "--port", "5007", "--duration", "x"], "not a number"),
        (["--group", "239.1.1.1", "--port", "5007", "--interface", "eth0"], "IPv4"),
        (["--group", "239.1.1.1", "--port", "5007", "--record", "/nonexistent/x.npz"],
         "does not exist"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pybrid-monitor: error: ")
    assert message in err.splitlines()[0]
    assert err.splitlines()[1].startswith("usage: pybrid-monitor [options]  ")


def test_defaults() -> None:
    args = cli.parse_args(["--group", "239.1.1.1", "--port", "5007"])
    assert (args.interface, args.interval, args.duration, args.record) == (
        "127.0.0.1", 1.0, None, None
    )
    assert cli.parse_args(["--group", "239.1.1.1", "--port", "1", "--interface", "any"]).interface \
        == ""


def feed_run(monitor: cli.ConsoleMonitor, carrier: int, path: str, run: str, chunks: int,
             first_sequence: int = 0) -> int:
    sequence = first_sequence
    for envelope in sim.simulated_run(run, path, carrier, chunks):
        monitor.listener.datagram(encode_datagram(envelope, carrier, sequence, 0), ("tap", 1))
        sequence += 1
    return sequence


def test_status_lines_show_rates_gaps_and_malformed(tmp_path: pathlib.Path) -> None:
    clock = task.Clock()
    out, err = io.StringIO(), io.StringIO()
    monitor = cli.ConsoleMonitor(clock, "239.255.0.1", 5007, "127.0.0.1", interval=2.0,
                                 out=out, err=err)
    seq = feed_run(monitor, 0, PATH, "run-a", 10)
    feed_run(monitor, 1, "/00-00-00-00-00-02", "run-a", 4, first_sequence=seq + 3)
    monitor.listener.datagram(b"junk", ("tap", 1))
    assert out.getvalue().count(" -> ") == 10  # state changes are printed as they come
    out.seek(0)
    out.truncate()
    clock.advance(2.0)
    monitor.report()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[    2.0s] total: 27 datagrams (13.5/s), 14 chunks, tap gaps 3, ")
    assert lines[0].endswith("malformed 1")
    assert "lane 0 /00-00-00-00-00-01: 5.0 chunks/s, 500.0 samples/s, chunks 10, gaps 0, " \
           "run run-a, state DONE" in lines[1]
    assert "lane 1 /00-00-00-00-00-02: 2.0 chunks/s" in lines[2]
    clock.advance(2.0)
    monitor.report()
    assert "lane 0 /00-00-00-00-00-01: 0.0 chunks/s, 0.0 samples/s, chunks 10" in \
        out.getvalue().splitlines()[-2]
    assert monitor.finish() == 0
    assert out.getvalue().splitlines()[-1] == (
        "summary: 27 datagrams, 14 chunks, 1400 samples (+ 2 final values), tap gaps 3, "
        "chunk gaps 0, "
        "malformed 1 (short 1)"
    )
    assert err.getvalue() == ""


def test_state_changes_are_printed() -> None:
    clock = task.Clock()
    out = io.StringIO()
    monitor = cli.ConsoleMonitor(clock, "239.255.0.1", 5007, None, out=out)
    feed_run(monitor, 2, PATH, "0123456789", 1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[    0.0s] lane 2: run 01234567 NEW -> TAKE_OFF"
    # once data named the carrier's path, path-less state changes are shown under it
    assert lines[-1] == f"[    0.0s] lane 2 {PATH}: run 01234567 OP_END -> DONE"


def test_record_is_written_on_finish(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.npz"
    out = io.StringIO()
    monitor = cli.ConsoleMonitor(task.Clock(), "239.255.0.1", 5007, "127.0.0.1",
                                 record=str(target), sample_rate=10_000, out=out)
    feed_run(monitor, 0, PATH, "run-a", 3)
    assert monitor.finish() == 0
    lines = out.getvalue().splitlines()
    # the summary and the record count the same samples; final values are counted apart
    assert "300 samples (+ 1 final values)" in lines[-2]
    assert lines[-1] == f"recorded 300 samples from 1 run to {target}"
    mac = PATH.strip("/")
    with np.load(target) as npz:
        np.testing.assert_array_equal(npz[f"{mac}/samples"], sim.expected_samples(0, 3))
        assert npz[f"{mac}/samples"].dtype == np.float32  # float32 on the wire
        np.testing.assert_array_equal(npz[f"{mac}/final"], sim.chunk_values(0, 3, 1, 2)[0])
        assert npz[f"{mac}/missing_chunks"].tolist() == []
        assert npz[f"{mac}/probes"].tolist() == [0, 1]
        meta = json.loads(str(npz["meta"]))
    assert (meta["run_id"], meta["sample_rate"], meta["carriers"]) == ("run-a", 10_000, [mac])
    assert meta["carrier_summaries"][mac]["chunks"] == 3


def test_record_write_failure_exits_1(tmp_path: pathlib.Path) -> None:
    err = io.StringIO()
    target = tmp_path / "gone" / "out.npz"
    monitor = cli.ConsoleMonitor(task.Clock(), "239.255.0.1", 5007, None, record=str(target),
                                 out=io.StringIO(), err=err)
    feed_run(monitor, 0, PATH, "run-a", 1)
    assert monitor.finish() == 1
    assert err.getvalue().startswith(f"pybrid-monitor: error: cannot write {target}")


def test_recorder_places_chunks_by_number_and_lists_missing_and_duplicates(
    tmp_path: pathlib.Path,
) -> None:
    recorder = Recorder(str(tmp_path / "r.npz"), task.Clock())
    clock_feed = cli.ConsoleMonitor(task.Clock(), "239.255.0.1", 5007, None, out=io.StringIO())
    clock_feed.listener.on_chunk = recorder.add
    for chunk in (2, 0, 0, 4):
        envelope = sim.data_envelope("r", PATH, chunk, sim.chunk_values(0, chunk))
        clock_feed.listener.datagram(encode_datagram(envelope, 0, chunk, 0), ("tap", 1))
    [(path, summaries)] = recorder.close()
    mac = PATH.strip("/")
    s = summaries[mac]
    assert (s.missing_chunks, s.duplicate_chunks, s.rows) == ((1, 3), 1, 500)
    with np.load(path) as npz:
        got = npz[f"{mac}/samples"]
    assert got.shape == (500, 2)
    for n in (0, 2, 4):
        np.testing.assert_array_equal(got[100 * n : 100 * n + 100], sim.chunk_values(0, n))
    assert np.isnan(got[100:200]).all() and np.isnan(got[300:400]).all()

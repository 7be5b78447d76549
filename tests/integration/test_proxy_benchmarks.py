"""The data-path benchmarks still run end to end (tiny settings; no speed is asserted)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(args: list[str], timeout: float) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_hotpath_benchmark_prints_microseconds_per_datagram() -> None:
    out = run(["benchmarks/proxy_hotpath.py", "--count", "2000", "--repeat", "1"], 60)
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["us_per_datagram"] > 0 and figures["datagram_bytes"] == 3404


def test_throughput_benchmark_runs_devices_proxy_and_client_as_processes(tmp_path) -> None:
    report = tmp_path / "throughput.json"
    out = run(["benchmarks/throughput.py", "--rates", "1000", "--seconds", "0.5",
               "--attempts", "2", "--devices", "2", "--scenario-devices", "2",
               "--scenario-rate", "100", "--scenario-seconds", "1", "--json", str(report)], 180)
    assert "highest loss-free rate: 1000 datagrams/s" in out, out
    assert "200 of 200 chunks counted, 0 missing" in out and "0 loss" in out, out
    assert "RSS" in out
    figures = json.loads(report.read_text())
    assert figures["search"]["best"] == 1000
    assert figures["scenario"]["step"]["ok"]
    assert figures["scenario"]["rss_after_kib"]["VmRSS"] > 0

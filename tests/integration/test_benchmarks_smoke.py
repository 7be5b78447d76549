"""Smoke test: ``benchmarks/compare.py`` still runs end to end and prints its table.

Runs the smallest mode (no proxy, two short rate steps, no reference client, few pings) as a
subprocess.  It checks that the benchmark works — peers start, the counting client counts, the
table is printed and no child outlives it — never how fast anything is.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _processes_with(marker: bytes) -> list[str]:
    """Pids of processes whose environment contains ``marker`` (children inherit it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read():
                    found.append(entry)
        except OSError:
            continue
    return found


def test_compare_quick_direct_prints_its_table() -> None:
    argv = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--only",
            "direct", "--rates", "1000,2000", "--cpu-rate", "1000", "--connects", "0",
            "--pings", "5", "--standalone", "2"]
    marker = f"smoke-{uuid.uuid4()}"
    env = dict(os.environ, PYBRID_BENCHMARK_SMOKE=marker)
    proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "pybrid-proxy vs reference proxy" in out, out
    # the verdict may say "device behind" on a busy host; the counting must be exact anyway
    assert re.search(r"^P1 loss-free rate \(datagrams/s\)\s+—\s+—\s+≥?(1,000|2,000|—)\s", out,
                     re.M), out
    assert re.search(r"^\s+1000 datagrams/s:\s+500 counted", out, re.M), out
    assert re.search(r"^P5 ping in session \(ms, median\)\s+—\s+—\s+[\d.]+", out, re.M), out
    assert "direct: data by udp" in out, out
    assert not _processes_with(f"PYBRID_BENCHMARK_SMOKE={marker}".encode()), "children left"


def test_shm_tap_benchmark_runs_every_path_and_loses_nothing() -> None:
    """``benchmarks/shm_tap.py`` (TCP client, multicast tap, shm tap with both writers) runs
    end to end with its reader process; at this small count the shm reader gets every frame."""
    import json

    from support.shm import require_shm

    require_shm()
    argv = [sys.executable, str(ROOT / "benchmarks" / "shm_tap.py"), "--count", "3000"]
    proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    cases = {r["case"]: r for r in lines if "case" in r}
    assert set(cases) == {"router", "tcp", "multicast", "shm-thread-batch1", "shm-thread",
                          "shm", "all"}
    for name in ("shm-thread-batch1", "shm-thread", "shm", "all"):
        assert cases[name]["shm_lost"] == 0 and cases[name]["shm_chunks_read"] == 3000
    assert cases["tcp"]["tcp_bytes"] > 3000 * 3000
    assert set(lines[-1]["path_cpu_us_per_frame"]) == set(cases) - {"router"}

"""A short soak (issue 8, part 3): ``benchmarks/soak.py`` for ~25 s in CI.

4 clients, 3 backends (``twistd -n pybrid-device`` children), the proxy a ``twistd`` child:
back-to-back runs through the queue, every sample checked against the simulator's signal,
the proxy's RSS sampled.  The full 10-minute soak is ``benchmarks/soak.py --minutes 10``
(figures in docs/reliability.md).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_soak_loses_nothing_and_keeps_the_proxy_small():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--seconds", "25", "--json",
         "--warmup", "5", "--sample-every", "2", "--max-growth", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    summary = json.loads(lines[-1])
    print(proc.stdout)
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["lost_samples"] == 0 and summary["mismatched_runs"] == 0
    assert summary["runs"] >= 40 and all(n > 0 for n in summary["runs_per_client"])
    assert summary["samples_verified"] >= 40 * 3 * 1000 * 2
    assert summary["proxy_rss_kib"]["growth"] < 5 * 1024
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

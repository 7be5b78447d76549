"""Smoke tests: ``benchmarks/compare.py`` and ``benchmarks/recording.py`` still run end to end.

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


def test_client_compare_quick_prints_both_clients() -> None:
    """``benchmarks/client_compare.py`` at one short rate: both clients get every value (the
    reference only when ``.ref`` is installed; under CI it must be), no child outlives it."""
    ref = (ROOT / ".ref" / "bin" / "python").exists()
    assert ref or not os.environ.get("CI"), "the reference client is not installed in .ref/"
    argv = [sys.executable, str(ROOT / "benchmarks" / "client_compare.py"), "--seconds", "0.05",
            "--rates", "100000"]
    marker = f"smoke-{uuid.uuid4()}"
    env = dict(os.environ, PYBRID_BENCHMARK_SMOKE=marker)
    out = subprocess.run(argv, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, timeout=120).stdout
    assert "clients through our proxy (client buffer default): 2 carriers x 8 ch" in out, out
    ours = r"^\s+100,000 Hz  ours\s+80,000 / 80,000\s+[\d.]+\s+[\d.]+\s+[\d,]+\s+\d+ MB"
    assert re.search(ours, out, re.M), out
    if ref:
        assert re.search(r"^\s+100,000 Hz  reference\s+80,000 / 80,000 ", out, re.M), out
    assert not _processes_with(f"PYBRID_BENCHMARK_SMOKE={marker}".encode()), "children left"

def test_recording_benchmark_runs_and_reports_rss_and_shapes() -> None:
    argv = [sys.executable, str(ROOT / "benchmarks" / "recording.py"), "--seconds", "0.5",
            "--rate", "20000", "--channels", "4", "--write-seconds", "1"]
    proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^H5Recorder write rate: .* M samples/s", out, re.M), out
    assert re.search(r"^pybrid-run -o x\.h5: .*exit 0, .*peak RSS \d+ MB", out, re.M), out
    for mac in ("00-00-00-00-00-01", "00-00-00-00-00-02"):
        assert f"{mac}: samples (10000, 4), 0 missing chunks" in out, out


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


def test_nats_export_through_the_proxy_compares_the_modes_and_leaves_no_child() -> None:
    """``benchmarks/nats_export.py --only-proxy`` at a tiny rate: the real proxy's search with
    the export off and on (a JetStream server, the bridge, two devices of two carriers), its
    summary with both rates and the chunks the export stored; nothing outlives it."""
    import json

    from support.nats_servers import require_nats
    from support.shm import require_shm

    require_shm()
    require_nats()
    argv = [sys.executable, str(ROOT / "benchmarks" / "nats_export.py"), "--only-proxy",
            "--proxy-rounds", "1", "--proxy-modes", "off,on", "--proxy-rates", "1000",
            "--proxy-seconds", "1", "--attempts", "1"]
    marker = f"smoke-{uuid.uuid4()}"
    env = dict(os.environ, PYBRID_BENCHMARK_SMOKE=marker)
    proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["through_proxy"]
    off, on = summary["rounds"]["off"][0], summary["rounds"]["on"][0]
    assert off["loss_free_rate"] > 900 and on["loss_free_rate"] > 900  # 1000/s asked
    assert on["export_at_best"]["stored"] > 0 and on["export_at_best"]["dropped"] == 0
    assert off["export_at_best"] is None
    assert set(summary["ratio_to_off"]) == {"on"}
    assert _processes_with(marker.encode()) == []


def test_live_view_benchmark_via_a_monitor_reaches_the_viewers_and_leaves_no_child() -> None:
    """``benchmarks/live_view.py --via-monitor`` at a small rate: the proxy with an shm tap,
    ``pybrid-monitor --shm … --web`` serving the 10 viewers (on Twisted's WebSocket client,
    ``--twisted-viewers``), frames received, the client loss-free; nothing outlives it."""
    import json

    from support.shm import require_shm

    require_shm()
    argv = [sys.executable, str(ROOT / "benchmarks" / "live_view.py"), "--rounds", "1",
            "--seconds", "1.5", "--rate", "2000", "--via-monitor", "--twisted-viewers"]
    marker = f"smoke-{uuid.uuid4()}"
    env = dict(os.environ, PYBRID_BENCHMARK_SMOKE=marker)
    proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    summary = json.loads(next(line for line in reversed(out.splitlines())
                              if line.startswith("{")))
    assert summary["served_by"] == "pybrid-monitor --shm --web"
    assert summary["viewer_client"] == "twisted"
    assert summary["all_loss_free"]
    watched = re.search(r"viewers on : ok=True .* µs/datagram, (\d+) frames", out)
    assert watched and int(watched.group(1)) > 0, out
    assert _processes_with(marker.encode()) == []


def test_live_view_benchmark_with_the_live_process_reaches_the_viewers_and_leaves_no_child(
) -> None:
    """``benchmarks/live_view.py --live-process`` at a small rate: the viewers handed to the
    proxy's child get frames, the child's CPU is reported, the client is loss-free, and
    neither the proxy nor its child outlives the benchmark; with 2 CPUs or more, with the
    proxy pinned to a core of its own (``--pin``)."""
    import json

    pin = len(os.sched_getaffinity(0)) >= 2
    argv = [sys.executable, str(ROOT / "benchmarks" / "live_view.py"), "--rounds", "1",
            "--seconds", "1.5", "--rate", "2000", "--live-process"] + (["--pin"] if pin else [])
    marker = f"smoke-{uuid.uuid4()}"
    env = dict(os.environ, PYBRID_BENCHMARK_SMOKE=marker)
    proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    summary = json.loads(next(line for line in reversed(out.splitlines())
                              if line.startswith("{")))
    assert summary["served_by"] == "the proxy's --live-process child"
    assert summary["pinned"] is pin
    assert summary["all_loss_free"]
    assert summary["child_us_per_datagram"]["on"][0] > 0
    assert summary["viewer_client"] == "sockets"  # plain sockets, each frame's header read
    assert summary["viewers_us_per_datagram"][0] > 0
    watched = re.search(r"viewers on : ok=True .* µs/datagram \(child [\d.]+\), viewers "
                        r"[\d.]+ µs/datagram, (\d+) frames", out)
    assert watched and int(watched.group(1)) > 0, out
    assert _processes_with(marker.encode()) == []

"""Recordings: how fast the HDF5 recorder writes, and the memory of ``pybrid-run -o FILE.h5``.

1. **Write rate** (in this process, no network): a :class:`~pybrid.recording.hdf5.H5Recorder`
   is fed placed float32 chunks of 100 samples × ``--channels`` for 2 carriers, as a run at
   ``--rate`` delivers them; prints samples/s and MB/s written and the ratio to real time.
2. **A real recording**: ``twistd pybrid-device --carriers 2`` and ``pybrid-run -o x.h5`` as
   children, ``--seconds`` at ``--rate`` × ``--channels``; prints the peak RSS of pybrid-run
   (``getrusage(RUSAGE_CHILDREN)``), its wall time and the shapes in the file.

    .venv/bin/python benchmarks/recording.py [--seconds 20] [--rate 100000] [--channels 8]
                                             [--write-seconds 20] [--skip-run]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from twisted.internet import task

from pybrid.recording.hdf5 import H5Recorder
from pybrid.recording.meta import CarrierSummary, RunMeta

BIN = pathlib.Path(sys.executable).parent
CARRIERS = ("00-00-00-00-00-01", "00-00-00-00-00-02")


def write_rate(seconds: float, rate: int, channels: int, directory: str) -> dict[str, float]:
    path = os.path.join(directory, "write.h5")
    clock = task.Clock()
    total = int(seconds * rate)
    rec = H5Recorder(path, clock=clock)
    rec.begin(RunMeta("bench", 0.0, rate, channels, CARRIERS, expected_samples=total))
    chunk = (np.random.default_rng(0).random((100, channels)) - 0.5).astype(np.float32)
    f32 = np.dtype(np.float32)
    t0 = time.perf_counter()
    for j in range(total // 100):
        for mac in CARRIERS:
            rec.write(mac, 100 * j, chunk, f32)
        if j % (rate // 100 // 20 or 1) == 0:
            clock.advance(0.05)  # the run's time: a flush every 0.5 s of samples
    rec.finish({mac: CarrierSummary(tuple(range(channels)), total // 100, (), 0, total, 100)
                for mac in CARRIERS})
    wall = time.perf_counter() - t0
    size = os.path.getsize(path)
    samples = total * len(CARRIERS)
    return {"wall": wall, "samples_per_s": samples / wall, "mb_per_s": size / wall / 1e6,
            "realtime": seconds / wall, "flushes": rec.flushes, "size_mb": size / 1e6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recording_run(seconds: float, rate: int, channels: int, directory: str) -> dict[str, object]:
    import h5py

    port = free_port()
    device = subprocess.Popen(
        [str(BIN / "twistd"), "-n", f"--pidfile={directory}/device.pid", "pybrid-device",
         "--port", str(port), "--carriers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        out = os.path.join(directory, "x.h5")
        t0 = time.perf_counter()
        run = subprocess.run(
            [str(BIN / "pybrid-run"), f"127.0.0.1:{port}", "-t", str(seconds), "-r", str(rate),
             "-n", str(channels), "-o", out, "-q"],
            capture_output=True, text=True, timeout=seconds + 120)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        device.terminate()
        device.wait(timeout=30)
    shapes = {}
    if run.returncode == 0:
        with h5py.File(out, "r") as f:
            shapes = {mac: (f[mac]["samples"].shape, len(f[mac]["missing_chunks"]))
                      for mac in f if isinstance(f[mac], h5py.Group)}
    return {"code": run.returncode, "stderr": run.stderr.strip(), "wall": wall,
            "peak_rss_mb": peak_mb, "shapes": shapes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--write-seconds", type=float, default=20.0)
    ap.add_argument("--skip-run", action="store_true", help="only the write-rate part")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        w = write_rate(args.write_seconds, args.rate, args.channels, d)
        print(f"H5Recorder write rate: 2 carriers × {args.channels} float32 ch, "
              f"{args.write_seconds:g} s at {args.rate} Hz in {w['wall']:.2f} s = "
              f"{w['samples_per_s'] / 1e6:.2f} M samples/s (rows of {args.channels} ch), "
              f"{w['mb_per_s']:.0f} MB/s, "
              f"{w['realtime']:.1f} x real time ({w['flushes']} flushes, {w['size_mb']:.0f} MB)")
        if args.skip_run:
            return
        r = recording_run(args.seconds, args.rate, args.channels, d)
        print(f"pybrid-run -o x.h5: {args.seconds:g} s, 2 carriers × {args.channels} ch × "
              f"{args.rate} Hz: exit {r['code']}, wall {r['wall']:.1f} s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        for mac, (shape, missing) in r["shapes"].items():  # type: ignore[attr-defined]
            print(f"  {mac}: samples {shape}, {missing} missing chunks")
        if r["code"]:
            print(f"  stderr: {r['stderr']}")


if __name__ == "__main__":
    main()

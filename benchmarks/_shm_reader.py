"""Reader process of benchmarks/shm_tap.py: creates the ZeroBuffer, reads ``count`` chunk
frames with :class:`pybrid.monitor.shm.ShmReader` (or the library's ``read_frame`` with
``--reference``) and prints one JSON line: frames, chunk frames, tap gaps, wall and CPU time."""

from __future__ import annotations

import argparse
import json
import time

from pybrid.monitor.shm import ShmChunk, ShmReader


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("count", type=int)
    ap.add_argument("--size", type=int, default=64 << 20)
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    reader = ShmReader(a.name, payload_size=a.size, reference=a.reference)
    print("ready", flush=True)
    chunks = 0
    t0 = c0 = 0.0
    deadline = time.monotonic() + a.timeout
    try:
        for event in reader.events(timeout=0.5):
            if event is None:
                if time.monotonic() > deadline:
                    break
                continue
            if isinstance(event, ShmChunk):
                if chunks == 0:
                    t0, c0 = time.perf_counter(), time.process_time()
                chunks += 1
                if chunks >= a.count:
                    break
    finally:
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        stats = reader.stats
        reader.close()
    print(json.dumps({"chunks": chunks, "frames": stats.frames, "gaps": stats.gaps,
                      "chunk_gaps": stats.chunk_gaps, "wall": wall, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()

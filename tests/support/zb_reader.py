"""A ZeroBuffer peer for the shared-memory tap tests: the real ``zerobuffer.Reader``.

Run as a child process (``python zb_reader.py NAME OUT [options]``).  It creates the buffer
with the ``zerobuffer-ipc`` library (not pybrid code), prints ``ready``, reads frames with
``Reader.read_frame`` and writes one JSON line per frame to OUT: the ZeroBuffer sequence, the
pybrid-shm header fields (decoded here with ``struct`` from the format in docs/monitors.md)
and a SHA-1 of the sample bytes (chunks) or the JSON body.  It exits 0 after ``--runs`` runs
ended (a CARRIER_END for every carrier a RUN_START named), 3 on ``WriterDeadException``
(printing ``writer-dead``), 4 after ``--timeout`` seconds.  ``--stop-after N`` stops reading
after N frames and just waits (a reader that hangs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import time

import numpy as np
import posix_ipc
import zerobuffer

HEADER = struct.Struct("<BBHIQIIHB5xdd")
DTYPES = {1: "<f4", 2: "<f8", 3: "<i2", 4: "<u2", 5: "<i1", 6: "<u1", 7: "<i4", 8: "<u4",
          9: "<i8", 10: "<u8"}
ITEMSIZE = {k: np.dtype(v).itemsize for k, v in DTYPES.items()}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("out")
    p.add_argument("--payload", type=int, default=16 << 20)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--stop-after", type=int, default=0)
    p.add_argument("--npz", help="save float64 samples (raw x gain + offset) per run/carrier")
    a = p.parse_args()
    reader = zerobuffer.Reader(a.name, zerobuffer.BufferConfig(4096, a.payload))
    print("ready", flush=True)
    deadline = time.monotonic() + a.timeout
    out = open(a.out, "w")
    frames = 0
    runs_done = 0
    open_runs: dict[int, set[str]] = {}
    paths: dict[tuple[int, int], str] = {}
    layouts: dict[tuple[int, int], dict] = {}
    saved: dict[str, list[np.ndarray]] = {}
    try:
        seen_writer = False
        while time.monotonic() < deadline:
            if not seen_writer:  # read_frame reports "no writer yet" as WriterDead: wait
                seen_writer = reader.is_writer_connected()
                if not seen_writer:
                    time.sleep(0.01)
                    continue
            if a.stop_after and frames >= a.stop_after:
                time.sleep(0.05)
                continue
            try:
                frame = reader.read_frame(timeout=0.5)
            except zerobuffer.WriterDeadException:
                print("writer-dead", flush=True)
                out.write(json.dumps({"event": "writer-dead"}) + "\n")
                return 3
            if frame is None:
                continue
            data = bytes(frame.data)
            seq_zb = frame.sequence
            reader.release_frame(frame)
            frames += 1
            kind, flags, carrier, run, seq, chunk, n, ch, dt, gain, offset = HEADER.unpack_from(
                data)
            line = {"zb": seq_zb, "kind": kind, "flags": flags, "carrier": carrier, "run": run,
                    "seq": seq, "chunk": chunk, "samples": n, "channels": ch, "dtype": dt,
                    "gain": gain, "offset": offset}
            if kind == 1:
                raw = data[48 : 48 + n * ch * ITEMSIZE[dt]]
                line["sha1"] = hashlib.sha1(raw).hexdigest()
                if a.npz:
                    values = np.frombuffer(raw, DTYPES[dt]).reshape(n, ch).astype(float)
                    lay = layouts.get((run, carrier), {})
                    if flags & 2:
                        values = values * np.array(lay["gains"]) + np.array(lay["offsets"])
                    else:
                        values = values * gain + offset
                    key = f"run{run}{paths.get((run, carrier), '')}" + ("_end" if flags & 1
                                                                           else "")
                    saved.setdefault(key, []).append(values)
            else:
                body = json.loads(data[48:].rstrip(b"\0"))
                line["body"] = body
                if kind == 2:
                    open_runs[run] = set(body["carriers"])
                elif kind == 3:
                    paths[(run, carrier)] = body["path"]
                    layouts[(run, carrier)] = body
                elif kind == 4 and run in open_runs:
                    open_runs[run].discard(body["path"])
            out.write(json.dumps(line) + "\n")
            out.flush()
            if kind == 4 and run in open_runs and not open_runs[run]:
                del open_runs[run]
                runs_done += 1
                if runs_done >= a.runs:
                    return 0
        return 4
    finally:
        out.close()
        reader.close()
        for sem in (f"/sem-w-{a.name}", f"/sem-r-{a.name}"):  # Reader.close leaves them
            try:
                posix_ipc.unlink_semaphore(sem)
            except posix_ipc.ExistentialError:
                pass
        if a.npz:
            np.savez(a.npz, **{k: np.concatenate(v) for k, v in saved.items()})


if __name__ == "__main__":
    sys.exit(main())

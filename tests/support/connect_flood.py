"""A connect flood on loopback: a child process of tests/integration/test_proxy_connect_flood.py
and benchmarks/floods.py (issue 21, point 14).

    python connect_flood.py PORT [--mode cycle|hold] [--batch 2000] [--max 200000] [--seconds 120]

``cycle``: open ``batch`` non-blocking connections at once, then close them all; repeat.
``hold``: open ``batch`` connections at a time and keep them silent, up to ``--max``.
Prints ``flooding`` after the first batch, ``full`` once ``hold`` holds ``--max``, and at the
end (SIGTERM, ``--seconds`` or ``--max`` cycled) one JSON line with what it did.
Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import signal
import socket
import time

STOP = False


def _stop(signum: int, frame: object) -> None:
    global STOP
    STOP = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", choices=("cycle", "hold"), default="cycle")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--max", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (args.max if args.mode == "hold" else args.batch) + 200
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    end = time.monotonic() + args.seconds
    opened = batches = failed = 0
    held: list[socket.socket] = []
    errors: dict[str, int] = {}
    while not STOP and time.monotonic() < end and opened < args.max:
        batch = []
        for _ in range(min(args.batch, args.max - opened)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            code = s.connect_ex(("127.0.0.1", args.port))
            if code not in (0, errno.EINPROGRESS):
                failed += 1
                name = errno.errorcode.get(code, str(code))
                errors[name] = errors.get(name, 0) + 1
                s.close()
                continue
            batch.append(s)
        opened += len(batch)
        batches += 1
        if batches == 1:
            print("flooding", flush=True)
        if args.mode == "cycle":
            time.sleep(0.005)  # most handshakes complete on loopback meanwhile
            for s in batch:
                s.close()
        else:
            held.extend(batch)
    if args.mode == "hold":
        print("full", flush=True)
        while not STOP and time.monotonic() < end:
            time.sleep(0.05)
    for s in held:
        s.close()
    print(json.dumps({"mode": args.mode, "opened": opened, "batches": batches,
                      "connect_errors": errors, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()

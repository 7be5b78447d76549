"""Fuzz soak: the proxy's client and backend lanes against 100 000+ hostile peers, in memory.

Runs the cases of ``tests/support/fuzz_cases.py`` — the same checks as
``tests/unit/proxy/*/test_*_fuzz.py``, only many more inputs: each input is one hostile peer
(a client in one of four situations, a backend during a run, or a backend's handshake) sending a
random stream of 12–16 pieces (valid Envelopes of any kind, empty frames, random bytes, damaged
frames, truncated/over-long varints, huge lengths, garbage and forged datagrams), followed by
a full run of a well-behaved client.  Prints the inputs tried, what they were made of, what
the proxy made of them, and every failure with its seed (reproduce with ``--seed S
--inputs 1`` and the same ``--only``).  Unhandled errors are caught with a twisted.logger
observer.  Exit code 1 on any failure.

    .venv/bin/python benchmarks/fuzz_soak.py [--inputs 100000] [--seconds S] [--seed N]
           [--only client|backend|handshake] [--engine random|atheris]

``--engine atheris`` (``pip install atheris``) lets libFuzzer's coverage-guided mutation
drive the client lane instead: its inputs are raw byte streams, one client each.
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import random
import sys
import time
import traceback
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.fuzz_backend_cases import backend_case, handshake_case  # noqa: E402
from support.fuzz_cases import CLIENT_MODES, Outcome, client_case  # noqa: E402
from support.fuzz_proxy import LogCapture  # noqa: E402

KINDS = ("client", "backend", "handshake")
WEIGHTS = (0.5, 0.35, 0.15)


def run_random(args: argparse.Namespace) -> int:
    master = random.Random(args.seed)
    total = Outcome()
    per_kind: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    deadline = started + args.seconds if args.seconds else None
    with LogCapture() as log:
        for n in range(args.inputs if not deadline else 10**12):
            if deadline and time.monotonic() > deadline:
                break
            seed = master.getrandbits(64) if args.inputs != 1 else args.seed
            rnd = random.Random(seed)
            kind = args.only or rnd.choices(KINDS, WEIGHTS)[0]
            mode = CLIENT_MODES[seed % len(CLIENT_MODES)]
            label = f"client/{mode}" if kind == "client" else kind
            per_kind[label] += 1
            try:
                if kind == "client":
                    total.add(client_case(rnd, mode))
                elif kind == "backend":
                    total.add(backend_case(rnd))
                else:
                    total.add(handshake_case(rnd))
            except Exception:
                failures.append(f"{label} seed {seed}:\n{traceback.format_exc(limit=6)}")
            if (n + 1) % 10_000 == 0:
                gc.collect()
                print(f"  {n + 1} inputs, {len(failures)} failures, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        gc.collect()
    elapsed = time.monotonic() - started
    tried = sum(per_kind.values())
    print(f"\nfuzz soak: {tried} inputs in {elapsed:.0f} s ({tried / elapsed:.0f}/s), "
          f"seed {args.seed}")
    print("inputs by peer: " + ", ".join(f"{k} {v}" for k, v in sorted(per_kind.items())))
    print(f"pieces sent: {sum(total.inputs.values())}")
    for what, count in total.inputs.most_common():
        print(f"  {count:>9}  {what}")
    print("outcomes:")
    for what, count in total.results.most_common():
        print(f"  {count:>9}  {what}")
    print(f"log events by level: {dict(log.levels)}; unhandled errors (log_failure/critical): "
          f"{len(log.failures)}")
    if log.failures:
        print(log.describe())
    print(f"failures: {len(failures)}")
    for text in failures[:10]:
        print(text)
    return 1 if failures or log.failures else 0


def run_atheris(args: argparse.Namespace) -> int:
    import atheris

    total = Outcome()
    count = [0]
    log = LogCapture()
    log.__enter__()
    started = time.monotonic()

    def report() -> None:
        elapsed = time.monotonic() - started
        print(f"\natheris: {count[0]} inputs in {elapsed:.0f} s; outcomes: "
              f"{dict(total.results.most_common())}; unhandled errors {len(log.failures)}",
              flush=True)

    def one(data: bytes) -> None:
        count[0] += 1
        mode = CLIENT_MODES[data[0] % 4] if data else "fresh"
        total.add(client_case(random.Random(count[0]), mode, raw=data[1:]))
        if log.failures:
            raise AssertionError(log.describe())
        if count[0] % 10_000 == 0 or count[0] == args.inputs:
            report()

    atheris.instrument_all()
    atheris.Setup([sys.argv[0], f"-runs={args.inputs}", f"-seed={args.seed or 1}",
                   "-max_len=4096"], one)
    atheris.Fuzz()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=0.0, help="run for this long instead")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--only", choices=KINDS)
    parser.add_argument("--engine", choices=("random", "atheris"), default="random")
    args = parser.parse_args()
    sys.exit(run_atheris(args) if args.engine == "atheris" else run_random(args))


if __name__ == "__main__":
    main()

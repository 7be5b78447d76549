"""Run the reference mock device (pybrid.mock.DummyDAC) until stdin closes or SIGTERM.

Runs under the reference interpreter (.ref/bin/python).  Prints ``READY <port>`` once listening.
"""

import argparse
import asyncio
import logging
import signal
import sys
import threading

from pybrid.mock import DummyDAC, DummyDACConfig, DummyDACMacMode


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--carriers", type=int, choices=(1, 2), default=2)
    ap.add_argument("--refuse-udp", action="store_true")
    ap.add_argument("--simulate-op-time", action="store_true")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = DummyDACConfig(
        mac_mode=DummyDACMacMode.VIRTUAL,
        lucidac_mode=args.carriers == 1,
        accept_udp_streaming=not args.refuse_udp,
        simulate_op_time=args.simulate_op_time,
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    if args.watch_stdin:  # the test harness holds a pipe: its EOF means the parent is gone
        threading.Thread(
            target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(done.set)),
            daemon=True,
        ).start()
    async with DummyDAC(args.host, args.port, config) as dac:
        print(f"READY {dac.port}", flush=True)
        await done.wait()


asyncio.run(main())

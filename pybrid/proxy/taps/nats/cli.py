"""``pybrid-nats-bridge`` (``python -m pybrid.proxy.taps.nats``): export a proxy's runs into NATS
JetStream; one JSON status line per second on stdout (what the proxy shows).

Let the proxy start it (``twistd pybrid-proxy --nats URL``: it reads the proxy's link,
``--link-fd``), or run it on the proxy's host beside ``--shm-tap NAME`` (``--shm NAME``: it
creates the ZeroBuffer the proxy writes).  Exit status 2: bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from typing import Any

from pybrid.malloc import keep_freed
from pybrid.proxy.taps.nats.bridge import Bridge, BridgeOptions
from pybrid.version import version_line
from pybrid.wire import nats_format as N

PROG = "pybrid-nats-bridge"


def size(value: str) -> int:
    """``1073741824``, ``512MiB``, ``4GiB``, ``100MB`` → bytes."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
             "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1, "": 1}
    text = value.strip().lower()
    number = text.rstrip("kmgtib")
    try:
        n = int(float(number) * units[text[len(number):]])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{value!r} is not a size (e.g. 512MiB, 4GiB)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return n


def duration(value: str) -> float:
    """``3600``, ``90s``, ``30m``, ``12h``, ``7d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    unit = text[-1:] if text[-1:] in units else "s"
    try:
        seconds = float(text.rstrip("smhd")) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration (e.g. 12h, 7d)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return seconds


def _name(what: str) -> Any:
    def check(value: str) -> str:
        try:
            return N.check_name(value, what)
        except N.NatsFormatError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return check


def add_nats_options(parser: argparse.ArgumentParser) -> None:
    """The connection options every NATS tool of this package takes."""
    parser.add_argument("--nats", required=True, metavar="URL", action="append",
                        help="NATS server URL, e.g. nats://nats.lab:4222 (repeat for a "
                        "cluster's seed servers)")
    parser.add_argument("--nats-token", default=os.environ.get("PYBRID_NATS_TOKEN"),
                        help="authentication token (default: $PYBRID_NATS_TOKEN)")
    parser.add_argument("--nats-user", help="user name")
    parser.add_argument("--nats-password", default=os.environ.get("PYBRID_NATS_PASSWORD"),
                        help="password of --nats-user (default: $PYBRID_NATS_PASSWORD)")
    parser.add_argument("--nats-creds", metavar="FILE", help="NATS credentials file (JWT+NKey)")
    parser.add_argument("--nats-nkey", metavar="FILE", help="NKey seed file")
    parser.add_argument("--nats-tls-ca", metavar="FILE",
                        help="CA certificates that verify the server")
    parser.add_argument("--nats-tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    parser.add_argument("--nats-tls-key", metavar="FILE", help="key of --nats-tls-cert")
    parser.add_argument("--nats-stream", default=N.DEFAULT_STREAM, help="JetStream stream name "
                        "(default: %(default)s)")
    parser.add_argument("--nats-prefix", default=N.DEFAULT_PREFIX, type=_name("prefix"),
                        help="subject prefix (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Export a pybrid proxy's runs — "
                                     "from its link (--nats starts this so) or its "
                                     "shared-memory tap — to NATS JetStream.")
    parser.add_argument("--version", action="version", version=version_line(PROG))
    intake = parser.add_mutually_exclusive_group(required=True)
    intake.add_argument("--shm", metavar="NAME",
                        help="the proxy's --shm-tap NAME (this process creates the buffer)")
    intake.add_argument("--link-fd", type=int, metavar="FD",
                        help="the proxy's link: a socket this process inherits (the proxy's "
                        "--nats starts the bridge so)")
    parser.add_argument("--shm-size", type=size, default=64 << 20, metavar="SIZE",
                        help="ring size (default: 64MiB)")
    parser.add_argument("--proxy-name", type=_name("proxy name"),
                        default=None, help="the proxy's name in subjects (default: host name)")
    add_nats_options(parser)
    parser.add_argument("--max-bytes", type=size, default=1 << 30, metavar="SIZE",
                        help="stream retention: bytes kept (default: 1GiB; oldest go first)")
    parser.add_argument("--max-age", type=duration, default=7 * 86400.0, metavar="AGE",
                        help="stream retention: age kept (default: 7d)")
    parser.add_argument("--replicas", type=int, choices=(1, 2, 3, 4, 5), default=1,
                        help="stream replicas (a cluster of at least as many servers)")
    parser.add_argument("--queue", type=int, default=10_000, metavar="N",
                        help="chunks waiting for NATS before new ones are dropped (counted)")
    parser.add_argument("--window", type=int, default=1024, metavar="N",
                        help="publishes awaiting their JetStream acknowledgement")
    parser.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                        help="seconds after which an unacknowledged chunk counts as failed")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="lower this process's CPU priority by N (the proxy starts it with "
                        "10: on a busy host acquisition wins, the export's queue absorbs)")
    parser.add_argument("--sched-idle", action="store_true",
                        help="run under SCHED_IDLE (Linux): only CPU time no other process "
                        "wants, so the bridge never delays the proxy; on a busy host the "
                        "export falls behind and drops (counted)")
    parser.add_argument("--status-interval", type=float, default=1.0, metavar="S",
                        help="seconds between status lines (default: %(default)s)")
    return parser


def options_from(args: argparse.Namespace) -> BridgeOptions:
    proxy = args.proxy_name or host_token()
    return BridgeOptions(
        servers=tuple(args.nats), shm=args.shm, link_fd=args.link_fd, proxy=proxy,
        shm_size=args.shm_size,
        prefix=args.nats_prefix, stream=args.nats_stream, max_bytes=args.max_bytes,
        max_age=args.max_age, replicas=args.replicas, queue=args.queue, window=args.window,
        ack_timeout=args.ack_timeout, status_interval=args.status_interval,
        token=args.nats_token, user=args.nats_user,
        password=args.nats_password, creds=args.nats_creds, nkey_seed=args.nats_nkey,
        tls_ca=args.nats_tls_ca, tls_cert=args.nats_tls_cert, tls_key=args.nats_tls_key)


def host_token() -> str:
    name = "".join(ch if ch.isalnum() or ch in "_-" else "-" for ch in socket.gethostname())
    return name or "proxy"


def sched_idle() -> bool:
    """This process under ``SCHED_IDLE``; False (said on stderr) where the OS has none."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return True
    except (AttributeError, OSError) as e:
        print(f"nats bridge: cannot use SCHED_IDLE ({e}); running at nice only",
              file=sys.stderr, flush=True)
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from(args)
    if args.nice > 0:
        os.nice(args.nice)
    if args.sched_idle:
        sched_idle()
    keep_freed(os.environ)  # the link's 10 ms blocks: reused, not faulted in afresh

    def emit(status: dict[str, Any]) -> None:
        try:
            print(json.dumps({"nats_bridge": status}, sort_keys=True), flush=True)
        except BrokenPipeError:
            bridge.stop()

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stop)
        await bridge.run()

    bridge = Bridge(options, emit)
    asyncio.run(go())
    if bridge.fatal:
        print(f"{PROG}: {bridge.fatal}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

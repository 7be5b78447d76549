"""``pybrid-ping``: round-trip times to a device or proxy, like ``ping``.

    pybrid-ping HOST [-c COUNT] [-i SECONDS] [-W SECONDS] [--kind generic|v1]
    pybrid-ping --detect [--detect-time SECONDS]

One line per answer, then a summary.  Exit 0 when every ping was answered, 5 when some were not
(each unanswered one is a line on stderr), otherwise the codes of ``pybrid-run``.  ``--detect``
lists the ``_lucijsonl._tcp`` services that answer mDNS (proxies first) and exits 0, or 2 when
none does.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from twisted.internet import task

from pybrid.client.commands.common import fail, main_for, parser, positive, session
from pybrid.client.commands.exits import EXIT_CONNECT, EXIT_OK, EXIT_TIMEOUT
from pybrid.client.computer import Computer
from pybrid.client.errors import PingTimeout
from pybrid.discovery.browse import BROWSE_TIMEOUT, DiscoveryError, browse
from pybrid.discovery.records import choice_text

PROG = "pybrid-ping"


def build_parser() -> Any:
    p = parser(PROG, "Measure round-trip times to a LUCIDAC/REDAC or a proxy.")
    p.add_argument("-c", "--count", type=positive(int), default=4,
                   help="how many pings (default 4)")
    p.add_argument("-i", "--interval", type=positive(float), default=1.0, metavar="SECONDS",
                   help="time between pings (default 1)")
    p.add_argument("-W", "--wait", type=positive(float), default=2.0, metavar="SECONDS",
                   help="how long to wait for each answer (default 2)")
    p.add_argument("--kind", choices=("generic", "v1"), default="generic",
                   help="generic ping (everyone answers; default) or v1 ping_command")
    p.add_argument("--detect", action="store_true",
                   help="list the devices and proxies found by mDNS (the [discovery] extra)")
    p.add_argument("--detect-time", type=positive(float), default=BROWSE_TIMEOUT,
                   metavar="SECONDS", help=f"how long to browse (default {BROWSE_TIMEOUT:g})")
    return p


async def ping_command(reactor: Any, argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.detect and args.host is not None:
        parser.error("--detect browses for targets and takes no HOST")
    if args.detect:
        return await _detect(reactor, args.detect_time, args.quiet)
    times: list[float] = []
    lost = [0]

    async def body(c: Computer, step: Any, say: Any) -> int:
        say(f"{PROG} {c.target}: {c.topology}, carrier(s) {', '.join(x.mac for x in c.carriers)}")
        try:
            for n in range(1, args.count + 1):
                if n > 1:
                    await step(task.deferLater(reactor, args.interval, lambda: None))
                try:
                    rtt = await step(c.ping(args.kind, timeout=args.wait))
                except PingTimeout as e:
                    lost[0] += 1
                    sys.stderr.write(f"{PROG}: seq={n}: {e}\n")
                    continue
                times.append(rtt)
                say(f"pong from {c.target}: seq={n} time={rtt * 1e3:.3f} ms")
        finally:
            _summary(c.target, len(times) + lost[0], times, say)
        return EXIT_OK if not lost[0] else EXIT_TIMEOUT

    return await session(reactor, PROG, args, body)


async def _detect(reactor: Any, seconds: float, quiet: bool) -> int:
    try:
        targets = await browse(reactor, seconds)
    except DiscoveryError as e:
        fail(PROG, EXIT_CONNECT, str(e))
    if not targets:
        fail(PROG, EXIT_CONNECT, f"no _lucijsonl._tcp service answered within {seconds:g} s")
    if not quiet:
        print(f"{len(targets)} found:\n{choice_text(targets)}", flush=True)
    return EXIT_OK


def _summary(target: str, sent: int, times: list[float], say: Any) -> None:
    lost = sent - len(times)
    say(f"--- {target}: {sent} sent, {len(times)} answered, {lost} lost ---")
    if times:
        ms = [t * 1e3 for t in times]
        say(f"round trip min/median/max = {min(ms):.3f}/{statistics.median(ms):.3f}/"
            f"{max(ms):.3f} ms")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``pybrid-ping``)."""
    main_for(PROG, ping_command, argv)


if __name__ == "__main__":
    main()

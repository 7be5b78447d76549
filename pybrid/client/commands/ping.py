"""``pybrid-ping``: round-trip times to a device or proxy, like ``ping``.

    pybrid-ping HOST [-c COUNT] [-i SECONDS] [-W SECONDS] [--kind generic|v1]

One line per answer, then a summary.  Exit 0 when every ping was answered, 5 when some were not
(each unanswered one is a line on stderr), otherwise the codes of ``pybrid-run``.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from twisted.internet import task

from pybrid.client.cli import EXIT_OK, EXIT_TIMEOUT
from pybrid.client.commands.common import main_for, parser, positive, session
from pybrid.client.computer import Computer
from pybrid.client.errors import PingTimeout

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
    return p


async def ping_command(reactor: Any, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
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

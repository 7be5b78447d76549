"""``pybrid-reset``: reset the circuit configuration of a device (or every carrier of a proxy).

    pybrid-reset HOST [--drop-calibration] [--overload-reset] [--circuit-reset] [--no-sync]
                      [--entity PATH]

Sends one ``reset_command`` (calibration kept unless ``--drop-calibration``).  Exit codes are
those of ``pybrid-run``.
"""

from __future__ import annotations

from typing import Any

from pybrid.client.commands.common import main_for, parser, session
from pybrid.client.commands.exits import EXIT_OK
from pybrid.client.computer import Computer

PROG = "pybrid-reset"


def build_parser() -> Any:
    p = parser(PROG, "Reset the circuit configuration of a LUCIDAC/REDAC or of a proxy's "
               "carriers.")
    p.add_argument("--drop-calibration", action="store_true",
                   help="also forget the calibration (kept by default)")
    p.add_argument("--overload-reset", action="store_true", help="also reset overload flags")
    p.add_argument("--circuit-reset", action="store_true", help="also reset the circuit")
    p.add_argument("--no-sync", action="store_true", help="do not apply the reset at once")
    p.add_argument("--entity", metavar="PATH", help="reset only this entity (e.g. /MAC/0)")
    return p


async def reset_command(reactor: Any, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    async def body(c: Computer, step: Any, say: Any) -> int:
        await step(c.reset(keep_calibration=not args.drop_calibration,
                           overload_reset=args.overload_reset, circuit_reset=args.circuit_reset,
                           sync=not args.no_sync, entity=args.entity))
        what = args.entity or ", ".join(x.mac for x in c.carriers)
        kept = "calibration dropped" if args.drop_calibration else "calibration kept"
        say(f"reset {c.target} ({what}; {kept})")
        return EXIT_OK

    return await session(reactor, PROG, args, body)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``pybrid-reset``)."""
    main_for(PROG, reset_command, argv)


if __name__ == "__main__":
    main()

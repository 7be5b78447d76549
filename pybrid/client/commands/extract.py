"""``pybrid-extract``: show what a device or proxy is made of, and save it as ``.apb``.

    pybrid-extract HOST [-o FILE.apb] [--configuration] [--calibration] [--entity PATH]

Prints the carriers (MAC and location), the entity tree (path, class, type/variant, version,
EUI), the wiring of a proxy and, with ``--configuration``, how many configuration items each
entity holds — the reference CLI's ``extract`` and ``display`` in one.  ``-o`` writes the extract
reply as an ``.apb`` file the reference reads.  Exit codes are those of ``pybrid-run``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pybrid.client.apb import save_apb
from pybrid.client.commands.common import fail, main_for, parser, session
from pybrid.client.commands.exits import EXIT_FAILED, EXIT_OK
from pybrid.client.computer import Computer
from pybrid.client.errors import ApbError
from pybrid.client.topology import find_carriers
from pybrid.proto import pb

PROG = "pybrid-extract"


def build_parser() -> Any:
    p = parser(PROG, "Show the entity tree, carriers and wiring of a LUCIDAC/REDAC or a proxy; "
               "optionally save it as .apb.")
    p.add_argument("-o", "--output", metavar="FILE.apb", help="save the extract reply here")
    p.add_argument("--configuration", action="store_true",
                   help="also ask for the circuit configuration")
    p.add_argument("--calibration", action="store_true", help="also ask for calibration data")
    p.add_argument("--entity", metavar="PATH", help="only this entity (e.g. /MAC/0)")
    return p


def _class(value: int) -> str:
    try:
        return str(pb.Entity.Class.Name(value))
    except ValueError:
        return f"class {value}"


def _entity_lines(entity: pb.Entity, parent: str, depth: int, out: list[str]) -> None:
    if entity.class_ == pb.Entity.CARRIER:
        parent = ""  # paths start at the carrier: /MAC/0/M0 (docs/protocol.md)
    path = parent + "/" + entity.id.strip("/") if entity.id.strip("/") else parent or "/"
    v = entity.version
    parts = [f"{'  ' * depth}{path}", _class(entity.class_),
             f"type {entity.type} variant {entity.variant}",
             f"version {v.major}.{v.minor}.{v.patch}"]
    if entity.eui:
        parts.append(f"eui {entity.eui}")
    if entity.WhichOneof("location") == "location_v0":
        loc = entity.location_v0
        parts.append(f"stack {loc.stack} carrier {loc.carrier}")
    out.append("  ".join(parts))
    for child in entity.children:
        _entity_lines(child, path if path != "/" else "", depth + 1, out)


def _pin(pin: pb.WiringPin) -> str:
    kind = pin.WhichOneof("kind")
    where = pin.named_pin if kind == "named_pin" else str(pin.indexed_pin) if kind else "?"
    return f"{pin.entity.path}:{where}"


def display_lines(module: pb.Module) -> list[str]:
    """The human-readable view of an extract reply: carriers, entity tree, wiring, config."""
    carriers = find_carriers(module)
    out = [f"carriers ({len(carriers)}):"]
    for c in carriers:
        where = f"stack {c.location[0]} carrier {c.location[1]}" if c.location else "no location"
        out.append(f"  {c.mac}  {where}")
    out.append("entities:")
    wires: list[str] = []
    config: Counter[str] = Counter()
    for item in module.items:
        kind = item.WhichOneof("kind")
        if kind == "entity_specification":
            _entity_lines(item.entity_specification.entity, "", 1, out)
        elif kind == "wiring_specification":
            w = item.wiring_specification
            wires.append(f"  {_pin(w.source)} -> {_pin(w.target)}")
        elif kind is not None:
            config[f"{item.entity.path or '/'} {kind}"] += 1
    out.append(f"wiring ({len(wires)}):")
    out.extend(wires)
    if config:
        out.append(f"configuration items ({sum(config.values())}):")
        out.extend(f"  {name}" + (f" x{n}" if n > 1 else "") for name, n in sorted(config.items()))
    return out


async def extract_command(reactor: Any, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.output is not None and not args.output.endswith(".apb"):
        fail(PROG, EXIT_FAILED, f"{args.output}: .apb files must end in .apb")

    async def body(c: Computer, step: Any, say: Any) -> int:
        module = c.specification
        if args.configuration or args.calibration or args.entity:
            module = await step(c.extract(args.entity, configuration=args.configuration,
                                          calibration=args.calibration))
        say(f"{c.target}: {c.topology}")
        for line in display_lines(module):
            say(line)
        if args.output is not None:
            try:
                save_apb(module, args.output)
            except ApbError as e:
                fail(PROG, EXIT_FAILED, str(e))
            say(f"saved {args.output}")
        return EXIT_OK

    return await session(reactor, PROG, args, body)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``pybrid-extract``)."""
    main_for(PROG, extract_command, argv)


if __name__ == "__main__":
    main()

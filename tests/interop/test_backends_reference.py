"""Our backend-spec parser agrees with the reference ``pybrid proxy`` parser on shared input.

The reference parser (``pybrid.cli.dac.backend.BackendStringParser``) runs in its own
interpreter; it is stricter about whitespace (no space before a trailing comment, no
whitespace-only lines), so the inputs here are written in the style both accept.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from pybrid.proxy.backendfile import parse_backend_args

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "proxy"

REF_SCRIPT = r"""
import json, sys
from pybrid.cli.dac.backend import BackendStringParser
out = []
for value in sys.argv[1:]:
    carriers, wires = BackendStringParser.parse(value)
    out.append({
        "carriers": [[c.host, c.port, c.stack, c.carrier] for c in carriers],
        "wires": [[w.source_stack, w.source_carrier, w.source_pin,
                   w.target_stack, w.target_carrier, w.target_pin] for w in wires],
    })
print(json.dumps(out))
"""

INLINE = [
    "10.0.0.7/0/0,10.0.0.8/0/1",
    "192.0.2.1,192.0.2.2:6000",
    "carrier 192.0.2.1 0,carrier lucidac-aa-bb.example:5800 1,wire 0/0 1/aux0,wire 1/gen1 0/7",
]


def ours(value: str) -> dict[str, list[list[object]]]:
    spec = parse_backend_args([value])
    return {
        "carriers": [
            [b.host, b.port, b.location.stack if b.location else None,
             b.location.carrier if b.location else None]
            for b in spec.backends
        ],
        "wires": [
            [w.source.location.stack, w.source.location.carrier, w.source.pin,
             w.target.location.stack, w.target.location.carrier, w.target.pin]
            for w in spec.wires
        ],
    }


@pytest.mark.interop
def test_reference_parser_reads_examples_and_inline_values_like_ours(
    ref_python: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    values = [str(p) for p in sorted(EXAMPLES.glob("*.txt"))] + INLINE
    # cwd elsewhere: our own ``pybrid`` package must not shadow the reference's
    result = subprocess.run(
        [str(ref_python), "-c", REF_SCRIPT, *values],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert len(theirs) == len(values)
    for value, reference in zip(values, theirs, strict=True):
        assert ours(value) == reference, value

"""Twisted-native client for LUCIDAC/REDAC analog computers (directly or through a proxy).

Every operation returns a Deferred; the reactor is passed in::

    from pybrid.client import connect

    async def main(reactor):
        computer = await connect("127.0.0.1", 5732, reactor=reactor)
        result = await computer.run(0.01, channels=4, sample_rate=100_000)
        print(result.samples.shape)
        await computer.close()

See ``docs/client.md`` for the whole API and ``pybrid-run --help`` for the command.
"""

from pybrid.client import errors
from pybrid.client.apb import apb_bytes, load_apb, parse_apb, save_apb
from pybrid.client.computer import Computer
from pybrid.client.connect import DEFAULT_PORT, connect
from pybrid.client.errors import *  # noqa: F403
from pybrid.client.results import CarrierRun, Chunk, RunResult, StateChange, expected_samples
from pybrid.client.topology import Carrier

__all__ = [
    *errors.__all__,
    "DEFAULT_PORT",
    "Carrier",
    "CarrierRun",
    "Chunk",
    "Computer",
    "RunResult",
    "StateChange",
    "apb_bytes",
    "connect",
    "expected_samples",
    "load_apb",
    "parse_apb",
    "save_apb",
]

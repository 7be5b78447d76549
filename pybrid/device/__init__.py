"""A simulated LUCIDAC/REDAC device speaking the device side of the protocol.

See ``docs/simulator.md``.  ``SimulatedDevice`` is the in-process API, ``twistd pybrid-device``
the command line (``pybrid.device.plugin``), and :func:`expected` recomputes every sample value.
"""

from pybrid.device.config import DeviceConfig, Faults
from pybrid.device.counters import DeviceCounters
from pybrid.device.device import SimulatedDevice
from pybrid.device.signals import ChunkSignal, expected, expected_decoded

__all__ = [
    "ChunkSignal",
    "DeviceConfig",
    "DeviceCounters",
    "Faults",
    "SimulatedDevice",
    "expected",
    "expected_decoded",
]

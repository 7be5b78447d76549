"""Configuration values of the simulated device: what it is, and which faults it injects.

Both classes are frozen attrs values validated on construction (``ValueError`` with a clear
message); ``pybrid.device.plugin`` builds them from command-line options, tests build them
directly.
"""

from __future__ import annotations

import re

import attrs

from pybrid.device.signals import SAMPLE_DTYPES

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$")


def _fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a fraction between 0 and 1, not {value!r}")


def _optional_count(instance: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative chunk count, not {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value!r}")


@attrs.frozen
class Faults:
    """Faults the device injects into every run (all off by default).

    * ``drop``: fraction of data chunks (``run_data_message``) withheld, on either lane,
      chosen by a RNG seeded with ``seed``; counted in ``DeviceCounters.chunks_dropped``.
    * ``reorder``: fraction of data chunks held back and sent after the following chunk.
    * ``stall_after_chunks`` / ``stall_seconds``: once every carrier has emitted that many
      chunks, nothing is sent for ``stall_seconds``; pacing then resumes (the run ends late).
    * ``disconnect_after_chunks``: once every carrier has emitted that many chunks the device
      closes the client's TCP connection (what was already written is still delivered, then
      FIN; the run dies with the connection).
    * ``error_after_chunks``: once every carrier has emitted that many chunks each carrier
      goes OP → ERROR with a reason; no end data, no DONE.
    """

    drop: float = attrs.field(default=0.0, validator=_fraction)
    reorder: float = attrs.field(default=0.0, validator=_fraction)
    stall_after_chunks: int | None = attrs.field(default=None, validator=_optional_count)
    stall_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    disconnect_after_chunks: int | None = attrs.field(default=None, validator=_optional_count)
    error_after_chunks: int | None = attrs.field(default=None, validator=_optional_count)
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.stall_after_chunks is not None and self.stall_seconds <= 0:
            raise ValueError("stall_after_chunks needs a positive stall_seconds")
        if self.stall_seconds > 0 and self.stall_after_chunks is None:
            raise ValueError("stall_seconds needs stall_after_chunks")


@attrs.frozen
class DeviceConfig:
    """What the simulated device is and how it behaves.

    * ``carriers``: 1 reports a CARRIER root entity (a LUCIDAC: the reference client connects
      directly); N > 1 reports a DEVICE root with N CARRIER children (the client treats the
      connection like a proxy and attributes state changes by their ``entity``).
    * ``first_mac``: MAC of carrier 0; carrier i has that MAC plus i.
    * ``refuse_udp``: answer ``udp_data_streaming_command`` with the 316 refusal.
    * ``dtype``: sample type on the wire (``f32`` default, ``f64``, ``i16``, ``u16``).
    * ``stamp_state_entity``: one state stream per carrier with ``entity`` = carrier path
      (default); False sends one unstamped stream like the reference mock.
    * ``samples_per_chunk``: samples per data message (100, lowered automatically when a chunk
      would not fit a datagram or frame).
    * ``tick``: shortest interval between emission timers; chunks due meanwhile are batched.
    * ``max_chunks_per_tick``: per carrier, so one timer call never monopolises the reactor.
    * ``udp_send_buffer``: SO_SNDBUF requested for each UDP data socket.
    * ``debug``: log every request and reply.
    """

    carriers: int = attrs.field(default=1)
    first_mac: str = attrs.field(default="00-00-00-00-00-01")
    refuse_udp: bool = False
    faults: Faults = attrs.field(factory=Faults)
    dtype: str = attrs.field(default="f32")
    stamp_state_entity: bool = True
    samples_per_chunk: int = attrs.field(default=100)
    tick: float = attrs.field(default=0.002)
    max_chunks_per_tick: int = attrs.field(default=1000)
    udp_send_buffer: int = 4 * 1024 * 1024
    debug: bool = False

    @carriers.validator
    def _carriers(self, attribute: attrs.Attribute, value: int) -> None:
        if not 1 <= value <= 64:
            raise ValueError(f"carriers must be between 1 and 64, not {value!r}")

    @first_mac.validator
    def _mac(self, attribute: attrs.Attribute, value: str) -> None:
        if not _MAC_RE.match(value):
            raise ValueError(f"first_mac must look like 00-00-00-00-00-01, not {value!r}")
        if int(value.replace("-", ""), 16) + self.carriers - 1 >= 1 << 48:
            raise ValueError("first_mac is too large for that many carriers")

    @dtype.validator
    def _dtype(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in SAMPLE_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(SAMPLE_DTYPES)}, not {value!r}")

    @samples_per_chunk.validator
    def _spc(self, attribute: attrs.Attribute, value: int) -> None:
        if not 1 <= value <= 100_000:
            raise ValueError(f"samples_per_chunk must be between 1 and 100000, not {value!r}")

    @tick.validator
    def _tick(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0 < value <= 1.0:
            raise ValueError(f"tick must be between 0 and 1 s, not {value!r}")

    @max_chunks_per_tick.validator
    def _max_chunks(self, attribute: attrs.Attribute, value: int) -> None:
        if value < 1:
            raise ValueError("max_chunks_per_tick must be at least 1")

    def macs(self) -> tuple[str, ...]:
        """The carriers' MAC addresses, upper-case hex with dashes."""
        base = int(self.first_mac.replace("-", ""), 16)
        out = []
        for i in range(self.carriers):
            h = f"{base + i:012X}"
            out.append("-".join(h[j : j + 2] for j in range(0, 12, 2)))
        return tuple(out)


__all__ = ["DeviceConfig", "Faults"]

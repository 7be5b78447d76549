"""Sizes and limits of the proxy's data path: byte-size parsing, defaults, overflow reports.

``--client-buffer`` and ``--udp-rcvbuf`` take sizes such as ``64MiB``, ``512KiB``, ``8M`` or a
plain number of bytes (:func:`parse_size`).  IEC suffixes (``KiB``, ``MiB``, ``GiB``) and the
bare letters ``K``, ``M``, ``G`` are powers of 1024; ``kB``, ``MB``, ``GB`` are powers of 1000.
"""

from __future__ import annotations

import re

import attrs

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

#: Default per-client queue (``--client-buffer``).
DEFAULT_CLIENT_BUFFER = 64 * MiB
#: Default receive buffer asked for each intake socket (``--udp-rcvbuf``).  The kernel
#: allocates nothing for it up front (an idle socket costs nothing); it is the backlog a stall
#: of the proxy may leave before datagrams are dropped.  64 MiB (128 MiB granted as root) held
#: 120 000 datagrams/s of 3.4 kB loss-free on the 2-core machine where 8 MiB lost at 100 000
#: (docs/throughput.md).
DEFAULT_UDP_RCVBUF = 64 * MiB
#: Bytes Twisted's TCP transport buffers before it pauses its producer (our sender), and the
#: most it hands to one ``send()``.  Twisted's defaults (64 KiB, 128 KiB) collapse throughput
#: past capacity (docs/protocol.md#twisted-udp); 1 MiB keeps the kernel's send buffer full.
TRANSPORT_BUFFER = 1 * MiB
#: A connection that is not the active session (pre-session, idle, queued, standalone ping)
#: gets replies only — pongs, busy, the cached extract, errors — and needs kilobytes, not
#: ``--client-buffer``: its sender may queue at most this much, its transport buffers (and
#: reads) at most ``WAITING_TRANSPORT_BUFFER``.  Promotion to active gives it the full sizes.
WAITING_CLIENT_BUFFER = 1 * MiB
WAITING_TRANSPORT_BUFFER = 64 * KiB
#: All connections that are not active together may hold at most this much in partial
#: frames (a frame's bytes before its end arrives); past it the connection that grew is
#: closed.  With the waiting sizes above this bounds the proxy's memory beyond the active
#: session's own buffer however many connections arrive (docs/reliability.md).
WAITING_BUDGET = 64 * MiB
#: Partial frames up to this size are not counted against ``WAITING_BUDGET``.
PARTIAL_FREE = 64 * KiB
#: Seconds a closed client connection may take to accept its last bytes before it is aborted.
CLOSE_GRACE = 5.0

_UNITS = {
    "": 1, "b": 1,
    "k": KiB, "kib": KiB, "kb": 1000,
    "m": MiB, "mib": MiB, "mb": 1000**2,
    "g": GiB, "gib": GiB, "gb": 1000**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, what: str = "size", minimum: int = 1) -> int:
    """``"64MiB"`` → 67108864; raises :class:`ValueError` naming ``what`` on bad input."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"{what} must be a size like 64MiB, 512KiB, 8M or a number of bytes, not {text!r}"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if value != int(value):
        raise ValueError(f"{what} must be a whole number of bytes, not {text!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {format_size(minimum)}, not {text!r}")
    return int(value)


def format_size(n: int) -> str:
    """``67108864`` → ``"64 MiB"``; ``1000`` → ``"1000 bytes"``."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


@attrs.frozen
class Overflow:
    """A client's queue passed its limit: what was buffered, and what the sender discarded."""

    #: Bytes queued for the client when the next frame did not fit.
    buffered: int
    #: The limit (``--client-buffer``).
    limit: int
    #: Size of the frame that did not fit.
    incoming: int
    #: Frames and bytes discarded from the queue (the failed run's data, not delivered).
    discarded_frames: int
    discarded_bytes: int
    #: The limit's name in the message.
    limit_name: str = "--client-buffer"

    def describe(self, runs: tuple[str, ...] = ()) -> str:
        """The ``error_message`` text a client gets."""
        what = f"run {', '.join(runs)} aborted" if runs else "session closed"
        return (
            f"client buffer overflow: {what}: {self.buffered} bytes were buffered for this "
            f"client, which reads run data too slowly (limit {self.limit_name} "
            f"{format_size(self.limit)} = {self.limit} bytes); {self.discarded_bytes} bytes of "
            f"undelivered run data were discarded and the session is closed"
        )

"""What the simulated device has done, counted (read by tests, the benchmark and logs)."""

from __future__ import annotations

import attrs


@attrs.define
class DeviceCounters:
    """Totals since the device was created; nothing the device withholds goes uncounted."""

    connections: int = 0
    requests: int = 0
    unknown_requests: int = 0
    runs_started: int = 0
    runs_done: int = 0
    runs_failed: int = 0
    runs_aborted: int = 0
    runs_stopped: int = 0
    chunks_sent: int = 0
    chunks_dropped: int = 0
    chunks_reordered: int = 0
    stalls: int = 0
    disconnects: int = 0
    datagrams_sent: int = 0
    datagram_bytes: int = 0
    datagram_errors: int = 0
    tcp_frames_sent: int = 0
    tcp_bytes_sent: int = 0
    udp_refused: int = 0


__all__ = ["DeviceCounters"]

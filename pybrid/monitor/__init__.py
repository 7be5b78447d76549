"""Multicast monitor taps and listeners.

A :class:`MulticastTap` in the proxy copies every data and state datagram a backend sends to
one or more multicast groups, behind a small fixed header (:mod:`pybrid.monitor.header`);
a :class:`MonitorListener` joins a group and decodes them.  ``pybrid-monitor``
(:mod:`pybrid.monitor.cli`) is the console tool.  See ``docs/monitors.md``.
"""

from pybrid.monitor.decode import MonitorChunk, MonitorOther, MonitorStateChange, decode_datagram
from pybrid.monitor.header import (
    FLAG_TCP_LANE,
    HEADER_SIZE,
    MAX_ENVELOPE,
    MalformedDatagram,
    MonitorHeader,
    decode_header,
    encode_datagram,
    encode_header,
)
from pybrid.monitor.listener import ListenerSetupError, ListenerStopped, MonitorListener
from pybrid.monitor.options import (
    MonitorConfig,
    MonitorOptionsMixin,
    monitor_config,
    parse_group,
    parse_interface,
    parse_ttl,
)
from pybrid.monitor.stats import CarrierStats, ListenerStats
from pybrid.monitor.tap import MulticastTap, TapCounters, TapSetupError, make_tap

__all__ = [
    "FLAG_TCP_LANE",
    "HEADER_SIZE",
    "MAX_ENVELOPE",
    "CarrierStats",
    "ListenerSetupError",
    "ListenerStats",
    "ListenerStopped",
    "MalformedDatagram",
    "MonitorChunk",
    "MonitorConfig",
    "MonitorHeader",
    "MonitorListener",
    "MonitorOptionsMixin",
    "MonitorOther",
    "MonitorStateChange",
    "MulticastTap",
    "TapCounters",
    "TapSetupError",
    "decode_datagram",
    "decode_header",
    "encode_datagram",
    "encode_header",
    "make_tap",
    "monitor_config",
    "parse_group",
    "parse_interface",
    "parse_ttl",
]

"""Multicast monitor taps and listeners.

A :class:`MulticastTap` in the proxy copies every data and state datagram a backend sends to
one or more multicast groups, behind a small fixed header (:mod:`pybrid.wire.monitor_header`);
a :class:`MonitorListener` joins a group and decodes them.  ``pybrid-monitor``
(:mod:`pybrid.monitor.cli`) is the console tool.  See ``docs/monitors.md``.
"""

import importlib

# Names resolve lazily (PEP 562): the proxy imports ``pybrid.monitor.options`` on start-up and
# must not pay for numpy, which only the listener side needs.
_EXPORTS = {
    "CarrierStats": "stats",
    "FLAG_TCP_LANE": "pybrid.wire.monitor_header",
    "HEADER_SIZE": "pybrid.wire.monitor_header",
    "ListenerSetupError": "listener",
    "ListenerStats": "stats",
    "ListenerStopped": "listener",
    "MAX_ENVELOPE": "pybrid.wire.monitor_header",
    "MalformedDatagram": "pybrid.wire.monitor_header",
    "MonitorChunk": "decode",
    "MonitorConfig": "options",
    "MonitorHeader": "pybrid.wire.monitor_header",
    "MonitorListener": "listener",
    "MonitorOptionsMixin": "options",
    "MonitorOther": "decode",
    "MonitorRun": "decode",
    "MonitorStateChange": "decode",
    "decode_datagram": "decode",
    "decode_header": "pybrid.wire.monitor_header",
    "encode_datagram": "pybrid.wire.monitor_header",
    "encode_header": "pybrid.wire.monitor_header",
    "monitor_config": "options",
    "parse_group": "options",
    "parse_interface": "options",
    "parse_ttl": "options",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    path = module if "." in module else f"{__name__}.{module}"
    return getattr(importlib.import_module(path), name)


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
    "MonitorRun",
    "MonitorStateChange",
    "decode_datagram",
    "decode_header",
    "encode_datagram",
    "encode_header",
    "monitor_config",
    "parse_group",
    "parse_interface",
    "parse_ttl",
]

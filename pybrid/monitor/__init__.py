"""Multicast monitor taps and listeners.

A :class:`MulticastTap` in the proxy copies every data and state datagram a backend sends to
one or more multicast groups, behind a small fixed header (:mod:`pybrid.monitor.header`);
a :class:`MonitorListener` joins a group and decodes them.  ``pybrid-monitor``
(:mod:`pybrid.monitor.cli`) is the console tool.  See ``docs/monitors.md``.
"""

import importlib

# Names resolve lazily (PEP 562): the proxy imports ``pybrid.monitor.options`` and ``.emitter``
# on start-up and must not pay for numpy, which only the listener side needs.
_EXPORTS = {
    "CarrierStats": "stats",
    "FLAG_TCP_LANE": "header",
    "HEADER_SIZE": "header",
    "ListenerSetupError": "listener",
    "ListenerStats": "stats",
    "ListenerStopped": "listener",
    "MAX_ENVELOPE": "header",
    "MalformedDatagram": "header",
    "MonitorChunk": "decode",
    "MonitorConfig": "options",
    "MonitorHeader": "header",
    "MonitorListener": "listener",
    "MonitorOptionsMixin": "options",
    "MonitorOther": "decode",
    "MonitorStateChange": "decode",
    "MulticastTap": "emitter",
    "TapCounters": "emitter",
    "TapSetupError": "emitter",
    "decode_datagram": "decode",
    "decode_header": "header",
    "encode_datagram": "header",
    "encode_header": "header",
    "make_tap": "emitter",
    "monitor_config": "options",
    "parse_group": "options",
    "parse_interface": "options",
    "parse_ttl": "options",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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

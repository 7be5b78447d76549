"""Parsing and validation of the proxy's ``--monitor`` options.

``--monitor GROUP:PORT`` (repeatable), ``--monitor-ttl`` (0..255, default 1: the local network
at most) and ``--monitor-interface`` (the IPv4 address of the interface multicast leaves from;
default ``127.0.0.1`` so samples stay on this host until an operator names a network interface;
``any`` leaves the choice to the kernel's routing table).  Every parser raises
:class:`ValueError` with a message fit for a ``usage.UsageError``; :class:`MonitorOptionsMixin`
wires them into a ``twisted.python.usage.Options`` subclass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs
from twisted.python import usage

#: Default multicast TTL: datagrams never pass a router.
DEFAULT_TTL = 1
#: Default interface for sending and joining: loopback, so nothing leaves the host by default.
DEFAULT_INTERFACE = "127.0.0.1"
_ANY = {"", "any", "0.0.0.0", "*"}


def parse_group(value: str) -> tuple[str, int]:
    """``"239.1.1.1:5007"`` → ``("239.1.1.1", 5007)``; the address must be IPv4 multicast."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"monitor {value!r} must be GROUP:PORT, e.g. 239.255.0.1:5007")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(
            f"monitor group {host!r} is not an IPv4 address (GROUP:PORT, e.g. 239.255.0.1:5007)"
        ) from None
    if not address.is_multicast:
        raise ValueError(
            f"monitor group {host} is not a multicast address (224.0.0.0 to 239.255.255.255)"
        )
    return str(address), parse_port(port_text, what=f"monitor {value!r}")


def parse_port(value: str | int, *, what: str = "port") -> int:
    """A UDP port 1..65535."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: port {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is outside 1..65535")
    return port


def parse_ttl(value: str | int) -> int:
    """A multicast TTL 0..255 (0 = this host only, 1 = the local network)."""
    try:
        ttl = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"monitor TTL {value!r} is not a number") from None
    if not 0 <= ttl <= 255:
        raise ValueError(f"monitor TTL {ttl} is outside 0..255")
    return ttl


def parse_interface(value: str | None) -> str | None:
    """An interface's IPv4 address, or None (``any``, ``0.0.0.0`` or empty: the kernel picks)."""
    if value is None or value.strip().lower() in _ANY:
        return None
    text = value.strip()
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(
            f"monitor interface {value!r} is not an IPv4 address (name the interface by its "
            f"address, e.g. 127.0.0.1, or use 'any')"
        ) from None
    if address.is_multicast:
        raise ValueError(f"monitor interface {text} is a multicast address, not an interface's")
    return str(address)


@attrs.frozen
class MonitorConfig:
    """Validated monitor settings: where a tap sends and how far datagrams may travel."""

    groups: tuple[tuple[str, int], ...] = ()
    ttl: int = DEFAULT_TTL
    interface: str | None = DEFAULT_INTERFACE

    @property
    def enabled(self) -> bool:
        return bool(self.groups)


def monitor_config(
    groups: Iterable[str],
    ttl: str | int = DEFAULT_TTL,
    interface: str | None = DEFAULT_INTERFACE,
) -> MonitorConfig:
    """Validate raw option values into a :class:`MonitorConfig`; raises :class:`ValueError`."""
    parsed: list[tuple[str, int]] = []
    for text in groups:
        group = parse_group(text)
        if group in parsed:
            raise ValueError(f"monitor {group[0]}:{group[1]} is given twice")
        parsed.append(group)
    return MonitorConfig(tuple(parsed), parse_ttl(ttl), parse_interface(interface))


def _coerce_ttl(value: str) -> int:
    return parse_ttl(value)


def _coerce_interface(value: str) -> str:
    return parse_interface(value) or "any"


_coerce_ttl.coerceDoc = "0..255; 0 = this host, 1 = the local network."  # type: ignore[attr-defined]
_coerce_interface.coerceDoc = "An IPv4 address, or 'any'."  # type: ignore[attr-defined]


class MonitorOptionsMixin:
    """Adds ``--monitor``, ``--monitor-ttl`` and ``--monitor-interface`` to a usage.Options.

    Mix in before ``usage.Options``; after parsing, :meth:`monitor_config` returns the
    validated :class:`MonitorConfig` (empty ``groups`` when no ``--monitor`` was given).
    """

    optParameters = [
        ["monitor-ttl", None, DEFAULT_TTL, "Multicast TTL of monitor datagrams.", _coerce_ttl],
        [
            "monitor-interface",
            None,
            DEFAULT_INTERFACE,
            "Address of the interface monitor datagrams leave from.",
            _coerce_interface,
        ],
    ]

    def opt_monitor(self, value: str) -> None:
        """Send a copy of every backend data/state datagram to multicast GROUP:PORT
        (repeatable)."""
        try:
            group = parse_group(value)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        groups: list[tuple[str, int]] = self.setdefault("monitor", [])  # type: ignore[attr-defined]
        if group in groups:
            raise usage.UsageError(f"monitor {group[0]}:{group[1]} is given twice")
        groups.append(group)

    def monitor_config(self) -> MonitorConfig:
        """The validated settings (call from makeService)."""
        opts = self  # a usage.Options is a dict
        ttl = opts.get("monitor-ttl", DEFAULT_TTL)  # type: ignore[attr-defined]
        interface = opts.get("monitor-interface", DEFAULT_INTERFACE)  # type: ignore[attr-defined]
        groups = opts.get("monitor", [])  # type: ignore[attr-defined]
        return MonitorConfig(tuple(groups), parse_ttl(ttl), parse_interface(interface))

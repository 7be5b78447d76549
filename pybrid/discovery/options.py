"""``--advertise`` / ``--no-advertise``, ``--advertise-interface``, ``--advertise-name`` for
``twistd pybrid-proxy`` and ``twistd pybrid-device``.

Advertising is off unless asked for: announcing a service to the whole LAN is the operator's
choice (as is ``--listen 0.0.0.0``), and a host may run many proxies.  When on, it follows the
listening address by default: a daemon listening on loopback only is announced on loopback only
(an address published on the LAN that nobody there could reach would only mislead), one on a
single address there, one on every address (``0.0.0.0``) on every interface.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

import attrs
from twisted.python import usage

from pybrid.discovery.records import INSTALL_HINT, ZeroconfMissing, need_zeroconf


@attrs.frozen
class AdvertiseConfig:
    """Advertising wanted: the instance name (None: a default) and interfaces (empty: all)."""

    name: str | None = None
    interfaces: tuple[str, ...] = ()


def default_name(kind: str, port: int) -> str:
    """``pybrid-KIND on HOST port PORT`` (the host's first label; instance names hold no '.')."""
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"pybrid-{kind} on {host} port {port}"[:63]


def interfaces_for(listen: str) -> tuple[str, ...]:
    """The default interfaces for a daemon listening on ``listen`` (an address or endpoint)."""
    match = re.search(r"(?:^|:)interface=([^:]+)", listen)
    if ":" in listen and not match and not _is_ip(listen):
        return ()  # an endpoint without interface= listens everywhere
    address = match.group(1).replace("\\", "") if match else listen
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ()
    if ip.is_loopback:
        return ("127.0.0.1",)
    if ip.is_unspecified or ip.version == 6:
        return ()  # IPv6 addresses are not announced (IPv4 only, as the reference browses)
    return (str(ip),)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_interfaces(text: str) -> tuple[str, ...]:
    """``all`` or comma-separated IPv4 addresses; ValueError otherwise."""
    if text.strip().lower() == "all":
        return ()
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts:
        raise ValueError("--advertise-interface takes 'all' or IPv4 addresses, not ''")
    for part in parts:
        try:
            ipaddress.IPv4Address(part)
        except ValueError:
            raise ValueError(f"--advertise-interface takes 'all' or IPv4 addresses, "
                             f"not {part!r}") from None
    return parts


def check_name(name: str) -> str:
    if not name or len(name.encode()) > 63 or "." in name:
        raise ValueError(f"--advertise-name must be 1-63 bytes without '.', not {name!r}")
    return name


class AdvertiseOptionsMixin:
    """Adds the advertising options to a usage.Options; mix in before ``usage.Options``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts: Any = self
        opts["advertise"] = False
        opts["advertise-interface"] = None
        opts["advertise-name"] = None

    def opt_advertise(self) -> None:
        """Announce by mDNS as _lucijsonl._tcp.local. (needs the [discovery] extra)."""
        self["advertise"] = True  # type: ignore[index]

    def opt_no_advertise(self) -> None:
        """Do not announce this service (the default)."""
        self["advertise"] = False  # type: ignore[index]

    def opt_advertise_interface(self, value: str) -> None:
        """Where to announce: 'all' or IPv4 addresses, comma-separated (default: as listening)."""
        self["advertise-interface"] = value  # type: ignore[index]

    def opt_advertise_name(self, value: str) -> None:
        """The announced instance name (default: 'pybrid-KIND on HOST port PORT')."""
        self["advertise-name"] = value  # type: ignore[index]

    def advertise_config(self, listen: str) -> AdvertiseConfig | None:
        """The validated choice (None: not advertising); UsageError on bad values."""
        opts: Any = self
        try:
            name = opts["advertise-name"]
            if name is not None:
                check_name(name)
            text = opts["advertise-interface"]
            interfaces = interfaces_for(listen) if text is None else parse_interfaces(text)
            if not opts["advertise"]:
                if name is not None or text is not None:
                    raise ValueError("--advertise-name and --advertise-interface need --advertise")
                return None
            need_zeroconf()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        except ZeroconfMissing:
            raise usage.UsageError(
                f"--advertise needs python-zeroconf, which is not installed: {INSTALL_HINT}"
            ) from None
        return AdvertiseConfig(name=name, interfaces=interfaces)

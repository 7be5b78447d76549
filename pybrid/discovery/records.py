"""What an advertisement says and what a browser makes of it; no zeroconf import here.

The reference client's detector reads only the service's first IPv4 address, its port and its
name, so anything answering ``_lucijsonl._tcp.local.`` is a target for it.  Our TXT keys add
what a chooser needs (all optional; a real LUCIDAC's advertisement has none of them, and a
service without ``kind`` is taken for a device):

``product``  ``pybrid-twisted``            ``kind``      ``proxy`` or ``device``
``version``  our version                   ``auth``      ``required`` or ``none``
``carriers`` how many carriers             ``macs``      their MACs, comma-separated
``tls``      ``yes`` when the lane is TLS  (``macs`` holds as many as fit in one TXT string)
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from pybrid.version import install_hint

SERVICE_TYPE = "_lucijsonl._tcp.local."
KINDS = ("proxy", "device")
#: One TXT string is at most 255 bytes ("key=value").
TXT_MAX = 255
INSTALL_HINT = install_hint("discovery", "zeroconf")


class ZeroconfMissing(RuntimeError):
    """python-zeroconf is not installed; the message says what to install."""


def need_zeroconf() -> Any:
    """The ``zeroconf`` module, or :class:`ZeroconfMissing` saying what to install."""
    try:
        import zeroconf
    except ImportError:
        raise ZeroconfMissing(
            f"discovery needs python-zeroconf, which is not installed: {INSTALL_HINT}") from None
    return zeroconf


def _check_kind(_self: Any, _attr: Any, value: str) -> None:
    if value not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {value!r}")


@attrs.frozen
class Advert:
    """What one proxy or simulated device advertises."""

    name: str
    port: int
    kind: str = attrs.field(validator=_check_kind)
    version: str
    macs: tuple[str, ...] = ()
    auth: bool = False
    tls: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.name or len(self.name.encode()) > 63 or "." in self.name:
            raise ValueError(f"the instance name must be 1-63 bytes without '.', not "
                             f"{self.name!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"the advertised port must be 1-65535, not {self.port}")

    def properties(self) -> dict[str, str]:
        """The TXT record (every string within 255 bytes)."""
        txt = {"product": "pybrid-twisted", "version": self.version[:64], "kind": self.kind,
               "auth": "required" if self.auth else "none", "carriers": str(len(self.macs))}
        if self.tls:
            txt["tls"] = "yes"
        macs: list[str] = []
        for mac in self.macs:
            if len("macs=" + ",".join([*macs, mac])) > TXT_MAX:
                break
            macs.append(mac)
        if macs:
            txt["macs"] = ",".join(macs)
        return txt

    def service_name(self) -> str:
        return f"{self.name}.{SERVICE_TYPE}"

    def server(self) -> str:
        """A host name for the SRV record, ours alone (not the machine's, which avahi owns)."""
        label = re.sub(r"[^A-Za-z0-9-]+", "-", self.name).strip("-")[:40] or "pybrid"
        return f"{label}-{self.port}.local."


@attrs.frozen
class Target:
    """One service a browser found."""

    name: str
    host: str
    port: int
    kind: str = "device"
    version: str | None = None
    macs: tuple[str, ...] = ()
    auth: bool | None = None
    tls: bool = False
    ours: bool = False

    @classmethod
    def from_service(cls, name: str, host: str, port: int,
                     properties: dict[bytes, bytes | None]) -> Target:
        txt = {k.decode(errors="replace"): (v or b"").decode(errors="replace")
               for k, v in properties.items()}
        kind = txt.get("kind", "device")
        auth = {"required": True, "none": False}.get(txt.get("auth", ""))
        return cls(
            name=name.removesuffix("." + SERVICE_TYPE), host=host, port=port,
            kind=kind if kind in KINDS else "device", version=txt.get("version"),
            macs=tuple(m for m in txt.get("macs", "").split(",") if m), auth=auth,
            tls=txt.get("tls") == "yes", ours=txt.get("product") == "pybrid-twisted",
        )

    @property
    def address(self) -> str:
        """``HOST:PORT``, what ``connect()`` and the commands take."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> str:
        parts = [self.kind]
        if self.ours and self.version:
            parts.append(f"pybrid-twisted {self.version}")
        if self.macs:
            parts.append("carriers " + ", ".join(self.macs))
        if self.auth is not None:
            parts.append("auth required" if self.auth else "no auth")
        if self.tls:
            parts.append("TLS")
        return f"{self.address}  {self.name!r} ({'; '.join(parts)})"


def ordered(targets: list[Target]) -> list[Target]:
    """Proxies first (they share devices between users), then by name and address."""
    return sorted(set(targets), key=lambda t: (t.kind != "proxy", t.name, t.host, t.port))


def choice_text(targets: list[Target]) -> str:
    """The numbered list of candidates and the note on reaching a device directly."""
    lines = [f"  {i}. {t.describe()}" for i, t in enumerate(targets, 1)]
    proxied = {m for t in targets if t.kind == "proxy" for m in t.macs}
    if any(t.kind == "device" for t in targets):
        lines.append("A device reached directly bypasses a proxy's session management "
                     "(queueing, timeouts): other users of that proxy are not told.")
    for t in targets:
        if t.kind == "device" and proxied.intersection(t.macs):
            lines.append(f"{t.address} is also served by a proxy listed above.")
    return "\n".join(lines)

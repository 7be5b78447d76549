"""Entity paths: ``/<carrier MAC>/<cluster>/<block>…``; the first component names the carrier.

:func:`carrier_of` gives the carrier *path* (``/<MAC>``, the form entity ids and the proxy's
ownership tables use); :func:`mac_of` gives the bare MAC (the form results are keyed by).
"""

from __future__ import annotations


def carrier_of(path: str) -> str:
    """The carrier path (``/<MAC>``) an entity path starts with; ``""`` for the root."""
    stripped = path.strip("/")
    return "/" + stripped.split("/", 1)[0] if stripped else ""


def mac_of(path: str) -> str:
    """The carrier MAC an entity path belongs to: its first component, without slashes."""
    return path.strip("/").split("/", 1)[0]


__all__ = ["carrier_of", "mac_of"]

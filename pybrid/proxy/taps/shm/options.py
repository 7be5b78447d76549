"""``--shm-tap NAME`` validation and the proxy's construction hook (imports stay lazy so the
proxy runs without the ``[shm]`` extra when no shared-memory tap is asked for)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pybrid.version import install_hint

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class ShmOptionError(ValueError):
    """A bad ``--shm-tap`` value or a missing optional dependency."""


def parse_shm_taps(names: Iterable[str]) -> tuple[str, ...]:
    """Validated, distinct ZeroBuffer names; raises :class:`ShmOptionError`."""
    out: list[str] = []
    for name in names:
        if not _NAME.fullmatch(name):
            raise ShmOptionError(
                f"--shm-tap {name!r}: a ZeroBuffer name is 1-200 characters of letters, digits, "
                "'.', '_' and '-', starting with a letter or digit")
        if name in out:
            raise ShmOptionError(f"--shm-tap {name!r} is given twice")
        out.append(name)
    try:
        import posix_ipc  # noqa: F401
        import zerobuffer  # noqa: F401
    except ImportError as e:
        raise ShmOptionError(
            f"--shm-tap needs the zerobuffer-ipc and posix-ipc packages ({e}): "
            + install_hint("shm", "zerobuffer-ipc posix-ipc")) from None
    return tuple(out)


def make_shm_taps(config: Any, reactor: Any, lanes: Callable[[], Iterable[Any]],
                  backlog: Callable[[], float] | None = None) -> Any:
    """The proxy's :class:`~.service.ShmTaps`, or None without ``--shm-tap``."""
    if not config.shm_taps:
        return None
    from pybrid.proxy.taps.shm.service import ShmTaps, lane_carriers
    from pybrid.version import version

    return ShmTaps(config.shm_taps, reactor, lambda: lane_carriers(lanes()),
                   proxy_version=version(), write_timeout=config.shm_write_timeout,
                   writer=config.shm_writer, backlog=backlog, yield_at=config.shm_yield)

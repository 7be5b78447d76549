"""Finding targets: browse ``_lucijsonl._tcp.local.`` for a few seconds, then pick one.

:func:`browse` runs python-zeroconf's browser in a thread of its own for ``timeout`` seconds and
fires (in the reactor thread) with every target still announced, proxies first.
:func:`find_target` is what ``connect()`` and the commands use without a host: the only target,
or the one ``ask`` picks from the list, or a :class:`DiscoveryError` that lists them and says
how to choose.  ``$PYBRID_DISCOVERY_INTERFACES`` (comma-separated IPv4 addresses) limits the
browsing to those interfaces (``127.0.0.1`` in the tests); the default is every interface.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet import defer

from pybrid.client.errors import ConnectError
from pybrid.discovery.advertise import in_thread
from pybrid.discovery.records import (
    SERVICE_TYPE,
    Target,
    ZeroconfMissing,
    choice_text,
    need_zeroconf,
    ordered,
)

#: Seconds a browse listens for answers (the reference waits up to 5 s, then 4.2 s more).
BROWSE_TIMEOUT = 3.0
INTERFACES_ENV = "PYBRID_DISCOVERY_INTERFACES"

class DiscoveryError(ConnectError):
    """No target found, several and none chosen (the message lists them), or no zeroconf."""

    def __init__(self, reason: str) -> None:
        super().__init__("a discovered target (mDNS _lucijsonl._tcp)", reason)


Ask = Callable[[list[Target]], Awaitable[Target | None]]


def interfaces_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    text = (os.environ if environ is None else environ).get(INTERFACES_ENV, "")
    return tuple(part.strip() for part in text.split(",") if part.strip())


def browse(reactor: Any, timeout: float = BROWSE_TIMEOUT,
           interfaces: Sequence[str] | None = None) -> defer.Deferred[list[Target]]:
    """Every target announced within ``timeout`` seconds (and not withdrawn), proxies first."""
    try:
        zeroconf = need_zeroconf()
    except ZeroconfMissing as e:
        return defer.fail(DiscoveryError(f"{e}; or give the host"))
    if interfaces is None:
        interfaces = interfaces_from_env()
    return in_thread(reactor, _browse, zeroconf, timeout, tuple(interfaces))


def _browse(zeroconf: Any, timeout: float, interfaces: tuple[str, ...]) -> list[Target]:
    names: set[str] = set()
    lock = threading.Lock()

    def changed(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        with lock:
            if state_change is zeroconf_mod.ServiceStateChange.Removed:
                names.discard(name)
            else:
                names.add(name)

    zeroconf_mod = zeroconf
    zc = zeroconf.Zeroconf(interfaces=list(interfaces) or zeroconf.InterfaceChoice.All,
                           ip_version=zeroconf.IPVersion.V4Only)
    try:
        browser = zeroconf.ServiceBrowser(zc, SERVICE_TYPE, handlers=[changed])
        threading.Event().wait(timeout)  # bounded: the browse window
        browser.cancel()
        with lock:
            found = sorted(names)
        targets = []
        for name in found:
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=1000)
            if info is None or not info.parsed_addresses(zeroconf.IPVersion.V4Only):
                continue
            host = info.parsed_addresses(zeroconf.IPVersion.V4Only)[0]
            targets.append(Target.from_service(name, host, info.port, info.properties))
        return ordered(targets)
    finally:
        zc.close()


async def find_target(reactor: Any, ask: Ask | None = None, timeout: float = BROWSE_TIMEOUT,
                      interfaces: Sequence[str] | None = None) -> Target:
    """The target to connect to when no host was given (see the module note)."""
    targets = await browse(reactor, timeout, interfaces)
    if not targets:
        raise DiscoveryError(
            f"no _lucijsonl._tcp service answered within {timeout:g} s; give the host "
            "(a proxy advertises with --advertise)")
    if len(targets) == 1:
        return targets[0]
    if ask is not None:
        chosen = await ask(targets)
        if chosen is not None:
            return chosen
    raise DiscoveryError(
        f"{len(targets)} targets found, choose one by giving its address as the host:\n"
        + choice_text(targets))


def terminal_ask(reactor: Any, read: Callable[[str], str] = input) -> Ask:
    """An ``ask`` that shows the numbered list and reads a choice (in a thread, not the
    reactor's); an empty or unknown answer chooses nothing."""

    async def ask(targets: list[Target]) -> Target | None:
        prompt = ("Found:\n" + choice_text(targets)
                  + f"\nConnect to which one (1-{len(targets)}, Enter: none)? ")
        try:
            answer = await in_thread(reactor, read, prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        text = str(answer).strip()
        if text.isdigit() and 1 <= int(text) <= len(targets):
            return targets[int(text) - 1]
        return None

    return ask


async def resolve_host(reactor: Any, host: str | None, port: int, interactive: bool,
                       say: Callable[..., None]) -> tuple[str, int, bool]:
    """A command's ``(host, port, tls)``: as given, or discovered when ``host`` is None."""
    if host is not None:
        return host, port, False
    target = await find_target(reactor, terminal_ask(reactor) if interactive else None)
    say(f"discovered {target.describe()}")
    return target.address, port, target.tls

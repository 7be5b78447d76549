"""``--advertise``: a child service that announces its parent as ``_lucijsonl._tcp.local.``.

python-zeroconf's synchronous calls (``register_service`` probes the network for about 1.7 s)
run in a thread this service starts per operation; their outcomes come back through
``reactor.callFromThread``.  Operations run one after another (one Deferred chain), so the
withdrawal at stop always follows the registration.  zeroconf's own loop thread answers queries
while the service is registered; the reactor thread never waits for it.  A failure to advertise
is logged and the parent keeps serving: discovery is a convenience, not the service.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from pybrid.discovery.records import SERVICE_TYPE, Advert, need_zeroconf

#: Seconds between checks whether the TXT record changed (carriers learnt, lost).
REFRESH = 5.0
#: Seconds the stop waits for the withdrawal before giving up on it.
STOP_TIMEOUT = 10.0


def in_thread(reactor: Any, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """Run ``fn(*args)`` in a new daemon thread; the Deferred fires in the reactor thread."""
    d: defer.Deferred[Any] = defer.Deferred()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException:
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="pybrid-zeroconf", daemon=True).start()
    return d


def advertised_addresses(interfaces: Sequence[str]) -> list[str]:
    """The IPv4 addresses to publish: the interfaces given, or (all) every non-loopback one."""
    if interfaces:
        return list(interfaces)
    zeroconf = need_zeroconf()
    found = [a for a in zeroconf.get_all_addresses() if not a.startswith("127.")]
    return found or ["127.0.0.1"]  # clients take the first address: never loopback if avoidable


class AdvertiseService(service.Service):
    """Registers ``advert()`` while running; ``interfaces`` empty means all of them."""

    log = Logger()

    def __init__(self, reactor: Any, advert: Callable[[], Advert],
                 interfaces: Sequence[str] = (), refresh: float = REFRESH) -> None:
        self.reactor = reactor
        self.advert = advert
        self.interfaces = tuple(interfaces)
        self.refresh = refresh
        self._chain: defer.Deferred[Any] = defer.succeed(None)
        self._zc: Any = None
        self._info: Any = None
        self._published: dict[str, str] | None = None
        self._loop: task.LoopingCall | None = None
        #: The instance name actually registered (zeroconf renames on a conflict), or None.
        self.registered_name: str | None = None

    def _then(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Queue ``fn(*args)`` in a thread after every earlier operation; failures logged."""
        d = self._chain.addCallback(lambda _: in_thread(self.reactor, fn, *args))
        d.addErrback(lambda f: self.log.failure("zeroconf: {what} failed", f,
                                                 what=getattr(fn, "__name__", "operation")))
        return d

    def startService(self) -> None:
        super().startService()
        advert = self.advert()
        self._published = advert.properties()
        self._then(self._register, advert)
        self._loop = task.LoopingCall(self._check)
        self._loop.clock = self.reactor
        self._loop.start(self.refresh, now=False)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        d = self._then(self._unregister)
        return d.addTimeout(STOP_TIMEOUT, self.reactor).addErrback(
            lambda f: self.log.warn("zeroconf: withdrawal unfinished after {s} s", s=STOP_TIMEOUT))

    def _check(self) -> None:
        try:
            advert = self.advert()
        except RuntimeError:
            return  # the parent stopped listening (stopping): nothing to refresh

        properties = advert.properties()
        if properties != self._published:
            self._published = properties
            self._then(self._update, advert)

    # -- in the operation's thread -------------------------------------------------------

    def _info_for(self, advert: Advert) -> Any:
        zeroconf = need_zeroconf()
        name = self._info.name if self._info is not None else advert.service_name()
        return zeroconf.ServiceInfo(
            SERVICE_TYPE, name, port=advert.port, properties=advert.properties(),
            server=advert.server(),
            addresses=[socket.inet_aton(a) for a in advertised_addresses(self.interfaces)],
        )

    def _register(self, advert: Advert) -> None:
        zeroconf = need_zeroconf()
        interfaces = list(self.interfaces) or zeroconf.InterfaceChoice.All
        self._zc = zeroconf.Zeroconf(interfaces=interfaces, ip_version=zeroconf.IPVersion.V4Only)
        info = self._info_for(advert)
        try:
            self._zc.register_service(info, allow_name_change=True)
        except BaseException:
            self._zc.close()
            self._zc = None
            raise
        self._info = info
        self.registered_name = info.name.removesuffix("." + SERVICE_TYPE)
        self.reactor.callFromThread(
            self.log.info, "zeroconf: advertising {name!r} ({kind}) on port {port}, "
            "interfaces {interfaces}", name=self.registered_name, kind=advert.kind,
            port=advert.port, interfaces=", ".join(self.interfaces) or "all")

    def _update(self, advert: Advert) -> None:
        if self._zc is None or self._info is None:
            return
        info = self._info_for(advert)
        self._zc.update_service(info)
        self._info = info

    def _unregister(self) -> None:
        zc, info, self._zc, self._info = self._zc, self._info, None, None
        if zc is None:
            return
        try:
            if info is not None:
                zc.unregister_service(info)  # the goodbye: browsers see the removal now
        finally:
            zc.close()
        self.reactor.callFromThread(self.log.info, "zeroconf: withdrawn {name!r}",
                                    name=self.registered_name)

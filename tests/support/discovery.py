"""A zeroconf browser on loopback that records what it sees (added, removed) for tests."""

from __future__ import annotations

from typing import Any

from pybrid.discovery.records import SERVICE_TYPE


class Watcher:
    """Records ``(state, instance name)`` for every ``_lucijsonl._tcp`` change on 127.0.0.1;
    the events are appended in the reactor thread."""

    def __init__(self, reactor: Any) -> None:
        import zeroconf

        self.reactor = reactor
        self.events: list[tuple[str, str]] = []
        self._zc = zeroconf.Zeroconf(interfaces=["127.0.0.1"],
                                     ip_version=zeroconf.IPVersion.V4Only)
        self._browser = zeroconf.ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._changed])

    def _changed(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        short = name.removesuffix("." + SERVICE_TYPE)
        self.reactor.callFromThread(self.events.append, (state_change.name, short))

    def saw(self, state: str, name: str) -> bool:
        return (state, name) in self.events

    def close(self) -> None:
        self._browser.cancel()
        self._zc.close()

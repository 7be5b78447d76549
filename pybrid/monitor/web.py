"""``pybrid-monitor --web PORT``: the proxy's live view served from a monitor.

A :class:`MonitorLive` takes a :class:`~pybrid.monitor.listener.MonitorListener`'s run
records and chunks (already decoded) into a :class:`~pybrid.live.store.LiveStore`
and serves ``/live`` (the same page, frames and WebSocket as the proxy's status port) on its
own web server, so watchers need not reach the proxy at all.  Like the proxy's tap it stores
samples only while a viewer is connected.  ``--web`` takes a port (on 127.0.0.1) or a Twisted
server endpoint string (``tcp:8080:interface=0.0.0.0``, ``ssl:…`` for TLS).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import endpoints
from twisted.web import pages, resource, server

from pybrid.live.store import LiveStore
from pybrid.live.web import live_resource
from pybrid.live.ws import LiveHub
from pybrid.monitor.decode import MonitorChunk, MonitorRun


def endpoint_string(text: str) -> str:
    """``--web``'s value as a server endpoint string: a bare port listens on 127.0.0.1."""
    text = text.strip()
    if text.isdigit():
        return f"tcp:{int(text)}:interface=127.0.0.1"
    if ":" not in text:
        raise ValueError(f"--web {text!r} is neither a port nor an endpoint (tcp:PORT:…)")
    return text


def _result(state: Any) -> str:
    return str(state) if state else "released"


@attrs.define(eq=False)
class MonitorLive:
    """A listener's runs as the live view shows them; see the module note."""

    reactor: Any
    store: LiveStore = attrs.field(factory=LiveStore)
    #: Told the number of viewers whenever it changes, or None.
    on_watchers: Any = None
    #: Viewers connected (set by the hub); 0: chunks are not stored.
    watchers: int = attrs.field(default=0, on_setattr=lambda self, _a, value: self._told(value))
    hub: LiveHub = attrs.field(init=False)

    def _told(self, value: int) -> int:
        if self.on_watchers is not None and value != self.watchers:
            self.on_watchers(value)
        return value

    def __attrs_post_init__(self) -> None:
        self.hub = LiveHub(self.store, self.reactor, tap=self)

    def run(self, run: MonitorRun) -> None:
        now = self.reactor.seconds()
        record = run.record
        if run.event == "run-start":
            self.store.start(run.run_id, int(record.get("run") or 0),
                             int(record.get("sample_rate") or 0), now)
        elif run.event == "run-end":
            self.store.end(run.run_id, _result(record.get("state")),
                           int(record.get("chunks") or 0), int(record.get("lost") or 0), now)

    def chunk(self, chunk: MonitorChunk) -> None:
        if not chunk.end:
            self.block(chunk.run_id, chunk.carrier_path, chunk.chunk, chunk.samples,
                       self.reactor.seconds())

    def block(self, run_id: str, path: str, number: int, values: Any, at: float,
              chunks: int = 1) -> None:
        """``chunks`` consecutive chunks from ``number`` as one block of rows, the newest
        arrived ``at`` (the reactor's time)."""
        if not self.watchers:
            return
        if run_id not in self.store.runs:  # its start record was missed
            self.store.start(run_id, 0, 0, at)
        self.store.add(run_id, path, number, values, at, chunks)

    def site(self) -> server.Site:
        root = resource.Resource()
        page = live_resource(self.hub)
        root.putChild(b"live", page)
        root.putChild(b"", _Redirect())
        site = server.Site(root)
        site.noisy = False
        return site

    def listen(self, description: str) -> Any:
        """Start serving on ``description`` (see :func:`endpoint_string`): a Deferred port."""
        ep = endpoints.serverFromString(self.reactor, endpoint_string(description))
        return ep.listen(self.site())


class _Redirect(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return pages.notFound().render(request)  # type: ignore[no-any-return]
        request.redirect(b"/live")
        return b""

"""The live view's web resources: ``/live`` (the page), its script and style, ``/live/ws``.

:func:`live_resource` is mounted on the status page's ``Site`` by the proxy (and on the
monitor's own ``Site`` by ``pybrid-monitor --web``).  The page and its script are package data
(``static/``): no CDN, nothing fetched from elsewhere; a Content-Security-Policy allows only
the page's own script, style and WebSocket.
"""

from __future__ import annotations

from importlib import resources

from twisted.web import pages, resource, server

from pybrid.live.ws import LiveHub, OriginCheckedResource

_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8"}


def static(name: str) -> bytes:
    """A file of the page, from the package."""
    return (resources.files("pybrid.live") / "static" / name).read_bytes()


class StaticFile(resource.Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.body = static(name)
        self.content_type = _TYPES[name.rsplit(".", 1)[1]].encode("ascii")

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return pages.notFound().render(request)  # type: ignore[no-any-return]
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"Content-Security-Policy", _CSP)
        return self.body


class LivePage(StaticFile):
    """``/live``: the page; its children the script, the style and the WebSocket."""

    isLeaf = False

    def __init__(self, hub: LiveHub) -> None:
        super().__init__("live.html")
        self.putChild(b"live.js", StaticFile("live.js"))
        self.putChild(b"live.css", StaticFile("live.css"))
        self.putChild(b"ws", OriginCheckedResource(hub))

    def getChild(self, path: bytes, request: server.Request) -> resource.IResource:
        return self if path == b"" else pages.notFound()


def live_resource(hub: LiveHub) -> resource.Resource:
    return LivePage(hub)

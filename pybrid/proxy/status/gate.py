"""The status site behind the proxy's ``--auth`` token: a login for people, a bearer for scripts.

With a token configured, every resource of the status site (``/``, ``/status.json``,
``/metrics``, ``/live`` and its WebSocket) answers only a request that carries

* ``Authorization: Bearer TOKEN`` (scripts, Prometheus' ``bearer_token``), or
* the cookie ``pybrid_session`` set by ``/login`` — an HMAC of the token, never the token
  itself; ``HttpOnly``, ``SameSite=Strict`` (so another site's page cannot ride on it).

Anything else gets 401 (a page that points to ``/login`` for browsers); nothing of the
snapshot or the samples.  ``/login`` takes the token from a form (POST) and compares it in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from twisted.web import resource, server

COOKIE = b"pybrid_session"
_LOGIN = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>pybrid-proxy login</title></head><body style="font:15px system-ui,sans-serif;margin:3em">
<h1 style="font-size:18px">pybrid-proxy status</h1>{message}
<form method="post" action="/login"><label>token <input type="password" name="token"
autofocus></label> <button type="submit">log in</button></form></body></html>
"""
_HEADERS = {
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Content-Security-Policy": (b"default-src 'none'; style-src 'unsafe-inline'; "
                                 b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
}


def session_value(token: str) -> bytes:
    """The cookie's value for ``token``: an HMAC, so the cookie does not reveal the token."""
    return hmac.new(token.encode("utf-8"), b"pybrid-status-session",
                    hashlib.sha256).hexdigest().encode("ascii")


def authorized(request: server.Request, token: str) -> bool:
    bearer = request.getHeader(b"authorization")
    if bearer is not None and bearer.lower().startswith(b"bearer "):
        return hmac.compare_digest(bearer[7:].strip(), token.encode("utf-8"))
    cookie = request.getCookie(COOKIE)
    return cookie is not None and hmac.compare_digest(cookie, session_value(token))


def _page(request: server.Request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    for name, value in _HEADERS.items():
        request.setHeader(name, value)
    return _LOGIN.format(message=message).encode("utf-8")


class Login(resource.Resource):
    """``/login``: the form (GET) and the check (POST) that sets the session cookie."""

    isLeaf = True

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def render_GET(self, request: server.Request) -> bytes:
        return _page(request, 200, "")

    def render_POST(self, request: server.Request) -> bytes:
        args: dict[bytes, list[bytes]] = request.args or {}
        offered = (args.get(b"token") or [b""])[0]
        if not hmac.compare_digest(offered, self.token.encode("utf-8")):
            return _page(request, 401, "<p>wrong token</p>")
        request.addCookie(COOKIE, session_value(self.token), path=b"/", httpOnly=True,
                          sameSite="strict", secure=request.isSecure())
        request.redirect(b"/")
        return b""


class Gate(resource.Resource):
    """The status site's root behind the token; see the module note."""

    def __init__(self, inner: resource.Resource, token: str) -> None:
        super().__init__()
        self.inner = inner
        self.token = token
        self.login = Login(token)

    def getChildWithDefault(self, path: bytes, request: server.Request) -> resource.IResource:
        if path == b"login":
            return self.login
        if not authorized(request, self.token):
            return _Refused()
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: server.Request) -> bytes:
        if not authorized(request, self.token):
            return _Refused().render(request)
        return self.inner.render(request)  # type: ignore[no-any-return]


class _Refused(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="pybrid-proxy"')
        where = quote(request.uri.decode("latin-1"), safe="/")
        return _page(request, 401, f'<p>log in to see {where}</p>')

"""--auth on the status site: no token, nothing; a bearer or the login cookie, the page."""

from __future__ import annotations

from twisted.web import http, resource, server
from twisted.web.test.requesthelper import DummyRequest as _Dummy

from pybrid.proxy.status.gate import COOKIE, Gate, session_value

TOKEN = "s3cret"


class DummyRequest(_Dummy):
    """With the cookie methods of a real request."""

    def __init__(self, postpath: list[bytes]) -> None:
        super().__init__(postpath)
        self.cookies: list[bytes] = []
        self.received_cookies: dict[bytes, bytes] = {}

    def getCookie(self, key: bytes) -> bytes | None:
        return self.received_cookies.get(key)

    addCookie = http.Request.addCookie

    def isSecure(self) -> bool:
        return False


class Secret(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return b"samples"


def site() -> Gate:
    root = resource.Resource()
    root.putChild(b"status.json", Secret())
    return Gate(root, TOKEN)


def get(gate: Gate, path: bytes, headers: dict[bytes, bytes] | None = None,
        cookies: dict[bytes, bytes] | None = None) -> tuple[int, bytes]:
    req = DummyRequest([path])
    for k, v in (headers or {}).items():
        req.requestHeaders.setRawHeaders(k, [v])
    req.received_cookies = dict(cookies or {})
    child = gate.getChildWithDefault(path, req)
    body = child.render(req)
    return req.responseCode or 200, body


def test_without_the_token_nothing_is_served():
    code, body = get(site(), b"status.json")
    assert code == 401 and b"samples" not in body and b"/login" in body
    code, body = get(site(), b"status.json", {b"authorization": b"Bearer wrong"})
    assert code == 401 and b"samples" not in body
    code, body = get(site(), b"status.json", cookies={COOKIE: TOKEN.encode()})
    assert code == 401  # the cookie is an HMAC of the token, not the token


def test_a_bearer_token_or_the_login_cookie_opens_it():
    assert get(site(), b"status.json", {b"authorization": b"Bearer " + TOKEN.encode()}) == (
        200, b"samples")
    assert get(site(), b"status.json", cookies={COOKIE: session_value(TOKEN)}) == (200, b"samples")


def test_login_sets_the_cookie_only_for_the_right_token():
    gate = site()
    req = DummyRequest([b"login"])
    req.method = b"POST"
    req.args = {b"token": [b"nope"]}
    gate.getChildWithDefault(b"login", req).render(req)
    assert req.responseCode == 401 and not req.cookies
    req = DummyRequest([b"login"])
    req.method = b"POST"
    req.args = {b"token": [TOKEN.encode()]}
    gate.getChildWithDefault(b"login", req).render(req)
    assert req.responseCode == 302
    cookie = req.cookies[0]
    assert session_value(TOKEN) in cookie and b"HttpOnly" in cookie
    assert b"SameSite=strict" in cookie or b"SameSite=Strict" in cookie
    assert TOKEN.encode() not in cookie


def test_the_refusal_escapes_the_path():
    gate = site()
    req = DummyRequest([b"x"])
    req.uri = b"/<script>alert(1)</script>"
    body = gate.getChildWithDefault(b"x", req).render(req)
    assert b"<script>" not in body

"""``--auth`` on the status site: without the token no page, no JSON, no WebSocket (no
samples); with ``Authorization: Bearer`` or the login's cookie, the live view works."""

from __future__ import annotations

import base64
import os

import pytest_twisted
from support.ops_http import fetch
from support.ops_stack import status_stack
from twisted.internet import defer, endpoints, protocol

from pybrid.proxy.status.gate import COOKIE, session_value

TOKEN = "live-view-token"


class _Upgrade(protocol.Protocol):
    """A WebSocket upgrade request by hand; fires with the status line of the answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.answer: defer.Deferred[bytes] = defer.Deferred()
        self.data = b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\r\n" in self.data and not self.answer.called:
            self.answer.callback(self.data.split(b"\r\n", 1)[0])
            self.transport.loseConnection()


async def upgrade(reactor, port: int, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    request = (b"GET /live/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               % (port, key)) + extra + b"\r\n"
    proto = _Upgrade(request)
    ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoints.connectProtocol(ep, proto)
    return await proto.answer.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_no_token_no_samples_with_the_token_the_view_works(reactor):
    async with status_stack(reactor, 1, auth_token=TOKEN) as (_d, service):
        url = service.status_page.url
        port = service.status_page.address[1]
        for path in ("", "status.json", "metrics", "live", "live/live.js"):
            code, _h, body = await fetch(reactor, url + path)
            assert code == 401 and b"/login" in body, path
        assert b" 401 " in await upgrade(reactor, port)
        assert b" 401 " in await upgrade(reactor, port, b"Authorization: Bearer wrong\r\n")
        bearer = {b"authorization": b"Bearer " + TOKEN.encode()}
        code, _h, body = await fetch(reactor, url + "status.json", headers=bearer)
        assert code == 200 and b'"backends"' in body
        code, _h, body = await fetch(reactor, url + "live", headers=bearer)
        assert code == 200 and b"<canvas" in body
        cookie = b"Cookie: " + COOKIE + b"=" + session_value(TOKEN) + b"\r\n"
        assert b" 101 " in await upgrade(reactor, port, cookie)
        assert b" 101 " in await upgrade(reactor, port, b"Authorization: Bearer "
                                         + TOKEN.encode() + b"\r\n")
        # the page's own origin is fine, another's is refused
        assert b" 403 " in await upgrade(reactor, port, cookie + b"Origin: http://evil.example\r\n")
        assert b" 101 " in await upgrade(
            reactor, port, cookie + b"Origin: http://127.0.0.1:%d\r\n" % port)


@pytest_twisted.ensureDeferred
async def test_the_status_site_serves_the_live_view_over_tls(reactor, tmp_path):
    from support.tls import make_pki
    from twisted.internet import ssl
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody

    pki = make_pki(tmp_path)
    async with status_stack(reactor, 1, auth_token=TOKEN,
                            status_listen=pki.listen()) as (_d, service):
        url = service.status_page.url
        assert url.startswith("https://127.0.0.1:")
        trust = ssl.Certificate.loadPEM(pki.ca.read_bytes())
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust))
        from twisted.web.http_headers import Headers

        response = await agent.request(b"GET", (url + "live").encode(),
                                       Headers({b"authorization": [b"Bearer " + TOKEN.encode()]}))
        body = await readBody(response)
        assert response.code == 200 and b"<canvas" in body
        response = await agent.request(b"GET", (url + "status.json").encode())
        await readBody(response)
        assert response.code == 401

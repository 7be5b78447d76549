"""``--live-process``: the proxy hands ``/live``'s viewers to a child process and sends it
the watched samples.  Real sockets, a real child: the frames still show the simulator's known
signal, the proxy's own hub serves nobody, the child gets samples only while someone watches,
an upgrade without the token never reaches the child, and a viewer that comes while the
child is down is served by the proxy itself."""

from __future__ import annotations

import os
import re

import pytest_twisted
from support.live_ws import view
from support.ops_http import fetch
from support.ops_stack import MACS, status_stack
from support.waiting import until
from test_live_view import RATE, check_signal, ws_url
from test_live_view_auth import TOKEN, upgrade
from twisted.internet import defer

from pybrid.client import connect


async def started(reactor, service) -> None:
    await until(reactor, lambda: service.live_process.ready, "the live process ready",
                seconds=30.0)


@pytest_twisted.ensureDeferred
async def test_the_child_serves_the_signal_and_the_proxy_serves_nobody(reactor):
    async with status_stack(reactor, 1, session_timeout=120.0,
                            live_process=True) as (_devices, service):
        child = service.live_process
        await started(reactor, service)
        assert service.live.remote == 0  # nobody watches: no samples to the child
        viewer = await view(reactor, ws_url(service), window=0.01, columns=1000,
                            channels=[0, 1])
        await until(reactor, lambda: child.viewers == 1, "the child counted the viewer")
        assert child.handed == 1 and child.served_here == 0
        assert service.live_hub.viewers == [] and service.live.watchers == 0
        assert service.live.remote == 1
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        running = client.run(30.0, channels=2, sample_rate=RATE, timeout=120)
        running.addErrback(lambda f: f.trap(defer.CancelledError))
        try:
            frame = await viewer.wait(lambda f: (f.meta.get("rows") or 0) > 5000
                                      and f.lo.shape == (2, 1000))
            assert check_signal(frame, [0, 1]) > 900
            assert frame.meta["run"]["active"] and frame.meta["carrier"] == "/" + MACS[0]
        finally:
            running.cancel()
            await client.close()
            viewer.transport.loseConnection()
        await viewer.closed
        await until(reactor, lambda: child.viewers == 0, "the child saw the viewer leave")
        assert service.live.remote == 0
        url = service.status_page.url
        _c, _h, metrics = await fetch(reactor, url + "metrics")
        assert re.search(rb'pybrid_proxy_live_viewers_total\{served_by="process"\} 1', metrics)
        sent = re.search(rb'pybrid_proxy_live_process_chunks_total\{outcome="sent"\} (\d+)',
                         metrics)
        assert sent and int(sent.group(1)) > 50  # the chunks the child drew
        _c, _h, page = await fetch(reactor, url)
        assert b"Live process" in page and b"handed over" in page


@pytest_twisted.ensureDeferred
async def test_no_token_never_reaches_the_child_the_token_does(reactor):
    async with status_stack(reactor, 1, auth_token=TOKEN,
                            live_process=True) as (_devices, service):
        await started(reactor, service)
        port = service.status_page.address[1]
        assert b" 401 " in await upgrade(reactor, port)
        assert service.live_process.handed == 0
        bearer = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        assert b" 101 " in await upgrade(reactor, port, bearer)
        assert service.live_process.handed == 1
        origin = b"Origin: http://evil.example\r\n"
        assert b" 403 " in await upgrade(reactor, port, bearer + origin)
        assert service.live_process.handed == 1


@pytest_twisted.ensureDeferred
async def test_with_the_child_gone_the_proxy_serves_the_viewer_and_the_child_comes_back(
        reactor):
    async with status_stack(reactor, 1, live_process=True) as (_devices, service):
        child = service.live_process
        child.backoff = 0.5
        await started(reactor, service)
        pid = child._transport.pid
        os.kill(pid, 9)
        await until(reactor, lambda: not child.ready, "the child's end noticed")
        viewer = await view(reactor, ws_url(service), window=0.01, columns=100, channels=[0])
        await until(reactor, lambda: len(service.live_hub.viewers) == 1, "served in-process")
        assert child.served_here == 1
        await until(reactor, lambda: child.ready and child.restarts == 1, "restarted",
                    seconds=30.0)
        second = await view(reactor, ws_url(service), window=0.01, columns=100, channels=[0])
        await until(reactor, lambda: child.viewers == 1, "the new child has the viewer")
        assert child._transport.pid != pid
        for v in (viewer, second):
            v.transport.loseConnection()
            await v.closed


@pytest_twisted.ensureDeferred
async def test_on_a_tls_status_port_the_proxy_serves_the_viewer_itself(reactor, tmp_path):
    """A TLS session cannot move to another process: the upgrade is served in-process."""
    import base64

    from support.tls import make_pki
    from test_live_view_auth import _Upgrade
    from twisted.internet import endpoints, ssl

    pki = make_pki(tmp_path)
    async with status_stack(reactor, 1, live_process=True,
                            status_listen=pki.listen()) as (_devices, service):
        await started(reactor, service)
        port = service.status_page.address[1]
        key = base64.b64encode(os.urandom(16))
        proto = _Upgrade(b"GET /live/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
        trust = ssl.Certificate.loadPEM(pki.ca.read_bytes())
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust)
        ep = endpoints.wrapClientTLS(options, endpoints.TCP4ClientEndpoint(
            reactor, "127.0.0.1", port))
        await endpoints.connectProtocol(ep, proto)
        assert b" 101 " in await proto.answer.addTimeout(10, reactor)
        assert service.live_process.served_here == 1 and service.live_process.handed == 0

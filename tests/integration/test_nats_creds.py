"""``--nats-creds`` against a real ``nats-server`` in operator (JWT) mode: the accounts come
from ``resolver: MEMORY`` with ``resolver_preload`` (made by :mod:`support.nats_jwt`)."""

from __future__ import annotations

import nkeys
import pytest_twisted
from support.nats_jwt import Key, Operator
from support.nats_servers import NatsServer, require_nats
from support.ops_http import fetch
from support.shm import require_shm
from support.waiting import until
from test_nats_export import same_samples
from test_nats_proxy import T, export, proxy
from twisted.internet import threads

require_shm()
require_nats()


@pytest_twisted.ensureDeferred
async def test_a_credentials_file_exports_and_an_unknown_user_is_on_the_status_page(
        reactor, tmp_path):
    """A user of the operator's JetStream account (a ``.creds`` file: its JWT and NKey seed)
    exports a run a consumer with the same credentials replays; a user signed by an account
    the server does not know is refused: the proxy serves its client's run as ever, the
    status page says "Authorization Violation" and nothing is stored."""
    from pybrid.monitor.nats_replay import fetch_run

    op = Operator.new()
    conf = op.server_conf(tmp_path / "operator.conf")
    good = op.user_creds(tmp_path / "exporter.creds")
    stranger = op.user_creds(tmp_path / "stranger.creds",
                             account=Key.new(nkeys.PREFIX_BYTE_ACCOUNT))
    server = await NatsServer(reactor, tmp_path / "js", extra=("-c", str(conf))).start()
    try:
        async with proxy(reactor, (server.url,), creds=str(stranger)) as (service, client):
            await until(reactor, lambda: "Authorization Violation"
                        in export(service).last_error, "the authorization error")
            refused_run = await client.run(0.1, channels=2,
                                           sample_rate=10_000).addTimeout(T, reactor)
            _c, _h, page = await fetch(reactor, service.status_page.url)
            refused = export(service)
        async with proxy(reactor, (server.url,), creds=str(good)) as (service, client):
            await until(reactor, lambda: export(service).state == "connected", "connected")
            result = await client.run(0.1, channels=2, sample_rate=10_000).addTimeout(T, reactor)
            await until(reactor, lambda: export(service).runs_ended >= 1, "the run's end")
            exported = export(service)
        replayed = await threads.deferToThread(lambda: fetch_run(
            server.url, result.run_id, idle_timeout=20.0, user_credentials=str(good)))
    finally:
        await server.stop()
    assert refused_run.complete  # served while the export was refused
    assert refused.state != "connected" and refused.stored == 0
    assert b"Authorization Violation" in page
    assert result.complete and exported.stored > 0 and not exported.last_error
    same_samples(replayed, result)

"""TLS on the client lane: ``--listen ssl:…`` with a CA and certificate made at test time.

A run over TLS through the proxy; a client trusting another CA fails with a clear message; a
plain-TCP client on the TLS port and a TLS client on a plain port fail cleanly and quickly.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import pytest_twisted
from support.proxy_multi import proxy, sim
from support.waiting import until

from pybrid.client import ClientError, ConnectError, RequestTimeout, connect
from pybrid.device import expected_decoded

try:
    import OpenSSL  # noqa: F401
    import service_identity  # noqa: F401
except ImportError:  # pragma: no cover - CI installs the tls extra (scripts/setup.sh)
    if os.environ.get("CI"):
        raise
    pytest.skip("the tls extra (pyOpenSSL, service_identity) is not installed",
                allow_module_level=True)

from support.tls import make_pki

T = 30.0
MAC = "00-00-00-00-00-21"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


@contextlib.asynccontextmanager
async def tls_proxy(reactor, pki):
    async with sim(reactor, first_mac=MAC) as device, \
            proxy(reactor, f"127.0.0.1:{device.port}", listen=pki.listen()) as service:
        yield service


@pytest.mark.parametrize("how", ["description", "option", "localhost"])
@pytest_twisted.ensureDeferred
async def test_a_run_over_tls_through_the_proxy(reactor, pki, how):
    async with tls_proxy(reactor, pki) as service:
        port = service.address[1]
        if how == "description":
            c = await connect(f"tls:127.0.0.1:{port}:ca={pki.ca}", reactor=reactor)
        elif how == "option":
            c = await connect("127.0.0.1", port, reactor=reactor, ca_cert=str(pki.ca))
        else:  # the DNS name in the certificate
            c = await connect(f"ssl:host=localhost:port={port}", reactor=reactor,
                              ca_cert=str(pki.ca))
        try:
            assert c.target.startswith("tls:")
            result = await c.run(0.02, channels=3, sample_rate=10_000).addTimeout(T, reactor)
            got = result[MAC]
            np.testing.assert_array_equal(got.samples, expected_decoded(0, 3, 0, 200, mac=MAC))
            assert got.complete and got.states[-1] == "DONE"
        finally:
            await c.close()


@pytest_twisted.ensureDeferred
async def test_a_client_trusting_another_ca_fails_clearly(reactor, pki):
    async with tls_proxy(reactor, pki) as service:
        with pytest.raises(ConnectError, match="TLS certificate verification failed"):
            await connect("127.0.0.1", service.address[1], reactor=reactor,
                          ca_cert=str(pki.other_ca))
        # the proxy's side of the failed handshake goes away too
        await until(reactor, lambda: service.scheduler.count == 0, "the session closed", 10)


@pytest_twisted.ensureDeferred
async def test_the_platform_trust_store_does_not_trust_a_private_ca(reactor, pki):
    async with tls_proxy(reactor, pki) as service:
        with pytest.raises(ConnectError, match="verification failed"):
            await connect("127.0.0.1", service.address[1], reactor=reactor, tls=True)


@pytest_twisted.ensureDeferred
async def test_plain_tcp_on_the_tls_port_fails_cleanly_and_tls_still_works(reactor, pki):
    async with tls_proxy(reactor, pki) as service:
        port = service.address[1]
        with pytest.raises(ClientError) as err:  # a long timeout: closed by the server
            await connect("127.0.0.1", port, reactor=reactor, request_timeout=120.0)
        assert not isinstance(err.value, (RequestTimeout, TimeoutError)), err.value
        c = await connect("127.0.0.1", port, reactor=reactor, ca_cert=str(pki.ca))
        await c.close()


@pytest_twisted.ensureDeferred
async def test_tls_on_a_plain_port_fails_clearly(reactor, pki):
    async with sim(reactor, first_mac=MAC) as device, \
            proxy(reactor, f"127.0.0.1:{device.port}") as service:
        with pytest.raises(ConnectError, match="TLS handshake"):
            await connect("127.0.0.1", service.address[1], reactor=reactor,
                          ca_cert=str(pki.ca), connect_timeout=2.0)


def test_a_bad_ca_file_is_a_clear_error(reactor, pki, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    failures = []
    connect("127.0.0.1", 1, reactor=reactor, ca_cert=str(bad)).addErrback(failures.append)
    [failure] = failures
    assert failure.check(ConnectError) and "holds no PEM certificate" in str(failure.value)

"""TLS targets: ssl:/tls: descriptions, CA files, and what a failed handshake is called."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from pybrid.client.tls import TlsTarget, handshake_error, is_tls_description, parse_tls_description


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("tls:proxy.lab:5733", TlsTarget("proxy.lab", 5733)),
        ("ssl:10.0.0.5", TlsTarget("10.0.0.5", 5732)),
        ("ssl:host=localhost:port=6000:ca=/etc/ca.pem",
         TlsTarget("localhost", 6000, "/etc/ca.pem")),
        (r"tls:h:1:ca=C\:/ca.pem", TlsTarget("h", 1, "C:/ca.pem")),
    ],
)
def test_descriptions(text, target):
    assert is_tls_description(text)
    assert parse_tls_description(text, 5732) == target


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tls:", "no host"),
        ("tls:h:http", "port must be a number"),
        ("tls:h:0", "port out of range"),
        ("tls:h:1:verify=no", "unknown option 'verify'"),
        ("tls:h:1:2", "too many fields"),
    ],
)
def test_bad_descriptions_are_clear(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_tls_description(text, 5732)


def test_plain_targets_are_not_tls():
    assert not is_tls_description("tcp:host=h:port=1")
    assert not is_tls_description("proxy.lab")


def test_handshake_errors_say_what_went_wrong():
    verify = Exception([("SSL routines", "", "certificate verify failed")])
    assert "TLS certificate verification failed (certificate verify failed)" in str(
        handshake_error("tls:h:1", verify))
    assert "does the server speak TLS" in str(handshake_error("tls:h:1", defer.TimeoutError()))
    other = Exception([("SSL routines", "", "wrong version number")])
    assert "TLS handshake failed (wrong version number)" in str(handshake_error("tls:h:1", other))

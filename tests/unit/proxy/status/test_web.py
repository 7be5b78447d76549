"""The status page's resources, its service inside the proxy, and its command-line options."""

from __future__ import annotations

import json

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from support.proxy_fakes import FakeReactor, connect_backend, connect_client
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.plugin import Options
from pybrid.proxy.service import ProxyService
from pybrid.proxy.status.collect import StatusCollector
from pybrid.proxy.status.web import StatusService, status_resource, url


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def proxy(reactor):
    config = ProxyConfig(backends=(Backend("127.0.0.1", 6000),), interface="127.0.0.1", port=0,
                         status_port=0)
    service = ProxyService(config, reactor)
    service.startService()
    connect_backend(reactor, index=0, macs=["00-00-5E-00-53-01"]).handshake()
    yield service
    service.stopService()


def get(root, path: bytes):
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.path = path
    body = getChildForRequest(root, request).render(request)
    headers = {k.decode().lower(): v[0].decode()
               for k, v in request.responseHeaders.getAllRawHeaders()}
    return request.responseCode or 200, headers, body


@pytest.fixture
def root(reactor, proxy):
    return status_resource(StatusCollector(proxy, reactor), refresh=2)


def test_page_is_html_with_a_strict_policy(root):
    code, headers, body = get(root, b"/")
    assert code == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    assert b"127.0.0.1:6000" in body and b"/00-00-5E-00-53-01" in body


def test_status_json_and_metrics(root, proxy):
    client = connect_client(proxy, port=41234)
    client.request("reset_command", pb.ResetCommand())
    code, headers, body = get(root, b"/status.json")
    assert code == 200 and headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["backends"][0]["name"] == "127.0.0.1:6000"
    assert data["active"]["peer"] == "127.0.0.1:41234"
    code, headers, body = get(root, b"/metrics")
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert b'pybrid_proxy_backend_up{backend="127.0.0.1:6000"} 1.0\n' in body
    assert b'pybrid_proxy_sessions{state="active"} 1.0\n' in body
    assert b"process_cpu_seconds_total" in body or b"python_info" in body  # the library's
    client.close()


def test_a_fresh_scrape_counts_every_log_level_from_zero(reactor, proxy):
    """Issue 21: ``pybrid_proxy_log_events_total`` has every level before the first warning."""
    from prometheus_client.parser import text_string_to_metric_families

    assert proxy.status_page is not None
    _, _, body = get(status_resource(proxy.status_page.collector), b"/metrics")
    events = {s.labels["level"]: s.value for f in text_string_to_metric_families(body.decode())
              if f.name == "pybrid_proxy_log_events" for s in f.samples
              if s.name.endswith("_total")}
    assert events == {"warn": 0, "error": 0, "critical": 0}
    Logger(namespace="pybrid.proxy.test").error("one error")
    _, _, body = get(status_resource(proxy.status_page.collector), b"/metrics")
    assert b'pybrid_proxy_log_events_total{level="error"} 1.0\n' in body
    assert b'pybrid_proxy_log_events_total{level="warn"} 0.0\n' in body
    from pybrid.proxy.status.events import counted_levels

    assert counted_levels() == ("warn", "error", "critical")


@pytest.mark.parametrize("path", [b"/nope", b"/status.json/more", b"/metrics/x"])
def test_other_paths_are_not_found(root, path):
    code, _, _ = get(root, path)
    assert code == 404


def test_a_failing_snapshot_is_a_500_not_a_crash(reactor):
    class Broken:
        def status(self):
            raise RuntimeError("boom")

    root = status_resource(StatusCollector(Broken(), reactor))
    code, _, body = get(root, b"/metrics")
    assert code == 500 and b"boom" not in body


def test_the_proxy_serves_the_page_on_its_own_port_and_collects_errors(reactor, proxy):
    assert isinstance(proxy.status_page, StatusService)
    ports = [(port, factory, interface) for port, factory, _, interface in reactor.tcpServers]
    assert (0, proxy.status_page.site, "127.0.0.1") in ports
    Logger(namespace="pybrid.proxy.test").warn("something {what}", what="odd")
    assert [e.text for e in proxy.status_page.events.entries] == ["something odd"]
    proxy.stopService()
    Logger(namespace="pybrid.proxy.test").warn("after the stop")
    assert len(proxy.status_page.events.entries) == 1  # no longer observing


def test_no_status_port_no_page(reactor):
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", 6000),)), reactor)
    assert service.status_page is None
    assert not [s for s in service if isinstance(s, StatusService)]


def test_url_brackets_ipv6():
    assert url("127.0.0.1", 8080) == "http://127.0.0.1:8080/"
    assert url("::1", 8080) == "http://[::1]:8080/"


# -- options -------------------------------------------------------------------------------


def parse(*args: str) -> ProxyConfig:
    options = Options(environ={})
    options.parseOptions(["-b", "127.0.0.1", *args])
    assert options.config is not None
    return options.config


def test_status_page_is_off_by_default_and_bound_to_localhost():
    config = parse()
    assert config.status_port is None and config.status_interface == "127.0.0.1"
    config = parse("--status-port", "8732")
    assert config.status_port == 8732 and config.status_interface == "127.0.0.1"
    config = parse("--status-port", "0", "--status-interface", "::1")
    assert (config.status_port, config.status_interface) == (0, "::1")


def test_the_status_port_takes_an_endpoint_string_too():
    config = parse("--status-port", "tcp:8733:interface=127.0.0.1")
    assert config.status_listen == "tcp:8733:interface=127.0.0.1"
    assert parse("--status-port", "8733").status_listen is None


@pytest.mark.parametrize("args, message", [
    (("--status-port", "web"), "--status-port must be an integer"),
    (("--status-port", "nope:1"), "--status-port 'nope:1'"),
    (("--status-port", "70000"), "--status-port must be between 0 and 65535"),
    (("--status-port", "1", "--status-interface", "localhost"),
     "--status-interface must be an IP address"),
])
def test_bad_status_options_are_usage_errors(args, message):
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)

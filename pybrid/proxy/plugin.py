"""``twistd pybrid-proxy``: command-line options and the service tree.

    twistd -n pybrid-proxy -b HOST[:PORT] [-b …] [--listen 0.0.0.0] [--port 5732]
           [--listen ENDPOINT (tcp:5732, ssl:5732:privateKey=…:certKey=…, systemd:…)]
           [--session-timeout 10] [--auth|--no-auth] [--max-sessions 8] [--debug] [--no-nudges]
           [--max-pending 1024] [--accepts-per-pass 100]
           [--client-buffer 64MiB] [--udp-rcvbuf 64MiB]
           [--monitor GROUP:PORT …] [--monitor-ttl 1] [--monitor-interface 127.0.0.1]
           [--shm-tap NAME …] [--live-process]
           [--nats URL … --nats-stream PYBRID --nats-replicas 1 …]
           [--advertise [--advertise-interface all|IP,…] [--advertise-name NAME]]

``-b`` takes a backend (``HOST[:PORT]``), comma-separated backends, or a backend file
(see :mod:`pybrid.proxy.backendfile`).  With ``--auth`` the bearer token clients must present is
read from the environment variable ``PYBRID_AUTHENTICATION``; it must be set and non-empty.
``--port 0`` binds a free port; the log line ``pybrid-proxy listening on HOST:PORT`` tells which.
``--listen`` also takes a Twisted server endpoint string (``tcp:5732``,
``ssl:5732:privateKey=key.pem:certKey=cert.pem``, ``systemd:domain=INET:index=0``; see
:mod:`pybrid.proxy.clients.listen`); ``--port`` then does not apply.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any, cast

from twisted.logger import Logger
from twisted.python import usage

from pybrid.commandline import TwistdOptions
from pybrid.discovery.options import AdvertiseOptionsMixin
from pybrid.logs import tag_syslog_priorities
from pybrid.malloc import keep_freed
from pybrid.monitor.options import MonitorOptionsMixin
from pybrid.proxy.backendfile.model import BackendFileError
from pybrid.proxy.backendfile.parse import parse_backend_args
from pybrid.proxy.clients.auth import weak_token_text
from pybrid.proxy.clients.listen import DEFAULT_ACCEPTS_PER_PASS, check_listen, is_endpoint
from pybrid.proxy.clients.pending import DEFAULT_MAX_PENDING
from pybrid.proxy.config import ProxyConfig, Timing
from pybrid.proxy.service import ProxyService
from pybrid.proxy.sizes import DEFAULT_CLIENT_BUFFER, DEFAULT_UDP_RCVBUF, format_size, parse_size
from pybrid.proxy.taps.nats.options import NatsOptionsMixin
from pybrid.version import version
from pybrid.wire.framing import DEFAULT_PORT
from pybrid.wire.interfaces import INetworkReactor

AUTH_ENV = "PYBRID_AUTHENTICATION"

log = Logger()


class Options(AdvertiseOptionsMixin, MonitorOptionsMixin, NatsOptionsMixin, TwistdOptions):
    """Options of ``twistd pybrid-proxy``; ``postOptions`` validates and builds ``config``."""

    program = "pybrid-proxy"
    synopsis = "-b HOST[:PORT] [-b ...] [options]"
    longdesc = (
        "Time-share one or more LUCIDAC/REDAC devices between TCP clients: one active "
        "session, a FIFO queue of waiting ones, run data merged from every backend."
    )
    optParameters = [
        ["listen", "l", "0.0.0.0",
         "Interface (IP address) to listen on for clients, or a Twisted server endpoint "
         "string: tcp:5732, ssl:5732:privateKey=KEY.pem:certKey=CERT.pem (TLS), "
         "systemd:domain=INET:index=0 (socket activation)."],
        ["port", "p", None,
         f"TCP port for clients with --listen HOST (0: any free port; default {DEFAULT_PORT})."],
        ["session-timeout", None, "10", "Seconds a session may stay idle before it is closed."],
        ["max-sessions", None, "8", "Most sessions (active + queued) at once."],
        ["max-pending", None, str(DEFAULT_MAX_PENDING),
         "Most connections at once that have not sent a request yet (or, with --auth, not "
         "authenticated); past it the oldest is closed (a connect flood)."],
        ["accepts-per-pass", None, str(DEFAULT_ACCEPTS_PER_PASS),
         "Most connections accepted per reactor pass; the rest of a burst waits in the "
         "kernel's listen queue."],
        ["status-port", None, None,
         "Serve a status page (HTML, /status.json, /metrics, /live) on this TCP port "
         "(0: any free port) or a Twisted server endpoint string (ssl:8733:privateKey=…:"
         "certKey=… for TLS). Default: no status page."],
        ["status-interface", None, "127.0.0.1", "Interface (IP address) of the status page."],
        ["client-buffer", None, format_size(DEFAULT_CLIENT_BUFFER).replace(" ", ""),
         "Bytes of run data queued for a client that reads too slowly before its run is failed "
         "(e.g. 64MiB, 512KiB, or bytes)."],
        ["udp-rcvbuf", None, format_size(DEFAULT_UDP_RCVBUF).replace(" ", ""),
         "Receive buffer asked for each backend's UDP intake socket (the kernel may cap it)."],
        ["shm-write-timeout", None, "5",
         "Seconds a --shm-tap waits for its reader to free space before it detaches."],
        ["shm-writer", None, "inline",
         "How --shm-tap writes: 'inline' (non-blocking, on the reactor thread) or 'thread'."],
        ["shm-yield", None, "50",
         "The --shm-tap taps (and --nats) skip run data while the backends' UDP intake is this "
         "many percent full, until it is half that again: the client's data first (0: never; "
         "the skipped chunks are counted)."],
    ]
    optFlags = [
        ["debug", None, "Log every message (per-message detail)."],
        ["live-process", None,
         "Serve the /live view's viewers from a child process: the proxy checks each viewer "
         "(auth, Origin) and hands its connection over, and sends the child the watched "
         "samples (needs --status-port; a TLS status port is served in-process)."],
        ["no-nudges", None,
         "Send no unsolicited generic pongs after a cached extract or the UDP refusal (they "
         "speed up the reference client's connect; see docs/proxy.md)."],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.environ = os.environ if environ is None else environ
        self["backends"] = []
        self["auth"] = False
        self["shm-taps"] = []
        self.config: ProxyConfig | None = None
        self.warnings: tuple[str, ...] = ()

    def opt_backend(self, value: str) -> None:
        """Backend device HOST[:PORT], several comma-separated, or a backend file (repeatable)."""
        self["backends"].append(value)

    opt_b = opt_backend

    def opt_shm_tap(self, value: str) -> None:
        """Write the run data into the ZeroBuffer NAME once a reader created it (repeatable;
        needs the [shm] extra; see docs/monitors.md)."""
        self["shm-taps"].append(value)

    def opt_auth(self) -> None:
        """Require clients to authenticate with the token in PYBRID_AUTHENTICATION."""
        self["auth"] = True

    def opt_no_auth(self) -> None:
        """Do not require authentication (the default)."""
        self["auth"] = False

    def postOptions(self) -> None:
        if not self["backends"]:
            raise usage.UsageError("at least one backend is required: -b HOST[:PORT]")
        try:
            backend_file = parse_backend_args(self["backends"])
        except BackendFileError as e:
            raise usage.UsageError(f"bad backend file:\n{e}") from None
        interface, port, listen = _listen_options(self)
        timeout = _number("--session-timeout", self["session-timeout"], float, 0.001, 1e6)
        max_sessions = _number("--max-sessions", self["max-sessions"], int, 1, 100_000)
        max_pending = _number("--max-pending", self["max-pending"], int, 1, 1_000_000)
        accepts = _number("--accepts-per-pass", self["accepts-per-pass"], int, 1, 100_000)
        status_port, status_interface, status_listen = _status_options(self)
        client_buffer = _size("--client-buffer", self["client-buffer"], 4096)
        udp_rcvbuf = _size("--udp-rcvbuf", self["udp-rcvbuf"], 4096)
        try:
            monitor = self.monitor_config()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        nats = self.nats_config()
        live_process = bool(self["live-process"])
        if live_process and status_port is None:
            raise usage.UsageError("--live-process serves /live: it needs --status-port")
        shm_taps = _shm_taps(self["shm-taps"])
        advertise = self.advertise_config(interface if listen is None else listen)
        shm_timeout = _number("--shm-write-timeout", self["shm-write-timeout"], float, 0.01, 3600)
        shm_yield = _number("--shm-yield", self["shm-yield"], float, 0, 100)
        token = None
        if self["auth"]:
            token = self.environ.get(AUTH_ENV, "")
            if not token:
                raise usage.UsageError(
                    f"--auth needs the clients' token in the environment variable {AUTH_ENV}, "
                    "which is not set (or empty)"
                )
            weak = weak_token_text(AUTH_ENV, token)
            if weak is not None:
                raise usage.UsageError(weak)
        self.warnings = backend_file.warnings
        self.config = ProxyConfig(
            backends=backend_file.backends,
            wires=backend_file.wires,
            interface=interface,
            port=port,
            listen=listen,
            session_timeout=float(timeout),
            max_sessions=int(max_sessions),
            max_pending=int(max_pending),
            accepts_per_pass=int(accepts),
            auth_token=token,
            debug=bool(self["debug"]),
            status_port=status_port,
            status_interface=status_interface,
            status_listen=status_listen,
            client_buffer=client_buffer,
            udp_rcvbuf=udp_rcvbuf,
            monitor=monitor,
            shm_taps=shm_taps,
            shm_write_timeout=float(shm_timeout),
            shm_writer=_choice("--shm-writer", self["shm-writer"], ("inline", "thread")),
            shm_yield=shm_yield / 100,
            nats=nats,
            live_process=live_process,
            timing=Timing(nudge_delays=()) if self["no-nudges"] else Timing(),
            advertise=advertise,
        )


def _number(name: str, text: str, kind: Any, low: float, high: float) -> float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise usage.UsageError(f"{name} must be {what}, not {text!r}") from None
    if not low <= value <= high or value != value:
        raise usage.UsageError(f"{name} must be between {low:g} and {high:g}, not {text}")
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise usage.UsageError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _shm_taps(names: list[str]) -> tuple[str, ...]:
    """``--shm-tap`` names, validated (pybrid.proxy.taps.shm.options)."""
    if not names:
        return ()
    from pybrid.proxy.taps.shm.options import ShmOptionError, parse_shm_taps

    try:
        return parse_shm_taps(names)
    except ShmOptionError as e:
        raise usage.UsageError(str(e)) from None


def _size(name: str, text: str, minimum: int) -> int:
    try:
        return parse_size(text, name, minimum)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def _listen_options(options: Options) -> tuple[str, int, str | None]:
    """``--listen``/``--port``: (interface, port, endpoint description or None)."""
    text = options["listen"].strip()
    if is_endpoint(text):
        if options["port"] is not None:
            raise usage.UsageError(
                f"--port goes with --listen HOST; the endpoint {text!r} names its own port")
        try:
            return "", 0, check_listen(text)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise usage.UsageError(
            f"--listen must be an IP address or a Twisted endpoint string such as tcp:5732, "
            f"not {text!r}") from None
    port = options["port"] if options["port"] is not None else str(DEFAULT_PORT)
    return text, int(_number("--port", port, int, 0, 65535)), None


def _status_options(options: Options) -> tuple[int | None, str, str | None]:
    """``--status-port`` (None: off), ``--status-interface`` and the endpoint string
    ``--status-port`` gave instead of a number (None), validated."""
    interface = options["status-interface"]
    text = (options["status-port"] or "").strip()
    if is_endpoint(text):
        try:
            return 0, interface, check_listen(text)
        except ValueError as e:
            raise usage.UsageError(str(e).replace("--listen", "--status-port")) from None
    try:
        ipaddress.ip_address(interface)
    except ValueError:
        raise usage.UsageError(
            f"--status-interface must be an IP address, not {interface!r}") from None
    if options["status-port"] is None:
        return None, interface, None
    return (int(_number("--status-port", options["status-port"], int, 0, 65535)), interface,
            None)


def makeService(options: Options) -> ProxyService:
    from twisted.internet import reactor

    config = options.config
    if config is None:  # postOptions was not run (direct use)
        options.postOptions()
        config = options.config
    assert config is not None
    tag_syslog_priorities()
    log.info("pybrid-proxy {version} (pybrid-twisted) starting", version=version())
    # taps hold 10 ms of datagrams: glibc would return and re-fault that memory every flush
    log.info("heap: {how}", how=keep_freed(os.environ))
    for warning in options.warnings:
        log.warn("backends: {warning}", warning=warning)
    return ProxyService(config, cast(INetworkReactor, reactor))

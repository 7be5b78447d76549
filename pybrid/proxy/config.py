"""The proxy's validated configuration: what :mod:`pybrid.proxy.plugin` hands to the service.

Nothing below :func:`pybrid.proxy.plugin.makeService` reads the options dict; every object gets
the values it needs from these frozen records.
"""

from __future__ import annotations

from typing import Any

import attrs

from pybrid.discovery.options import AdvertiseConfig
from pybrid.monitor.options import MonitorConfig
from pybrid.proxy.backendfile.model import Backend, Wire
from pybrid.proxy.clients.listen import DEFAULT_ACCEPTS_PER_PASS
from pybrid.proxy.clients.pending import DEFAULT_MAX_PENDING
from pybrid.proxy.sizes import DEFAULT_CLIENT_BUFFER, DEFAULT_UDP_RCVBUF
from pybrid.wire.framing import DEFAULT_PORT


@attrs.frozen
class Timing:
    """Every wait of the proxy, in seconds of the injected clock."""

    #: A backend's reply to a request (also the client-visible request timeout).
    request_timeout: float = 5.0
    #: TCP connect to a backend.
    connect_timeout: float = 5.0
    #: Liveness ping to each backend.
    ping_interval: float = 0.5
    #: A backend silent this long is unhealthy (and its connection is dropped).
    unhealthy_after: float = 2.0
    #: Reconnect backoff: first delay, growth factor and ceiling, and the fraction by which
    #: each delay is spread at random (0: none); see pybrid.proxy.backend.model.backoff_delay.
    reconnect_initial: float = 0.5
    reconnect_factor: float = 1.5
    reconnect_max: float = 5.0
    reconnect_jitter: float = 0.0
    #: A generic ping arriving first within this window is a standalone ping.
    ping_window: float = 0.005
    #: A standalone-ping connection answers further pings and closes after this long without
    #: one (0: close right after the first pong, as the reference proxy does).
    ping_linger: float = 0.5
    #: A client whose queue overflowed (its data dropped, the error and its runs' ERROR states
    #: queued instead) is aborted if it has not taken them this long after the overflow; only
    #: those few frames and Twisted's buffer wait meanwhile.
    overflow_close: float = 60.0
    #: Queued sessions time out only after ``session_timeout`` plus this without a request
    #: (the reference client resends a busy request every 2 s plus its round trip); promotion
    #: restarts the timer with the same allowance.
    queued_grace: float = 3.0
    #: At shutdown, the wait for the sessions' last bytes (error states, the message) to be
    #: taken before the lanes stop and the reactor drops what is left.
    shutdown_flush: float = 1.0
    #: At shutdown mid-run, the wait for the active client to close after its ERROR states
    #: (the reference client drops states that arrive right before a close; on a busy host it
    #: took more than ``degrade_grace`` and then waited for its run forever).
    shutdown_grace: float = 5.0
    #: Wait for a backend's reply to the stop_run sent when a session ends mid-run.
    stop_timeout: float = 2.0
    #: After a cached extract to an idle session and after the UDP refusal, generic pongs go
    #: out at these delays until the client's next frame ("nudges", see pybrid.proxy.clients.front).
    nudge_delays: tuple[float, ...] = (0.001, 0.003, 0.006, 0.012, 0.025, 0.05)
    #: Multi-backend runs (pybrid.proxy.runs.barrier): every carrier must reach TAKE_OFF this long
    #: after the start was accepted, and DONE ``ic_time + op_time + run_grace`` after that.
    take_off_timeout: float = 10.0
    run_grace: float = 10.0
    #: A backend that refused UDP (another proxy, most likely) and got no request for this
    #: long gets a cached-extract request, so that its idle timeout never closes our lane
    #: (checked at every ping, so at most every ``ping_interval``; 0: never).
    keepalive_interval: float = 2.0
    #: A backend lost mid-run: the session is closed this long after the ERROR states written
    #: for the backend's carriers (the reference client drops what arrives right before a close).
    degrade_grace: float = 0.5
    #: A backend answering the start-up handshake with busy_response (a proxy serving another
    #: client) is asked again after this delay, keeping our place in its queue.
    busy_retry: float = 1.0
    #: A start_run arriving while the session's previous run is still going on some backend
    #: waits at most this long for it to finish everywhere, then is refused with an error
    #: naming the run and the backends (pybrid.proxy.runs.dispatch); kept well below
    #: ``request_timeout``, which the forwarded start gets only what is left of.
    start_hold: float = 2.0


@attrs.frozen
class ProxyConfig:
    """Everything ``twistd pybrid-proxy`` was told on its command line, validated."""

    backends: tuple[Backend, ...]
    wires: tuple[Wire, ...] = ()
    interface: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    #: ``--listen ENDPOINT``: a Twisted server endpoint description for the client lane
    #: (``tcp:…``, ``ssl:…``, ``systemd:…``); None: plain TCP on ``interface``:``port``.
    listen: str | None = None
    session_timeout: float = 10.0
    max_sessions: int = 8
    #: ``--max-pending``: connections without a first frame (or auth) at once; past it the
    #: oldest is closed (pybrid.proxy.clients.pending).
    max_pending: int = DEFAULT_MAX_PENDING
    #: ``--accepts-per-pass``: connections the listening port accepts per reactor pass at most
    #: (pybrid.proxy.clients.listen).
    accepts_per_pass: int = DEFAULT_ACCEPTS_PER_PASS
    #: The bearer token clients must present, or None without ``--auth``.
    auth_token: str | None = None
    debug: bool = False
    timing: Timing = attrs.field(factory=Timing)
    #: ``--udp-rcvbuf``: receive buffer requested for each backend's intake socket (the kernel
    #: may cap it).
    udp_rcvbuf: int = DEFAULT_UDP_RCVBUF
    #: ``--client-buffer``: bytes queued for one client before its run is failed.
    client_buffer: int = DEFAULT_CLIENT_BUFFER
    #: ``--monitor``, ``--monitor-ttl``, ``--monitor-interface``: the multicast tap (no groups:
    #: no tap).
    monitor: MonitorConfig = attrs.field(factory=MonitorConfig)
    #: ``--status-port``: TCP port of the status page (0: any free port), None: no page.
    status_port: int | None = None
    #: ``--status-interface``: IP address the status page binds to.
    status_interface: str = "127.0.0.1"
    #: ``--status-port ENDPOINT``: a server endpoint string (``ssl:…``) instead of the port
    #: and interface, or None.
    status_listen: str | None = None
    #: ``--shm-tap NAME`` (repeatable) and ``--shm-write-timeout``: shared-memory taps
    #: (:mod:`pybrid.proxy.taps.shm`).
    shm_taps: tuple[str, ...] = ()
    shm_write_timeout: float = 5.0
    shm_writer: str = "inline"
    #: ``--shm-yield``: the intakes' backlog (0 … 1) from which the taps skip run data, 0: never.
    shm_yield: float = 0.5
    #: ``--live-process``: a child process serves ``/live``'s viewers
    #: (pybrid.proxy.taps.live.child); False: the proxy serves them itself.
    live_process: bool = False
    #: ``--advertise`` (pybrid.discovery): announce the proxy by mDNS; None: do not.
    advertise: AdvertiseConfig | None = None
    #: ``--nats URL`` and ``--nats-*``: the JetStream export's bridge child
    #: (:class:`pybrid.proxy.taps.nats.child.NatsExportConfig`; its shm tap is in ``shm_taps``).
    nats: Any = None

"""The proxy's ``--nats*`` options (a usage.Options mixin) → :class:`NatsExportConfig`."""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python import usage

from pybrid.proxy.taps.nats.child import DEFAULT_NICE, NatsExportConfig
from pybrid.wire import nats_format as N


class NatsOptionsMixin:
    """Adds ``--nats URL`` (repeatable) and its ``--nats-*`` settings to ``twistd
    pybrid-proxy``.  Mix in before ``usage.Options``; :meth:`nats_config` validates."""

    optFlags: list[Any] = [
        ["nats-sched-idle", None, "Run the export's bridge under SCHED_IDLE (Linux): it only "
         "gets CPU time no other process wants (default: --nats-nice only)."],
    ]
    optParameters: list[Any] = [
        ["nats-stream", None, N.DEFAULT_STREAM, "JetStream stream of the export (created if "
         "missing)."],
        ["nats-prefix", None, N.DEFAULT_PREFIX, "Subject prefix of the export."],
        ["nats-name", None, None, "This proxy's name in the subjects (default: host name)."],
        ["nats-max-bytes", None, "1GiB", "Stream retention: bytes kept (oldest go first)."],
        ["nats-max-age", None, "7d", "Stream retention: age kept (s, m, h or d)."],
        ["nats-replicas", None, "1", "Stream replicas (1-5; a cluster of as many servers)."],
        ["nats-nice", None, str(DEFAULT_NICE), "The export bridge's nice value (0-19): the higher, "
         "the less CPU it takes from the proxy on a busy host (and the more it may drop)."],
        ["nats-queue", None, "10000", "Chunks the export holds for NATS before it drops new "
         "ones (counted)."],
        ["nats-user", None, None, "NATS user (password: $PYBRID_NATS_PASSWORD; a token: "
         "$PYBRID_NATS_TOKEN)."],
        ["nats-creds", None, None, "NATS credentials file (JWT and NKey)."],
        ["nats-nkey", None, None, "NATS NKey seed file."],
        ["nats-tls-ca", None, None, "CA certificates that verify the NATS server."],
        ["nats-tls-cert", None, None, "Client certificate for NATS (mutual TLS)."],
        ["nats-tls-key", None, None, "Key of --nats-tls-cert."],
    ]

    def opt_nats(self, value: str) -> None:
        """Stream every run into NATS JetStream at URL, e.g. nats://nats.lab:4222 (repeat for
        a cluster's seed servers; see docs/nats.md)."""
        if "://" not in value:
            raise usage.UsageError(f"--nats needs a URL such as nats://HOST:4222, not {value!r}")
        self.setdefault("nats", []).append(value)  # type: ignore[attr-defined]

    def nats_config(self) -> NatsExportConfig | None:
        """The validated settings, or None without ``--nats``."""
        from pybrid.proxy.taps.nats.cli import duration, host_token, size

        opts: Any = self
        servers = tuple(opts.get("nats", []))
        if not servers:
            return None

        def check(name: str, fn: Any) -> Any:
            try:
                return fn(opts[name])
            except (argparse.ArgumentTypeError, N.NatsFormatError, ValueError) as e:
                raise usage.UsageError(f"--{name}: {e}") from None

        replicas = check("nats-replicas", int)
        queue = check("nats-queue", int)
        nice = check("nats-nice", int)
        if not 0 <= nice <= 19:
            raise usage.UsageError(f"--nats-nice must be 0 to 19, not {nice}")
        if not 1 <= replicas <= 5:
            raise usage.UsageError(f"--nats-replicas must be 1 to 5, not {replicas}")
        if queue < 1:
            raise usage.UsageError(f"--nats-queue must be at least 1, not {queue}")
        name = opts["nats-name"] or host_token()
        return NatsExportConfig(
            servers=servers,
            proxy_name=check("nats-name", lambda _v: N.check_name(name, "proxy name")),
            stream=check("nats-stream", lambda v: N.check_name(v, "stream")),
            prefix=check("nats-prefix", lambda v: N.check_name(v, "prefix")),
            max_bytes=check("nats-max-bytes", size), max_age=check("nats-max-age", duration),
            replicas=replicas, queue=queue, nice=nice, sched_idle=bool(opts["nats-sched-idle"]),
            user=opts["nats-user"],
            creds=opts["nats-creds"], nkey=opts["nats-nkey"], tls_ca=opts["nats-tls-ca"],
            tls_cert=opts["nats-tls-cert"], tls_key=opts["nats-tls-key"])

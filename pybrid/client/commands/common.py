"""What the client commands (``pybrid-ping``, ``pybrid-extract``, ``pybrid-reset``) share with
``pybrid-run``: connection options, the token variables, range-checked times, one session body
with the same exit codes and Ctrl-C handling.

Exit codes (the scheme of ``pybrid-run``): 0 done, 1 other failure, 2 cannot connect, 3 device
busy, 5 a timeout (a request or a ping got no answer), 64 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from twisted.internet import defer, task

from pybrid.client.commands.exits import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    exit_code_for,
    start_logging,
)
from pybrid.client.commands.options import TOKEN_ENVS, positive, token_from_env
from pybrid.client.computer import Computer
from pybrid.client.connect import BUSY_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_PORT, connect
from pybrid.client.errors import ClientError, RequestTimeout
from pybrid.commandline import Parser
from pybrid.discovery.browse import resolve_host

EPILOG = (
    "exit codes: 0 done, 1 other failure, 2 cannot connect, 3 device busy, 5 timeout,\n"
    "64 bad command line, 130 interrupted.\n"
    f"The bearer token may also come from ${TOKEN_ENVS[0]} or ${TOKEN_ENVS[1]}.\n"
)


def parser(prog: str, description: str, epilog: str = EPILOG) -> Parser:
    """The options every client command shares (host, port, token, TLS, timeouts, -q, -v)."""
    p = Parser(prog=prog, description=description, epilog=epilog, usage_status=EXIT_USAGE,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host", nargs="?", default=None,
                   help="device or proxy: NAME, NAME:PORT, or a Twisted endpoint "
                   "string such as tcp:host=10.0.0.5:port=5732, or tls:NAME:PORT[:ca=FILE]; "
                   "none: discover it (mDNS, the [discovery] extra)")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--token", help="bearer token for a proxy that requires one")
    p.add_argument("--connect-timeout", type=positive(float), default=CONNECT_TIMEOUT,
                   metavar="SECONDS")
    p.add_argument("--tls", action="store_true",
                   help="connect with TLS, verifying the proxy's certificate (system CAs)")
    p.add_argument("--ca-cert", metavar="FILE.pem",
                   help="trust this CA (PEM) for TLS instead of the system's CAs (implies --tls)")
    p.add_argument("--busy-timeout", type=positive(float), default=BUSY_TIMEOUT, metavar="SECONDS",
                   help="how long to wait for a busy device (default 60)")
    p.add_argument("--busy-retry", type=positive(float), default=0.2, metavar="SECONDS",
                   help="retry interval while busy (default 0.2)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log protocol details")
    return p


Step = Callable[[defer.Deferred[Any]], Awaitable[Any]]
Body = Callable[[Computer, Step, Callable[..., None]], Awaitable[int]]


def fail(prog: str, code: int, message: str) -> NoReturn:
    sys.stderr.write(f"{prog}: {message}\n")
    raise SystemExit(code)


async def session(reactor: Any, prog: str, args: argparse.Namespace, body: Body, *,
                  data_lane: str = "auto", interrupted_text: str = "interrupted") -> int:
    """Connect, run ``body(computer, step, say)``, close; map errors and Ctrl-C to exit codes.

    ``step(d)`` awaits one Deferred that Ctrl-C (reactor shutdown) cancels.
    """
    start_logging(args.verbose, prog)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    current: list[defer.Deferred[Any]] = []
    computer: list[Computer] = []
    interrupted = [False]

    def on_shutdown() -> defer.Deferred[Any] | None:
        interrupted[0] = True
        for d in current:
            d.cancel()
        if computer and computer[0].connected:
            return computer[0].close().addTimeout(2.0, reactor).addErrback(lambda _f: None)
        return None

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)

    async def step(d: defer.Deferred[Any]) -> Any:
        current[:] = [d]
        try:
            return await d
        finally:
            current.clear()

    token = args.token if args.token is not None else token_from_env()
    try:
        host, port, tls = await step(defer.ensureDeferred(resolve_host(
            reactor, args.host, args.port, sys.stdin.isatty(), say)))
        c = await step(connect(
            host, port, reactor=reactor, auth_token=token,
            connect_timeout=args.connect_timeout, busy_retry=args.busy_retry,
            busy_timeout=args.busy_timeout, data_lane=data_lane, tls=args.tls or tls,
            ca_cert=args.ca_cert,
        ))
        computer.append(c)
        code = await body(c, step, say)
        await c.close()
        return code
    except defer.CancelledError:
        if interrupted[0]:
            fail(prog, EXIT_INTERRUPTED, interrupted_text)
        raise
    except (ClientError, RequestTimeout, defer.TimeoutError) as e:
        if computer and computer[0].connected:
            await computer[0].close()
        fail(prog, exit_code_for(e), str(e))


def main_for(prog: str, command: Callable[[Any, list[str]], Awaitable[int]],
             argv: list[str] | None) -> None:
    """Console entry point: ``command(reactor, argv)`` under ``task.react``."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    async def _main(reactor: Any) -> None:
        code = await command(reactor, args)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.ensureDeferred(_main(reactor)))

"""``pybrid-run``: connect, optionally configure from an ``.apb``, run, save ``.npz`` or stream
to ``.h5`` (and plot a PNG).

Exit codes (also in ``docs/client.md`` and ``--help``):

====  ====================================================================
0     the run completed (a warning on stderr if samples are missing)
1     any other failure (error reply, unreadable .apb, cannot write output)
2     cannot connect (refused, unreachable, unknown host, connect timeout)
3     the device stayed busy for ``--busy-timeout`` seconds
4     the run failed on the device (ERROR state)
5     a timeout: a request got no reply, or the run did not finish
64    bad command line
130   interrupted (Ctrl-C / SIGTERM): the run was stopped
====  ====================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, NoReturn

import numpy as np
from twisted.internet import defer, task
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

from pybrid.client.apb import load_apb
from pybrid.client.commands.options import (
    IC_TIME_RANGE,
    OP_TIME_RANGE,
    seconds_in,
    token_from_env,
)
from pybrid.client.connect import DEFAULT_PORT, connect
from pybrid.client.errors import (
    ClientError,
    ConnectError,
    DeviceBusyError,
    PingTimeout,
    RequestTimeout,
    RunError,
    RunTimeout,
)
from pybrid.client.plot import plot_h5, save_plot
from pybrid.client.progress import make_progress
from pybrid.client.results import Chunk, RunResult, expected_samples
from pybrid.client.topology import describe_carriers, describe_data_lane
from pybrid.recording.hdf5 import H5Recorder
from pybrid.version import install_hint, version_line

EXIT_OK, EXIT_FAILED, EXIT_CONNECT, EXIT_BUSY, EXIT_RUN, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
EXIT_USAGE, EXIT_INTERRUPTED = 64, 130
TOKEN_ENV = "PYBRID_AUTH_TOKEN"
PROG = "pybrid-run"

EPILOG = """\
exit codes: 0 done, 1 other failure, 2 cannot connect, 3 device busy,
4 run failed on the device, 5 timeout, 64 bad command line, 130 interrupted.
The bearer token may also come from $PYBRID_AUTH_TOKEN or $PYBRID_AUTHENTICATION.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Run a computation on a LUCIDAC/REDAC (or through a proxy) and save the "
        "samples.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=version_line(PROG))
    p.add_argument("host", help="device or proxy: NAME, NAME:PORT, a Twisted endpoint "
                   "string such as tcp:host=10.0.0.5:port=5732, or tls:NAME:PORT[:ca=FILE]")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("-c", "--config", metavar="FILE.apb",
                   help="configure the circuit from this .apb file before the run")
    p.add_argument("--reset", action="store_true",
                   help="reset the circuit (keeping calibration) before configuring")
    p.add_argument("--calibrate", action="store_true", help="calibrate before the run")
    p.add_argument("-t", "--op-time", type=seconds_in(*OP_TIME_RANGE, "--op-time"), default=0.01,
                   metavar="SECONDS", help="OP time in seconds (default 0.01)")
    p.add_argument("--ic-time", type=seconds_in(*IC_TIME_RANGE, "--ic-time"), default=100e-6,
                   metavar="SECONDS", help="IC time in seconds, not nanoseconds (default 0.0001)")
    p.add_argument("-n", "--channels", type=_positive(int), default=8,
                   help="ADC channels to sample (default 8)")
    p.add_argument("-r", "--sample-rate", type=_positive(int), default=10_000, metavar="HZ",
                   help="samples per second (default 10000)")
    p.add_argument("-o", "--output", metavar="FILE.npz|FILE.h5",
                   help="where to save the samples (default run-<run id>.npz); a .h5 file is "
                   "written while the run streams (needs h5py: the 'hdf5' extra)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also plot the channels into a PNG (needs matplotlib: the 'plot' extra)")
    p.add_argument("--tls", action="store_true",
                   help="connect with TLS; the server's certificate and name are verified")
    p.add_argument("--ca-cert", metavar="FILE.pem",
                   help="trust this CA (PEM) for TLS instead of the system's CAs (implies --tls)")
    p.add_argument("--token", help="bearer token for a proxy that requires one "
                   "(or $PYBRID_AUTH_TOKEN, $PYBRID_AUTHENTICATION)")
    p.add_argument("--data-lane", choices=("auto", "udp", "tcp"), default="auto",
                   help="auto: UDP with TCP fallback (default); udp: require UDP; tcp: never UDP")
    p.add_argument("--connect-timeout", type=_positive(float), default=5.0, metavar="SECONDS")
    p.add_argument("--busy-timeout", type=_positive(float), default=60.0, metavar="SECONDS",
                   help="how long to wait for a busy device (default 60)")
    p.add_argument("--busy-retry", type=_positive(float), default=0.2, metavar="SECONDS",
                   help="retry interval while busy (default 0.2)")
    p.add_argument("--timeout", type=_positive(float), metavar="SECONDS",
                   help="give up on the run after this long (default ic + op + 10 s)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     help="always show the progress line")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="never show it (default: only on a terminal)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log protocol details")
    return p


def _start_logging(verbose: bool, prog: str = PROG) -> None:
    level = LogLevel.debug if verbose else LogLevel.warn

    @implementer(ILogObserver)
    def write(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if event.get("log_failure") is not None and verbose:
            text += "\n" + event["log_failure"].getTraceback()
        sys.stderr.write(f"{prog}: {event['log_level'].name}: {text}\n")

    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(write, [predicate])], redirectStandardIO=False
    )


def _fail(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: {message}\n")
    raise SystemExit(code)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConnectError):
        return EXIT_CONNECT
    if isinstance(exc, DeviceBusyError):
        return EXIT_BUSY
    if isinstance(exc, RunError):
        return EXIT_RUN
    if isinstance(exc, (RunTimeout, RequestTimeout, PingTimeout, defer.TimeoutError)):
        return EXIT_TIMEOUT
    return EXIT_FAILED


def _save(result: RunResult, path: str, meta: dict[str, Any]) -> None:
    arrays = result.arrays()
    run_meta = result.meta.attributes() if result.meta is not None else {}
    meta = dict(run_meta, **meta, run_id=result.run_id, data_lane=result.data_lane,
                carriers=list(result.carriers), elapsed=result.elapsed,
                states=[[s.at, s.carrier, s.old, s.new, s.reason] for s in result.states])
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def _is_h5(path: str | None) -> bool:
    return bool(path) and os.path.splitext(str(path))[1].lower() in (".h5", ".hdf5")


def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        _fail(EXIT_FAILED, f"cannot write {path}: directory {parent} is missing or not writable")


async def run_command(reactor: Any, argv: list[str]) -> int:
    """The body of ``pybrid-run``; returns the exit code (raises SystemExit on errors)."""
    args = build_parser().parse_args(argv)
    _start_logging(args.verbose)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail(EXIT_FAILED, "--plot needs matplotlib: " + install_hint("plot", "matplotlib"))
    recorder: H5Recorder | None = None
    if _is_h5(args.output):
        try:
            import h5py  # noqa: F401
        except ImportError:
            _fail(EXIT_FAILED, "-o FILE.h5 needs h5py: " + install_hint("hdf5", "h5py"))
        _check_writable(args.output)
        recorder = H5Recorder(args.output, clock=reactor)
    module = None
    if args.config:
        try:
            module = load_apb(args.config)
        except ClientError as e:
            _fail(EXIT_FAILED, str(e))
    token = args.token if args.token is not None else token_from_env()

    current: list[defer.Deferred[Any]] = []
    computer: list[Any] = []
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

    try:
        c = await step(connect(
            args.host, args.port, reactor=reactor, auth_token=token,
            connect_timeout=args.connect_timeout, busy_retry=args.busy_retry,
            busy_timeout=args.busy_timeout, data_lane=args.data_lane, tls=args.tls,
            ca_cert=args.ca_cert,
        ))
        computer.append(c)
        say(f"connected to {c.target}: {describe_carriers(c.carriers)}")
        if args.reset:
            await step(c.reset())
        if module is not None:
            await step(c.configure(module))
            say(f"configured from {args.config}")
        if args.calibrate:
            await step(c.calibrate())
        per_carrier = expected_samples(round(args.op_time * 1e9), args.sample_rate)
        show = False if args.quiet else args.progress
        bar = make_progress(per_carrier * len(c.carriers), sys.stderr, reactor, enabled=show)

        def on_chunk(chunk: Chunk) -> None:
            if not chunk.final:
                bar.update(chunk.values.shape[0])

        try:
            result: RunResult = await step(c.run(
                args.op_time, ic_time=args.ic_time, channels=args.channels,
                sample_rate=args.sample_rate, timeout=args.timeout, on_chunk=on_chunk,
                sink=recorder,
            ))
        finally:
            bar.close()
        await c.close()
    except defer.CancelledError:
        if interrupted[0]:
            _fail(EXIT_INTERRUPTED, "interrupted; the run was stopped")
        raise
    except (ClientError, RequestTimeout, defer.TimeoutError) as e:
        if computer and computer[0].connected:
            await computer[0].close()
        _fail(exit_code_for(e), str(e))
    except OSError as e:  # the recording could not be written
        if computer and computer[0].connected:
            await computer[0].close()
        _fail(EXIT_FAILED, f"cannot write {e.filename or args.output}: {e.strerror or e}")

    _report(result, say, c.udp_refusal)
    output = args.output or f"run-{result.run_id[:8]}.npz"
    meta = {"target": c.target, "op_time": args.op_time, "ic_time": args.ic_time,
            "channels": args.channels, "sample_rate": args.sample_rate,
            "expected_samples": per_carrier}
    try:
        if recorder is None:
            _save(result, output, meta)
        say(f"saved {output}")
        if args.plot:
            title = f"run {result.run_id}"
            if recorder is None:
                series = {mac: cr.samples for mac, cr in result.carriers.items()}
                save_plot(series, args.sample_rate, args.plot, title=title)
            else:
                plot_h5(output, args.plot, title=title)
            say(f"plotted {args.plot}")
    except OSError as e:
        _fail(EXIT_FAILED, f"cannot write {e.filename}: {e.strerror}")
    return EXIT_OK


def _report(result: RunResult, say: Any, udp_refusal: str | None = None) -> None:
    lane = describe_data_lane(result.data_lane, udp_refusal)
    say(f"run {result.run_id} done in {result.elapsed:.3f} s, {lane}")
    for mac, c in result.carriers.items():
        say(f"  {mac}: {c.received_samples} samples x {c.samples.shape[1]} channels "
            f"in {c.chunks} chunks, {len(c.missing_chunks)} missing")
        if not c.complete:
            shown = ", ".join(str(n) for n in c.missing_chunks[:10])
            more = " …" if len(c.missing_chunks) > 10 else ""
            sys.stderr.write(
                f"{PROG}: warning: {mac}: {c.received_samples} of {c.expected_samples} "
                f"expected samples, {len(c.missing_chunks)} missing chunk(s) "
                f"[{shown}{more}] (NaN rows)\n"
            )
    if result.overload is not None and result.overload.global_overload:
        say("  overload reported")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``pybrid-run``)."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    async def _main(reactor: Any) -> None:
        code = await run_command(reactor, args)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.ensureDeferred(_main(reactor)))


if __name__ == "__main__":
    main()
